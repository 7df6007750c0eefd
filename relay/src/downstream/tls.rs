//! TLS to next hops (STARTTLS, RFC 3207): a verifying connector with the
//! system's trust anchors plus `--next-hop-ca`, and a non-verifying one for
//! opportunistic encryption and connectors with `verify: false`.

use std::sync::Arc;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

pub struct ClientTls {
    /// None when no trust anchor could be loaded: verified TLS then fails.
    verified: Option<TlsConnector>,
    unverified: TlsConnector,
}

impl ClientTls {
    /// System trust anchors (as rustls-native-certs finds them) plus `extra`.
    pub fn new(extra: &[CertificateDer<'static>]) -> ClientTls {
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(extra.iter().cloned());
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let verified = if roots.is_empty() {
            tracing::warn!(
                "no TLS trust anchors found; connectors with verified TLS will defer mail"
            );
            None
        } else {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .ok()
                .map(|v| connector(&provider, v))
        };
        let any = Arc::new(AnyCertificate(provider.signature_verification_algorithms));
        ClientTls {
            verified,
            unverified: connector(&provider, any),
        }
    }

    pub fn connector(&self, verify: bool) -> Option<&TlsConnector> {
        if verify {
            self.verified.as_ref()
        } else {
            Some(&self.unverified)
        }
    }
}

fn connector(
    provider: &Arc<CryptoProvider>,
    verifier: Arc<dyn ServerCertVerifier>,
) -> TlsConnector {
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// Accepts any certificate but still checks that the server holds its key,
/// which is all opportunistic encryption asks (RFC 7435).
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        tokio_rustls::rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        tokio_rustls::rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
