//! Replacing one node's key and certificate without a gap: `stage_rotation` writes a new pair
//! signed by the fleet CA beside the current one (`NODE.next.pem`, `NODE.next.key`) and
//! changes nothing the node uses; `cut_over` checks the staged pair and makes it the node's
//! own, and the node presents it from its next start. Peers accept both the old and the new
//! certificate throughout, since they trust the CA and not a particular certificate. A
//! cut-over never leaves a node with a certificate and a key that do not belong together:
//! the key moves first, and a cut-over interrupted between the two renames finishes when it
//! is run again.

use super::guard::{first_certificate, parse};
use super::{issue_to, CertError, CertPaths};
use crate::core::types::NodeId;
use crate::net::tls::node_id_of;
use rcgen::KeyPair;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where a staged pair waits for its cut-over: `DIR/NODE.next.pem` and `DIR/NODE.next.key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl StagedPaths {
    pub fn in_dir(dir: &Path, node: &NodeId) -> StagedPaths {
        StagedPaths {
            cert: dir.join(format!("{node}.next.pem")),
            key: dir.join(format!("{node}.next.key")),
        }
    }
}

/// Issues a new pair for `node`, living `lifetime`, with the CA in `ca_dir`, staged in
/// `node_dir` beside the current pair, which stays as it is. Staging again replaces a staged
/// pair that was not cut over.
pub fn stage_rotation(
    ca_dir: &Path,
    node_dir: &Path,
    node: &NodeId,
    lifetime: Duration,
) -> Result<StagedPaths, CertError> {
    let staged = StagedPaths::in_dir(node_dir, node);
    let paths = CertPaths {
        ca_cert: CertPaths::in_dir(node_dir, node).ca_cert,
        node_cert: staged.cert.clone(),
        node_key: staged.key.clone(),
    };
    issue_to(ca_dir, &paths, node, lifetime)?;
    Ok(staged)
}

/// Makes the pair staged in `node_dir` the node's own, after checking that its certificate
/// names `node`, is valid now, was issued by the CA in `node_dir/ca.pem` and matches its
/// key. Restart the node to present it.
pub fn cut_over(node_dir: &Path, node: &NodeId) -> Result<(), CertError> {
    let staged = StagedPaths::in_dir(node_dir, node);
    let current = CertPaths::in_dir(node_dir, node);
    if !staged.cert.exists() {
        return Err(CertError::NothingStaged {
            node: node.to_string(),
            dir: node_dir.to_path_buf(),
            path: staged.cert,
        });
    }
    // No staged key but a staged certificate: an earlier cut-over moved the key and stopped.
    let key_path = if staged.key.exists() {
        &staged.key
    } else {
        &current.node_key
    };
    check_pair(&staged.cert, key_path, &current.ca_cert, node)?;
    let rename = |from: &Path, to: &Path| {
        fs::rename(from, to).map_err(|source| CertError::Write {
            path: to.to_path_buf(),
            source,
        })
    };
    if staged.key.exists() {
        rename(&staged.key, &current.node_key)?;
    }
    rename(&staged.cert, &current.node_cert)?;
    sync_dir(node_dir)
}

/// Verifies `der` the way peers will: a chain to the fleet CA in `ca`, valid now, usable as
/// TLS client and as TLS server for the name `node`.
fn verify_as_peers_do(
    der: &CertificateDer<'static>,
    ca: &Path,
    node: &NodeId,
) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(first_certificate(ca).map_err(|e| e.to_string())?)
        .map_err(|e| format!("{} is not a usable CA: {e}", ca.display()))?;
    let roots = Arc::new(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let now = UnixTime::now();
    let as_client = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let not_the_fleets = |e: rustls::Error| {
        format!(
            "peers would refuse it ({e}); it must be issued by the fleet CA in {} and valid now",
            ca.display()
        )
    };
    as_client
        .verify_client_cert(der, &[], now)
        .map_err(not_the_fleets)?;
    let as_server = WebPkiServerVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(node.as_str())
        .map_err(|e| format!("{node} is not a DNS name: {e}"))?
        .to_owned();
    as_server
        .verify_server_cert(der, &[], &name, &[], now)
        .map_err(not_the_fleets)?;
    Ok(())
}

/// Refuses a pair that a node could not start with or that peers would refuse.
fn check_pair(cert: &Path, key: &Path, ca: &Path, node: &NodeId) -> Result<(), CertError> {
    let bad = |reason: String| CertError::BadStagedPair {
        path: cert.to_path_buf(),
        reason,
    };
    let der = first_certificate(cert)?;
    let parsed = parse(cert, &der)?;
    let named = node_id_of(&der).map_err(|e| bad(e.to_string()))?;
    if &named != node {
        return Err(bad(format!("it names node {named}, not {node}")));
    }
    verify_as_peers_do(&der, ca, node).map_err(bad)?;
    let key_pem = fs::read_to_string(key).map_err(|source| CertError::Read {
        path: key.to_path_buf(),
        source,
    })?;
    let key_pair =
        KeyPair::from_pem(&key_pem).map_err(|e| bad(format!("{}: {e}", key.display())))?;
    if key_pair.public_key_raw() != parsed.public_key().subject_public_key.data.as_ref() {
        return Err(bad(format!("{} is not its key", key.display())));
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), CertError> {
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| CertError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::certs::{init_in, NODE_LIFETIME};

    fn node() -> NodeId {
        NodeId::from("a1")
    }

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let (ca, dir) = (tmp.path().join("ca"), tmp.path().join("a1"));
        init_in(&ca, &dir, &[node()], false, NODE_LIFETIME).unwrap();
        (tmp, ca, dir)
    }

    #[test]
    fn staging_leaves_the_current_pair_and_cut_over_replaces_it() {
        let (_tmp, ca, dir) = setup();
        let before = fs::read(dir.join("a1.pem")).unwrap();
        let before_key = fs::read(dir.join("a1.key")).unwrap();
        let staged = stage_rotation(&ca, &dir, &node(), NODE_LIFETIME).unwrap();
        assert_eq!(fs::read(dir.join("a1.pem")).unwrap(), before);
        assert_eq!(fs::read(dir.join("a1.key")).unwrap(), before_key);
        let new_cert = fs::read(&staged.cert).unwrap();
        let new_key = fs::read(&staged.key).unwrap();
        assert_ne!(new_cert, before);

        cut_over(&dir, &node()).unwrap();
        assert_eq!(fs::read(dir.join("a1.pem")).unwrap(), new_cert);
        assert_eq!(fs::read(dir.join("a1.key")).unwrap(), new_key);
        assert!(!staged.cert.exists() && !staged.key.exists());
        crate::net::certs::check_node_files(&dir, &node()).unwrap();
        crate::net::tls::server_config(&CertPaths::in_dir(&dir, &node())).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn the_staged_key_is_private_from_the_start() {
        use std::os::unix::fs::PermissionsExt;
        let (_tmp, ca, dir) = setup();
        let staged = stage_rotation(&ca, &dir, &node(), NODE_LIFETIME).unwrap();
        let mode = fs::metadata(&staged.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        cut_over(&dir, &node()).unwrap();
        let mode = fs::metadata(dir.join("a1.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_cut_over_interrupted_after_moving_the_key_finishes_when_run_again() {
        let (_tmp, ca, dir) = setup();
        let staged = stage_rotation(&ca, &dir, &node(), NODE_LIFETIME).unwrap();
        let new_cert = fs::read(&staged.cert).unwrap();
        // As if the process died between the two renames.
        fs::rename(&staged.key, dir.join("a1.key")).unwrap();
        cut_over(&dir, &node()).unwrap();
        assert_eq!(fs::read(dir.join("a1.pem")).unwrap(), new_cert);
        crate::net::tls::server_config(&CertPaths::in_dir(&dir, &node())).unwrap();
    }

    #[test]
    fn cut_over_without_a_staged_pair_says_how_to_stage_one() {
        let (_tmp, _ca, dir) = setup();
        let err = cut_over(&dir, &node()).unwrap_err();
        assert!(matches!(err, CertError::NothingStaged { .. }), "{err:?}");
        assert!(err.to_string().contains("certs rotate"), "{err}");
    }

    #[test]
    fn a_staged_pair_from_another_ca_or_with_a_foreign_key_is_refused_untouched() {
        let (tmp, ca, dir) = setup();
        let current = fs::read(dir.join("a1.pem")).unwrap();
        // Another CA's pair for the same node id.
        let other_ca = tmp.path().join("other-ca");
        let other = tmp.path().join("other");
        init_in(&other_ca, &other, &[node()], false, NODE_LIFETIME).unwrap();
        let staged = StagedPaths::in_dir(&dir, &node());
        fs::copy(other.join("a1.pem"), &staged.cert).unwrap();
        fs::copy(other.join("a1.key"), &staged.key).unwrap();
        let err = cut_over(&dir, &node()).unwrap_err();
        assert!(err.to_string().contains("peers would refuse it"), "{err}");
        assert_eq!(fs::read(dir.join("a1.pem")).unwrap(), current);

        // The right CA, but a key that is not the certificate's.
        stage_rotation(&ca, &dir, &node(), NODE_LIFETIME).unwrap();
        fs::copy(other.join("a1.key"), &staged.key).unwrap();
        let err = cut_over(&dir, &node()).unwrap_err();
        assert!(err.to_string().contains("is not its key"), "{err}");
        assert_eq!(fs::read(dir.join("a1.pem")).unwrap(), current);
    }
}
