//! What a node checks of its certificate directory before it starts: its three files are
//! there, the fleet CA's private key is not (a node holding it could certify anyone as a
//! node of the fleet), and its own private key is readable by its owner only. Also reads a
//! certificate's expiry for the metrics. It never changes a file: fixing them is the
//! operator's call, and the error says how.

use super::{ca_key_path, CertError, CertPaths};
use crate::core::types::NodeId;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::path::Path;

/// The node's certificate paths in `dir`, once they are safe to start from.
pub fn check_node_files(dir: &Path, node: &NodeId) -> Result<CertPaths, CertError> {
    let paths = CertPaths::in_dir(dir, node);
    for p in [&paths.ca_cert, &paths.node_cert, &paths.node_key] {
        if !p.exists() {
            return Err(CertError::Missing {
                path: p.clone(),
                dir: dir.to_path_buf(),
            });
        }
    }
    let ca_key = ca_key_path(dir);
    if ca_key.exists() {
        return Err(CertError::CaKeyOnNode { path: ca_key });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&paths.node_key).map_err(|source| CertError::Read {
            path: paths.node_key.clone(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CertError::KeyNotPrivate {
                path: paths.node_key.clone(),
                mode,
            });
        }
    }
    Ok(paths)
}

/// When the first certificate in the PEM file `path` stops being valid, in Unix seconds.
pub fn not_after_unix_s(path: &Path) -> Result<i64, CertError> {
    let der = first_certificate(path)?;
    let cert = parse(path, &der)?;
    Ok(cert.validity().not_after.timestamp())
}

pub(super) fn first_certificate(path: &Path) -> Result<CertificateDer<'static>, CertError> {
    CertificateDer::from_pem_file(path).map_err(|e| CertError::BadCertificate {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

pub(super) fn parse<'a>(
    path: &Path,
    der: &'a CertificateDer<'_>,
) -> Result<x509_parser::certificate::X509Certificate<'a>, CertError> {
    x509_parser::parse_x509_certificate(der.as_ref())
        .map(|(_, c)| c)
        .map_err(|e| CertError::BadCertificate {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::certs::{init, init_in, NODE_LIFETIME};

    fn node() -> NodeId {
        NodeId::from("a1")
    }

    #[test]
    fn a_node_directory_without_the_ca_key_passes() {
        let tmp = tempfile::tempdir().unwrap();
        let (ca, dir) = (tmp.path().join("ca"), tmp.path().join("a1"));
        init_in(&ca, &dir, &[node()], false, NODE_LIFETIME).unwrap();
        let paths = check_node_files(&dir, &node()).unwrap();
        assert_eq!(paths, CertPaths::in_dir(&dir, &node()));
    }

    #[test]
    fn the_ca_key_beside_a_node_stops_it_and_says_to_move_it() {
        let tmp = tempfile::tempdir().unwrap();
        init(tmp.path(), &[node()], false).unwrap();
        let err = check_node_files(tmp.path(), &node()).unwrap_err();
        assert!(matches!(err, CertError::CaKeyOnNode { .. }), "{err:?}");
        let msg = err.to_string();
        let key = tmp.path().join("ca.key").display().to_string();
        assert!(msg.contains(&key) && msg.contains("mv "), "{msg}");
    }

    #[cfg(unix)]
    #[test]
    fn a_private_key_readable_by_others_stops_the_node_and_names_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let (ca, dir) = (tmp.path().join("ca"), tmp.path().join("a1"));
        init_in(&ca, &dir, &[node()], false, NODE_LIFETIME).unwrap();
        let key = dir.join("a1.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = check_node_files(&dir, &node()).unwrap_err();
        assert!(
            matches!(err, CertError::KeyNotPrivate { mode: 0o640, .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("chmod 600 {}", key.display())),
            "{msg}"
        );
    }

    #[test]
    fn a_missing_file_is_named_with_how_to_create_it() {
        let tmp = tempfile::tempdir().unwrap();
        let err = check_node_files(tmp.path(), &node()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("ca.pem") && msg.contains("certs init"),
            "{msg}"
        );
    }

    #[test]
    fn expiry_reads_the_certificates_not_after() {
        let tmp = tempfile::tempdir().unwrap();
        let (ca, dir) = (tmp.path().join("ca"), tmp.path().join("a1"));
        let days = |d: u64| std::time::Duration::from_secs(d * 24 * 3600);
        init_in(&ca, &dir, &[node()], false, days(30)).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let node_left = not_after_unix_s(&dir.join("a1.pem")).unwrap() - now;
        assert!(
            (29 * 86_400..=30 * 86_400 + 60).contains(&node_left),
            "{node_left}"
        );
        let ca_left = not_after_unix_s(&dir.join("ca.pem")).unwrap() - now;
        assert!(ca_left > 49 * 365 * 86_400, "{ca_left}");
    }
}
