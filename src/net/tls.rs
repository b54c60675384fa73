//! Mutual TLS for the mesh: both sides present a certificate chaining to the fleet CA and
//! nothing else (no system roots). The dialing side checks the server's name against the node
//! id it dialed; the accepting side learns who called from the client certificate and refuses
//! callers that are not in its current peer list. This module never trusts a name the peer
//! sends outside its certificate.

use super::certs::CertPaths;
use crate::core::types::NodeId;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The one application protocol spoken on the mesh.
pub const ALPN: &[u8] = b"quorate/1";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificates from {path}: {reason}")]
    Certificates { path: PathBuf, reason: String },
    #[error("no certificate in {path}")]
    NoCertificate { path: PathBuf },
    #[error("cannot read the private key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the fleet CA in {path} is not usable as a trust anchor: {reason}")]
    BadCa { path: PathBuf, reason: String },
    #[error("TLS configuration refused: {0}")]
    Config(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certificates {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Key {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::BadCa {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}

/// Server side: TLS 1.3 only, a client certificate chaining to the fleet CA is required.
pub fn server_config(paths: &CertPaths) -> Result<quinn::ServerConfig, TlsError> {
    let provider = provider();
    let roots = load_roots(&paths.ca_cert)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(&paths.node_cert)?, load_key(&paths.node_key)?)
        .map_err(|e| TlsError::Key {
            path: paths.node_key.clone(),
            reason: e.to_string(),
        })?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(quic)))
}

/// Client side: the server must chain to the fleet CA and be named by the dialed node id.
/// Session resumption is off so that every connection proves its certificate afresh.
pub fn client_config(paths: &CertPaths) -> Result<quinn::ClientConfig, TlsError> {
    let roots = load_roots(&paths.ca_cert)?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(load_certs(&paths.node_cert)?, load_key(&paths.node_key)?)
        .map_err(|e| TlsError::Key {
            path: paths.node_key.clone(),
            reason: e.to_string(),
        })?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.resumption = rustls::client::Resumption::disabled();
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}

/// What lets a restarted node reset its previous process's connections: the QUIC
/// stateless-reset key and the key that marks the connection ids the node issues.
pub struct StatelessKeys {
    /// HMAC key of the reset tokens (RFC 9000 §10.3: a token is an HMAC of the connection id).
    pub reset: ring::hmac::Key,
    /// Key of the connection ids this node issues: an id not marked with it is dropped
    /// without a reset (quinn's `HashedConnectionIdGenerator`).
    pub connection_ids: u64,
}

/// The node's stateless keys, derived from its private key so that they survive a restart: a
/// peer still holding a connection to this node's previous process then gets a stateless
/// reset it can verify on its next packet, and drops that connection at once instead of at
/// its idle timeout. (Random keys, quinn's default, change with every process: the new one
/// would drop the old connection ids as forged, and its resets would not verify.) The
/// derivation is one-way: these keys reveal nothing of the private key, and nobody without
/// the private key can compute them.
pub fn stateless_keys(paths: &CertPaths) -> Result<StatelessKeys, TlsError> {
    use ring::hmac;
    let key = load_key(&paths.node_key)?;
    let extract = hmac::Key::new(hmac::HMAC_SHA256, key.secret_der());
    let reset = hmac::sign(&extract, b"quorate mesh stateless reset key v1");
    let ids = hmac::sign(&extract, b"quorate mesh connection id key v1");
    let mut first = [0u8; 8];
    first.copy_from_slice(&ids.as_ref()[..8]);
    Ok(StatelessKeys {
        reset: hmac::Key::new(hmac::HMAC_SHA256, reset.as_ref()),
        connection_ids: u64::from_be_bytes(first),
    })
}

/// Why an accepted connection does not speak for a node of this fleet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("no client certificate")]
    NoCertificate,
    #[error("unparsable client certificate: {0}")]
    Unparsable(String),
    #[error("certificate names no node (no DNS subject alternative name)")]
    NoName,
    #[error("certificate names several nodes ({0:?}); a node certificate names exactly one")]
    SeveralNames(Vec<String>),
    #[error("certificate's common name {cn:?} contradicts its node name {san:?}")]
    NameMismatch { cn: String, san: String },
    #[error("node {0} is not in this node's peer list")]
    NotAPeer(NodeId),
    #[error("certificate claims to be this node ({0})")]
    ClaimsToBeMe(NodeId),
    #[error("caller dialed {dialed:?}, which is not this node ({me})")]
    WrongServerName { dialed: String, me: NodeId },
}

/// The node id a (chain-verified) leaf certificate speaks for: its single DNS subject
/// alternative name, which must agree with the common name when one is present.
pub fn node_id_of(cert: &CertificateDer<'_>) -> Result<NodeId, IdentityError> {
    use x509_parser::extensions::GeneralName;
    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    let san = x509
        .subject_alternative_name()
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    let names: Vec<String> = san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(name) => Some(name.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let name = match names.as_slice() {
        [] => return Err(IdentityError::NoName),
        [one] => one.clone(),
        _ => return Err(IdentityError::SeveralNames(names)),
    };
    if let Some(cn) = x509.subject().iter_common_name().next() {
        let cn = cn
            .as_str()
            .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
        if cn != name {
            return Err(IdentityError::NameMismatch {
                cn: cn.to_string(),
                san: name,
            });
        }
    }
    Ok(NodeId::from(name))
}

/// Who is on the other end of an accepted connection, checked against `me` and the current
/// peer list. The certificate chain itself was verified by rustls during the handshake.
pub fn identify_caller(
    conn: &quinn::Connection,
    me: &NodeId,
    is_peer: impl Fn(&NodeId) -> bool,
) -> Result<NodeId, IdentityError> {
    if let Some(data) = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
    {
        if let Some(dialed) = data.server_name {
            if dialed != me.as_str() {
                return Err(IdentityError::WrongServerName {
                    dialed,
                    me: me.clone(),
                });
            }
        }
    }
    let chain = conn
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or(IdentityError::NoCertificate)?;
    let leaf = chain.first().ok_or(IdentityError::NoCertificate)?;
    let node = node_id_of(leaf)?;
    if &node == me {
        return Err(IdentityError::ClaimsToBeMe(node));
    }
    if !is_peer(&node) {
        return Err(IdentityError::NotAPeer(node));
    }
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair};

    fn cert(sans: &[&str], cn: Option<&str>) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn node_id_comes_from_the_single_dns_name() {
        assert_eq!(node_id_of(&cert(&["a"], Some("a"))), Ok(NodeId::from("a")));
        assert_eq!(node_id_of(&cert(&["a"], None)), Ok(NodeId::from("a")));
    }

    #[test]
    fn a_certificate_naming_two_nodes_speaks_for_none() {
        assert!(matches!(
            node_id_of(&cert(&["a", "b"], Some("a"))),
            Err(IdentityError::SeveralNames(_))
        ));
    }

    #[test]
    fn a_common_name_contradicting_the_dns_name_is_refused() {
        assert_eq!(
            node_id_of(&cert(&["a"], Some("b"))),
            Err(IdentityError::NameMismatch {
                cn: "b".into(),
                san: "a".into()
            })
        );
    }

    #[test]
    fn a_certificate_without_dns_name_names_no_node() {
        assert_eq!(
            node_id_of(&cert(&[], Some("a"))),
            Err(IdentityError::NoName)
        );
        assert_eq!(
            node_id_of(&cert(&["10.0.0.1"], None)),
            Err(IdentityError::NoName)
        );
    }

    #[test]
    fn configs_build_from_issued_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = NodeId::from("a");
        super::super::certs::init(dir.path(), std::slice::from_ref(&a), false).unwrap();
        let paths = CertPaths::in_dir(dir.path(), &a);
        server_config(&paths).unwrap();
        client_config(&paths).unwrap();
        let leaf = load_certs(&paths.node_cert).unwrap();
        assert_eq!(node_id_of(&leaf[0]), Ok(a));
    }
}
