//! Opening one connection to a next hop: TCP, greeting, EHLO, STARTTLS as
//! the connector asks, EHLO again, AUTH when it has credentials.

use super::Outbound;
use super::auth::credentials;
use super::targets::Target;
use crate::io::{ClientIo, Io};
use crate::reply::{Reply, reply};
use mail_send::SmtpClient;
use routing::crd::TlsMode;
use routing::table::ConnectorRoute;
use smtp_proto::{EXT_START_TLS, EhloResponse};
use std::time::Instant;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;

pub struct Connection {
    pub client: SmtpClient<ClientIo>,
    pub ehlo: EhloResponse<String>,
    pub born: Instant,
}

/// Why a host could not be used; the reply is what our client hears when
/// no host of the connector worked.
pub struct Failure {
    pub reply: Reply,
    pub detail: String,
}

fn unreachable(detail: impl Into<String>) -> Failure {
    Failure {
        reply: reply(451, "4.4.1", "Next hop not reachable; try again later"),
        detail: detail.into(),
    }
}

fn tls_failure(detail: impl Into<String>) -> Failure {
    Failure {
        reply: reply(
            451,
            "4.7.5",
            "TLS to the next hop failed and the route requires it; try again later",
        ),
        detail: detail.into(),
    }
}

fn auth_failure(detail: impl Into<String>) -> Failure {
    Failure {
        reply: reply(
            451,
            "4.7.0",
            "Authentication at the next hop failed; try again later",
        ),
        detail: detail.into(),
    }
}

impl Outbound {
    /// A connection to `target` set up as `route` asks.
    pub(super) async fn open(
        &self,
        target: &Target,
        route: &ConnectorRoute,
    ) -> Result<Connection, Failure> {
        let (client, ehlo) = self.greet(target).await?;
        let offers_tls = ehlo.capabilities & EXT_START_TLS != 0;
        let (mut conn, tls) = match route.tls_mode {
            TlsMode::None => ((client, ehlo), false),
            TlsMode::Opportunistic if !offers_tls => ((client, ehlo), false),
            TlsMode::Opportunistic => match self.starttls(client, target, false).await {
                Ok(c) => (c, true),
                Err(f) => {
                    // As Postfix's "may" level: a failed handshake falls
                    // back to a plaintext connection.
                    tracing::info!(host = %target.name, addr = %target.addr, error = %f.detail, "opportunistic TLS failed; retrying in plaintext");
                    (self.greet(target).await?, false)
                }
            },
            TlsMode::Required if !offers_tls => {
                return Err(tls_failure(format!(
                    "{} does not offer STARTTLS",
                    target.name
                )));
            }
            TlsMode::Required => (self.starttls(client, target, route.tls_verify).await?, true),
        };
        if let Some(secret) = &route.auth_secret {
            if !tls {
                return Err(auth_failure(format!(
                    "{}: no TLS, and credentials are never sent in the clear",
                    target.name
                )));
            }
            if conn.1.auth_mechanisms == 0 {
                tracing::warn!(host = %target.name, "next hop offers no AUTH; sending without it");
            } else {
                let creds = credentials(&self.settings.auth_dir, secret).map_err(auth_failure)?;
                conn.0
                    .authenticate(&creds, &conn.1)
                    .await
                    .map_err(|e| auth_failure(format!("{}: {e}", target.name)))?;
            }
        }
        Ok(Connection {
            client: conn.0,
            ehlo: conn.1,
            born: Instant::now(),
        })
    }

    /// TCP, the 220 greeting, EHLO.
    async fn greet(
        &self,
        target: &Target,
    ) -> Result<(SmtpClient<ClientIo>, EhloResponse<String>), Failure> {
        let t = &self.settings.timeouts;
        let stream = tokio::time::timeout(t.connect, TcpStream::connect(target.addr))
            .await
            .map_err(|_| unreachable("connect timed out"))?
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let mut client = SmtpClient {
            stream: Io::Plain(stream),
            timeout: t.command,
        };
        let greeting = tokio::time::timeout(t.command, client.read())
            .await
            .map_err(|_| unreachable("greeting timed out"))?
            .map_err(|e| unreachable(format!("greeting: {e}")))?;
        if greeting.code != 220 {
            return Err(unreachable(format!(
                "greeting {} {}",
                greeting.code, greeting.message
            )));
        }
        let ehlo = client
            .ehlo(&self.hostname)
            .await
            .map_err(|e| unreachable(format!("EHLO: {e}")))?;
        Ok((client, ehlo))
    }

    async fn starttls(
        &self,
        mut client: SmtpClient<ClientIo>,
        target: &Target,
        verify: bool,
    ) -> Result<(SmtpClient<ClientIo>, EhloResponse<String>), Failure> {
        let connector = self
            .tls
            .connector(verify)
            .ok_or_else(|| tls_failure("no trust anchors to verify the next hop with"))?;
        let r = client
            .cmd("STARTTLS\r\n")
            .await
            .map_err(|e| tls_failure(format!("STARTTLS: {e}")))?;
        if r.code != 220 {
            return Err(tls_failure(format!(
                "STARTTLS refused: {} {}",
                r.code, r.message
            )));
        }
        let name = match target.name.parse::<std::net::IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(target.name.clone())
                .map_err(|_| tls_failure(format!("{} is not a valid TLS name", target.name)))?,
        };
        let Io::Plain(tcp) = client.stream else {
            return Err(tls_failure("connection already encrypted"));
        };
        let handshake = connector.connect(name, tcp);
        let stream = tokio::time::timeout(self.settings.timeouts.command, handshake)
            .await
            .map_err(|_| tls_failure("TLS handshake timed out"))?
            .map_err(|e| tls_failure(format!("TLS handshake with {}: {e}", target.name)))?;
        let mut client = SmtpClient {
            stream: Io::Tls(Box::new(stream)),
            timeout: client.timeout,
        };
        // RFC 3207 §4.2: forget what was said before TLS and ask again.
        let ehlo = client
            .ehlo(&self.hostname)
            .await
            .map_err(|e| tls_failure(format!("EHLO after STARTTLS: {e}")))?;
        Ok((client, ehlo))
    }
}
