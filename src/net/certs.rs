//! The fleet's certificates: one private CA per fleet and one certificate per node, naming the
//! node id as both its DNS subject alternative name and its common name, usable as TLS server
//! and client. This module writes files; it never overwrites a CA unless told to, and it never
//! leaves a private key readable by anyone but its owner.

use crate::core::types::NodeId;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::ServerName;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Common name of the fleet CA.
pub const CA_COMMON_NAME: &str = "quorate fleet CA";
/// The CA outlives every certificate it signs: replacing it means re-issuing the whole fleet.
pub const CA_LIFETIME: Duration = Duration::from_secs(50 * 365 * 24 * 3600);
/// Node certificates are long-lived on purpose: if every node's certificate expired at once,
/// the whole mesh would go silent, which each site would read as its own isolation.
/// Rotate them with `certs issue` well before this runs out.
pub const NODE_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Certificates start being valid this long before they are made, to tolerate clock skew.
const BACKDATE: Duration = Duration::from_secs(24 * 3600);

/// Where one node finds its trust anchor and its own identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertPaths {
    pub ca_cert: PathBuf,
    pub node_cert: PathBuf,
    pub node_key: PathBuf,
}

impl CertPaths {
    /// `DIR/ca.pem`, `DIR/<node>.pem`, `DIR/<node>.key`.
    pub fn in_dir(dir: &Path, node: &NodeId) -> CertPaths {
        CertPaths {
            ca_cert: dir.join("ca.pem"),
            node_cert: dir.join(format!("{node}.pem")),
            node_key: dir.join(format!("{node}.key")),
        }
    }
}

fn ca_key_path(dir: &Path) -> PathBuf {
    dir.join("ca.key")
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Nothing was written.
    #[error("a fleet CA already exists at {path}; pass --force to replace it (every node certificate must then be re-issued and redeployed)")]
    CaExists { path: PathBuf },
    /// Nothing was written.
    #[error("no fleet CA at {path}; create one with `certs init`")]
    CaMissing { path: PathBuf },
    /// Nothing was written for this node (earlier nodes of the same call may have been).
    #[error("node id {node:?} cannot name a certificate: {reason}")]
    InvalidNodeId { node: String, reason: &'static str },
    /// Nothing was written.
    #[error("{path} is not a usable CA certificate or key: {source}")]
    BadCa { path: PathBuf, source: rcgen::Error },
    /// Nothing was written for `what`.
    #[error("cannot generate the certificate for {what}: {source}")]
    Generate { what: String, source: rcgen::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// The file at `path` is unchanged (writes go through a temporary file and a rename).
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Creates DIR/ca.pem + DIR/ca.key (fleet CA) unless present (then refuses unless `force`),
/// and a certificate and key for each node id, signed by that CA.
pub fn init(dir: &Path, nodes: &[NodeId], force: bool) -> Result<(), CertError> {
    for node in nodes {
        check_node_id(node)?;
    }
    let ca_cert = dir.join("ca.pem");
    let ca_key = ca_key_path(dir);
    if !force {
        for path in [&ca_cert, &ca_key] {
            if path.exists() {
                return Err(CertError::CaExists { path: path.clone() });
            }
        }
    }
    fs::create_dir_all(dir).map_err(|source| CertError::Write {
        path: dir.to_path_buf(),
        source,
    })?;

    let key = KeyPair::generate().map_err(|source| CertError::Generate {
        what: "the fleet CA".into(),
        source,
    })?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_LIFETIME);
    let cert = params
        .self_signed(&key)
        .map_err(|source| CertError::Generate {
            what: "the fleet CA".into(),
            source,
        })?;
    // Key first: a CA certificate without its key would block a retry without --force.
    write_file(&ca_key, key.serialize_pem().as_bytes(), true)?;
    write_file(&ca_cert, cert.pem().as_bytes(), false)?;

    let issuer = Issuer::new(params, key);
    for node in nodes {
        issue_with(dir, node, &issuer)?;
    }
    Ok(())
}

/// Issues (or re-issues) one node's certificate and key with the existing CA in DIR.
pub fn issue(dir: &Path, node: &NodeId) -> Result<(), CertError> {
    check_node_id(node)?;
    let ca_cert = dir.join("ca.pem");
    let ca_key = ca_key_path(dir);
    for path in [&ca_cert, &ca_key] {
        if !path.exists() {
            return Err(CertError::CaMissing { path: path.clone() });
        }
    }
    let key_pem = read(&ca_key)?;
    let cert_pem = read(&ca_cert)?;
    let key = KeyPair::from_pem(&key_pem).map_err(|source| CertError::BadCa {
        path: ca_key.clone(),
        source,
    })?;
    let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|source| CertError::BadCa {
        path: ca_cert.clone(),
        source,
    })?;
    issue_with(dir, node, &issuer)
}

fn issue_with(dir: &Path, node: &NodeId, issuer: &Issuer<'_, KeyPair>) -> Result<(), CertError> {
    let what = || format!("node {node}");
    let key = KeyPair::generate().map_err(|source| CertError::Generate {
        what: what(),
        source,
    })?;
    let mut params =
        CertificateParams::new(vec![node.0.clone()]).map_err(|source| CertError::Generate {
            what: what(),
            source,
        })?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, node.as_str());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, NODE_LIFETIME);
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|source| CertError::Generate {
            what: what(),
            source,
        })?;
    let paths = CertPaths::in_dir(dir, node);
    write_file(&paths.node_key, key.serialize_pem().as_bytes(), true)?;
    write_file(&paths.node_cert, cert.pem().as_bytes(), false)?;
    Ok(())
}

/// A node id must be a DNS name (it is dialed as the TLS server name) and must not collide
/// with the CA's own files.
fn check_node_id(node: &NodeId) -> Result<(), CertError> {
    let invalid = |reason| CertError::InvalidNodeId {
        node: node.0.clone(),
        reason,
    };
    if node.as_str().eq_ignore_ascii_case("ca") {
        return Err(invalid("\"ca\" is reserved for the fleet CA's files"));
    }
    match ServerName::try_from(node.as_str()) {
        Ok(ServerName::DnsName(_)) => Ok(()),
        Ok(_) => Err(invalid(
            "an IP address is not a node id; use a DNS-style name",
        )),
        Err(_) => Err(invalid(
            "not a valid DNS name (letters, digits, '-', '.' only)",
        )),
    }
}

fn set_validity(params: &mut CertificateParams, lifetime: Duration) {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + since_epoch.saturating_sub(BACKDATE);
    params.not_after = epoch + since_epoch + lifetime;
}

fn read(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes through a temporary file and a rename, so a crash never leaves half a key; private
/// files are created 0600 and never exist with wider permissions.
fn write_file(path: &Path, data: &[u8], private: bool) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let _ = fs::remove_file(&tmp);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut file = options.open(&tmp).map_err(err)?;
    file.write_all(data).map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_refuses_to_replace_a_ca_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let nodes = [NodeId::from("a")];
        init(dir.path(), &nodes, false).unwrap();
        let before = fs::read(dir.path().join("ca.pem")).unwrap();
        let err = init(dir.path(), &nodes, false).unwrap_err();
        assert!(matches!(err, CertError::CaExists { .. }), "{err}");
        assert_eq!(fs::read(dir.path().join("ca.pem")).unwrap(), before);
        init(dir.path(), &nodes, true).unwrap();
        assert_ne!(fs::read(dir.path().join("ca.pem")).unwrap(), before);
    }

    #[cfg(unix)]
    #[test]
    fn private_keys_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &[NodeId::from("a")], false).unwrap();
        issue(dir.path(), &NodeId::from("b")).unwrap();
        for name in ["ca.key", "a.key", "b.key"] {
            let mode = fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }

    #[test]
    fn issue_without_a_ca_names_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = issue(dir.path(), &NodeId::from("a")).unwrap_err();
        assert!(err.to_string().contains("ca.pem"), "{err}");
    }

    #[test]
    fn node_ids_that_cannot_be_dns_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "ca", "a/b", "10.0.0.1", "a b"] {
            let err = init(dir.path(), &[NodeId::from(bad)], false).unwrap_err();
            assert!(matches!(err, CertError::InvalidNodeId { .. }), "{bad:?}");
        }
        assert!(!dir.path().join("ca.pem").exists());
    }
}
