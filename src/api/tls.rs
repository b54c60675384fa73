//! HTTPS for the REST API: the bearer tokens of operator calls and the output of failover
//! steps must not cross a network in clear. The node serves the certificate chain and key
//! of `[api] tls_cert` / `tls_key` (read once at start, like the mesh certificate), with no
//! client certificates: callers prove themselves with the bearer token, monitoring needs
//! nothing.

use crate::config::ApiSettings;
use crate::core::types::NodeId;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// What HTTPS needs, read from `node`'s files; None when the fleet file sets no TLS. An
/// unreadable file, a file without a certificate or key, or a key that does not match the
/// certificate is an error naming the file.
pub fn acceptor(api: &ApiSettings, node: &NodeId) -> Result<Option<TlsAcceptor>, String> {
    let Some((cert_path, key_path)) = api.tls_files(node) else {
        return Ok(None);
    };
    let read = |path: &Path| {
        crate::small_file::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let certs = CertificateDer::pem_slice_iter(&read(&cert_path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "{} is not a PEM certificate chain: {e}",
                cert_path.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "no certificate in [api] tls_cert {}",
            cert_path.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(&key_path)?)
        .map_err(|e| format!("no private key in {}: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "the key {} does not fit the certificate {}: {e}",
                key_path.display(),
                cert_path.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(cert: &Path, key: &Path) -> ApiSettings {
        ApiSettings {
            tls_cert: Some(cert.to_path_buf()),
            tls_key: Some(key.to_path_buf()),
            ..ApiSettings::default()
        }
    }

    #[test]
    fn the_acceptor_reads_the_nodes_pair_and_names_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, certs) = (dir.path().join("ca"), dir.path().join("certs"));
        let ids = [NodeId::from("b1"), NodeId::from("b2")];
        crate::net::certs::init_in(&ca, &certs, &ids, true, crate::net::certs::NODE_LIFETIME)
            .unwrap();
        let node = |f: &str| certs.join(f);
        let templated = settings(&node("{node}.pem"), &node("{node}.key"));
        assert!(acceptor(&templated, &ids[0]).unwrap().is_some());
        assert!(acceptor(&ApiSettings::default(), &ids[0])
            .unwrap()
            .is_none());

        let missing = acceptor(&templated, &NodeId::from("c9")).err().unwrap();
        assert!(
            missing.contains("cannot read") && missing.contains("c9.pem"),
            "{missing}"
        );
        let swapped = settings(&node("b1.pem"), &node("b2.key"));
        let e = acceptor(&swapped, &ids[0]).err().unwrap();
        assert!(e.contains("does not fit"), "{e}");
        let not_pem = settings(&node("b1.key"), &node("b1.key"));
        let e = acceptor(&not_pem, &ids[0]).err().unwrap();
        assert!(e.contains("no certificate"), "{e}");
    }
}
