//! STARTTLS for clients (RFC 3207): certificate and key from PEM files (as a
//! mounted Secret gives them), reloaded when the files change.

use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    config: ArcSwap<ServerConfig>,
}

fn load(cert: &PathBuf, key: &PathBuf) -> Result<ServerConfig, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not match: {e}"))
}

fn modified(paths: [&PathBuf; 2]) -> Vec<Option<SystemTime>> {
    paths
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

impl Tls {
    pub fn new(cert: PathBuf, key: PathBuf) -> Result<Arc<Tls>, String> {
        let config = load(&cert, &key)?;
        Ok(Arc::new(Tls {
            cert,
            key,
            config: ArcSwap::from_pointee(config),
        }))
    }

    /// An acceptor with the current certificate.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }

    /// Polls the files and swaps in a new certificate when they change; a
    /// bad pair is logged and the current one stays.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let mut seen = modified([&self.cert, &self.key]);
        loop {
            tokio::time::sleep(every).await;
            let now = modified([&self.cert, &self.key]);
            if now == seen {
                continue;
            }
            match load(&self.cert, &self.key) {
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
