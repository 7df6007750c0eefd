//! STARTTLS for clients (RFC 3207): certificate and key from PEM files (as a
//! mounted Secret gives them), reloaded when the files change. With a
//! client CA, clients may present a certificate (never must): a verified
//! one identifies the client for SendingGrants' `clientCertificate`.

use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, ServerConnection};

pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    config: ArcSwap<ServerConfig>,
}

fn load(
    cert: &PathBuf,
    key: &PathBuf,
    client_ca: Option<&PathBuf>,
) -> Result<ServerConfig, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in
                CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))?
            {
                let c = c.map_err(|e| format!("{}: {e}", ca.display()))?;
                roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: no certificate", ca.display()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not match: {e}"))
}

/// A verified client certificate's subject (as [`routing::grants::normalize_subject`]
/// reads it) and its DNS names, from the finished handshake.
pub fn client_identity(conn: &ServerConnection) -> Option<(String, Vec<String>)> {
    use x509_parser::extensions::GeneralName;
    let der = conn.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject().to_string();
    let names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some((*d).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some((subject, names))
}

fn modified(paths: &[&PathBuf]) -> Vec<Option<SystemTime>> {
    paths
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

impl Tls {
    pub fn new(cert: PathBuf, key: PathBuf) -> Result<Arc<Tls>, String> {
        Tls::with_client_ca(cert, key, None)
    }

    /// `client_ca`: the CAs whose client certificates the relay verifies.
    pub fn with_client_ca(
        cert: PathBuf,
        key: PathBuf,
        client_ca: Option<PathBuf>,
    ) -> Result<Arc<Tls>, String> {
        let config = load(&cert, &key, client_ca.as_ref())?;
        Ok(Arc::new(Tls {
            cert,
            key,
            client_ca,
            config: ArcSwap::from_pointee(config),
        }))
    }

    fn files(&self) -> Vec<&PathBuf> {
        let mut files = vec![&self.cert, &self.key];
        files.extend(self.client_ca.as_ref());
        files
    }

    /// An acceptor with the current certificate.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }

    /// Polls the files and swaps in a new certificate when they change; a
    /// bad pair is logged and the current one stays.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let mut seen = modified(&self.files());
        loop {
            tokio::time::sleep(every).await;
            let now = modified(&self.files());
            if now == seen {
                continue;
            }
            match load(&self.cert, &self.key, self.client_ca.as_ref()) {
                Ok(c) => {
                    self.config.store(Arc::new(c));
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                    seen = now;
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate not reloaded; keeping the current one")
                }
            }
        }
    }
}
