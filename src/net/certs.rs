//! The fleet's certificates: one private CA per fleet and one certificate per node, naming the
//! node id as both its DNS subject alternative name and its common name, usable as TLS server
//! and client. This module writes files; it never overwrites a CA unless told to, and it never
//! leaves a private key readable by anyone but its owner (keys 0600, directories it creates
//! 0700). The CA's directory and a node's directory may differ: the CA key belongs on the
//! operator's offline machine, never on a node (`guard` refuses to start a node beside it).
//! `rotation` replaces one node's pair while the old one stays valid.

mod guard;
mod rotation;

pub use guard::{check_node_files, not_after_unix_s};
pub use rotation::{cut_over, stage_rotation, StagedPaths};

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
/// A node certificate's default lifetime (`--days` changes it): long enough that rotating a
/// node a year is routine, short enough that a key copied off a retired machine stops working.
/// If every node's certificate expired at once the whole mesh would go silent, which each site
/// would read as its own isolation: watch `quorate_certificate_expiry_seconds` and rotate
/// (`certs rotate`, `certs cut-over`) well before it runs out.
pub const NODE_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
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

/// The fleet CA's private key in `dir`.
pub fn ca_key_path(dir: &Path) -> PathBuf {
    dir.join("ca.key")
}

fn ca_cert_path(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}

/// `days` days as a certificate lifetime; at least one day.
pub fn lifetime_days(days: u64) -> Result<Duration, CertError> {
    if days == 0 {
        return Err(CertError::Lifetime { days });
    }
    Ok(Duration::from_secs(days.saturating_mul(24 * 3600)))
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
    /// Nothing was written.
    #[error("a certificate must live at least one day (got --days {days})")]
    Lifetime { days: u64 },
    /// A node's file is not there; the node does not start.
    #[error("{path} is missing; create the fleet's certificates with `quorate certs init --fleet FLEET --ca CA_DIR --dir {dir}`")]
    Missing { path: PathBuf, dir: PathBuf },
    /// The node does not start until the CA key is gone from its directory.
    #[error("{path} is the fleet CA's private key and must not live on a node (whoever reads it can certify a node of this fleet); move it to the machine that issues certificates, e.g. `mv {path} /secure/quorate-ca/`, then start the node again")]
    CaKeyOnNode { path: PathBuf },
    /// The node does not start until the key is private again.
    #[error("the private key {path} can be read by group or others (mode {mode:o}); run `chmod 600 {path}` and start the node again")]
    KeyNotPrivate { path: PathBuf, mode: u32 },
    /// Not usable as it is; nothing was changed.
    #[error("{path} is not a usable certificate: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    /// A cut-over found nothing staged; nothing was changed.
    #[error("no staged certificate for node {node} in {dir} ({path} is missing); stage one with `quorate certs rotate --ca CA_DIR --dir {dir} --node {node}`")]
    NothingStaged {
        node: String,
        dir: PathBuf,
        path: PathBuf,
    },
    /// A staged pair that would not work was refused; nothing was changed.
    #[error(
        "refusing to cut over to {path}: {reason}; stage a new pair with `quorate certs rotate`"
    )]
    BadStagedPair { path: PathBuf, reason: String },
    /// The file at `path` is unchanged (writes go through a temporary file and a rename).
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Creates DIR/ca.pem + DIR/ca.key (fleet CA) unless present (then refuses unless `force`),
/// and a certificate and key for each node id, signed by that CA, in the same directory.
pub fn init(dir: &Path, nodes: &[NodeId], force: bool) -> Result<(), CertError> {
    init_in(dir, dir, nodes, force, NODE_LIFETIME)
}

/// Creates the fleet CA in `ca_dir` (refused if one is there, unless `force`) and, in
/// `node_dir`, `ca.pem` and a certificate and key for each node id living `lifetime`.
pub fn init_in(
    ca_dir: &Path,
    node_dir: &Path,
    nodes: &[NodeId],
    force: bool,
    lifetime: Duration,
) -> Result<(), CertError> {
    for node in nodes {
        check_node_id(node)?;
    }
    let dir = ca_dir;
    let ca_cert = ca_cert_path(dir);
    let ca_key = ca_key_path(dir);
    if !force {
        for path in [&ca_cert, &ca_key] {
            if path.exists() {
                return Err(CertError::CaExists { path: path.clone() });
            }
        }
    }
    create_private_dir(dir)?;

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
    let ca_pem = cert.pem();
    for node in nodes {
        let paths = CertPaths::in_dir(node_dir, node);
        issue_with(&paths, node, &issuer, &ca_pem, lifetime)?;
    }
    Ok(())
}

/// Issues (or re-issues) one node's certificate and key with the existing CA in DIR, into DIR.
pub fn issue(dir: &Path, node: &NodeId) -> Result<(), CertError> {
    issue_in(dir, dir, node, NODE_LIFETIME)
}

/// Issues (or re-issues) one node's certificate and key, living `lifetime`, with the CA in
/// `ca_dir`, into `node_dir` (with a copy of `ca.pem`). Replaces the node's current pair: to
/// replace it on a running fleet without a gap, use [`stage_rotation`] and [`cut_over`].
pub fn issue_in(
    ca_dir: &Path,
    node_dir: &Path,
    node: &NodeId,
    lifetime: Duration,
) -> Result<(), CertError> {
    let paths = CertPaths::in_dir(node_dir, node);
    issue_to(ca_dir, &paths, node, lifetime)
}

/// Issues `node`'s pair with the CA in `ca_dir` into the files `paths` names.
fn issue_to(
    ca_dir: &Path,
    paths: &CertPaths,
    node: &NodeId,
    lifetime: Duration,
) -> Result<(), CertError> {
    check_node_id(node)?;
    let (issuer, ca_pem) = load_ca(ca_dir)?;
    issue_with(paths, node, &issuer, &ca_pem, lifetime)
}

fn load_ca(dir: &Path) -> Result<(Issuer<'static, KeyPair>, String), CertError> {
    let ca_cert = ca_cert_path(dir);
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
    Ok((issuer, cert_pem))
}

/// Writes a new key and certificate for `node` to `paths`, and `ca_pem` to `paths.ca_cert`
/// unless it already holds it.
fn issue_with(
    paths: &CertPaths,
    node: &NodeId,
    issuer: &Issuer<'_, KeyPair>,
    ca_pem: &str,
    lifetime: Duration,
) -> Result<(), CertError> {
    let what = || format!("node {node}");
    let key = KeyPair::generate().map_err(|source| CertError::Generate {
        what: what(),
        source,
    })?;
    let mut params =
        CertificateParams::new(vec![node.to_string()]).map_err(|source| CertError::Generate {
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
    set_validity(&mut params, lifetime);
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|source| CertError::Generate {
            what: what(),
            source,
        })?;
    if let Some(dir) = paths.node_key.parent() {
        create_private_dir(dir)?;
    }
    if fs::read_to_string(&paths.ca_cert).ok().as_deref() != Some(ca_pem) {
        write_file(&paths.ca_cert, ca_pem.as_bytes(), false)?;
    }
    write_file(&paths.node_key, key.serialize_pem().as_bytes(), true)?;
    write_file(&paths.node_cert, cert.pem().as_bytes(), false)?;
    Ok(())
}

/// A node id must be a DNS name (it is dialed as the TLS server name) and must not collide
/// with the CA's own files.
fn check_node_id(node: &NodeId) -> Result<(), CertError> {
    let invalid = |reason| CertError::InvalidNodeId {
        node: node.to_string(),
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

/// Creates `dir` and its missing parents 0700; an existing directory is left as it is.
fn create_private_dir(dir: &Path) -> Result<(), CertError> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| CertError::Write {
        path: dir.to_path_buf(),
        source,
    })
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

    #[cfg(unix)]
    #[test]
    fn directories_it_creates_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let (ca, nodes) = (tmp.path().join("ca"), tmp.path().join("x").join("certs"));
        init_in(&ca, &nodes, &[NodeId::from("a")], false, NODE_LIFETIME).unwrap();
        for dir in [&ca, &nodes, &tmp.path().join("x")] {
            let mode = fs::metadata(dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
        }
        assert!(
            !nodes.join("ca.key").exists(),
            "the CA key stays in its own directory"
        );
        assert!(nodes.join("ca.pem").exists());
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
