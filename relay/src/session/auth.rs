//! SMTP AUTH (RFC 4954) in a session: only over TLS, once, outside a
//! transaction; the SASL exchange is the routing core's
//! (routing::grants::sasl), the credentials are checked by the relay's
//! [`crate::identity::Identity`], and failures are slowed down and, past a
//! limit per client address, refused outright.

use super::{Authenticated, Next, Session};
use crate::identity::AuthOutcome;
use crate::lines::Line;
use crate::reply::reply;
use routing::grants::sasl::{Exchange, SaslError, Step};
use tokio::io::{AsyncRead, AsyncWrite};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) async fn auth(&mut self, line: &[u8]) -> Next {
        let text = String::from_utf8_lossy(line);
        let args = text.trim_end_matches(['\r', '\n'])[4..].trim();
        let mechanism = match args.split_ascii_whitespace().next() {
            Some(m) if m.eq_ignore_ascii_case("PLAIN") => "PLAIN",
            Some(m) if m.eq_ignore_ascii_case("LOGIN") => "LOGIN",
            _ => "other",
        };
        let refusal = if self.helo.is_none() || !self.esmtp {
            Some((reply(503, "5.5.1", "Send EHLO first"), "bad_sequence"))
        } else if self.authenticated.is_some() {
            Some((reply(503, "5.5.1", "Already authenticated"), "bad_sequence"))
        } else if self.tx.is_some() {
            Some((
                reply(503, "5.5.1", "AUTH not allowed in a mail transaction"),
                "bad_sequence",
            ))
        } else if !self.tls_active {
            Some((
                reply(
                    538,
                    "5.7.11",
                    "Encryption required for requested authentication mechanism",
                ),
                "no_tls",
            ))
        } else if self.shared.identity.auth_blocked(self.peer) {
            self.shared.metrics.auth(mechanism, "throttled");
            tracing::warn!(session = %self.id, client = %self.peer, "AUTH refused: too many failures from this address");
            self.say(&reply(
                421,
                "4.7.0",
                "Too many failed authentications; try again later",
            ));
            return Next::Close;
        } else {
            None
        };
        if let Some((r, result)) = refusal {
            self.shared.metrics.auth(mechanism, result);
            self.say(&r);
            return self.error();
        }

        let (mut step, mut exchange) = Exchange::start(args);
        loop {
            match step {
                Step::Challenge(challenge) => {
                    self.out.extend_from_slice(b"334 ");
                    self.out.extend_from_slice(challenge.as_bytes());
                    self.out.extend_from_slice(b"\r\n");
                    if self.flush().await.is_err() {
                        return Next::Close;
                    }
                    let timeout = self.shared.config.command_timeout;
                    let read =
                        tokio::time::timeout(timeout, self.io.next_line(super::MAX_COMMAND_LINE));
                    let answer = match read.await {
                        Ok(Ok(Some(Line::Ok(l)))) => String::from_utf8_lossy(l)
                            .trim_end_matches(['\r', '\n'])
                            .to_owned(),
                        Ok(Ok(Some(Line::TooLong))) => {
                            self.shared.metrics.auth(mechanism, "malformed");
                            self.say(&reply(
                                500,
                                "5.5.6",
                                "Authentication Exchange line is too long",
                            ));
                            return self.error();
                        }
                        _ => return Next::Close,
                    };
                    let Some(ex) = exchange.as_mut() else {
                        return Next::Close;
                    };
                    step = ex.respond(&answer);
                }
                Step::Failed(e) => {
                    let result = if e == SaslError::Cancelled {
                        "cancelled"
                    } else {
                        "malformed"
                    };
                    self.shared.metrics.auth(mechanism, result);
                    self.say(&reply(e.code(), e.enhanced(), e.text()));
                    return self.error();
                }
                Step::Done(credentials) => {
                    // The grants of the table in force now (none before one
                    // is loaded: nobody can log in then).
                    let table = self.shared.tables.current();
                    let none = routing::grants::Grants::default();
                    let grants = table.as_ref().map_or(&none, |t| t.routing.grants());
                    let outcome = self
                        .shared
                        .identity
                        .authenticate(&credentials, grants)
                        .await;
                    return self
                        .authenticated(mechanism, &credentials.user, outcome)
                        .await;
                }
            }
        }
    }

    async fn authenticated(
        &mut self,
        mechanism: &'static str,
        user: &str,
        outcome: AuthOutcome,
    ) -> Next {
        match outcome {
            AuthOutcome::Granted(rights) => {
                self.shared.metrics.auth(mechanism, "success");
                tracing::info!(session = %self.id, client = %self.peer, mechanism, principal = rights.principal(),
                    grant = rights.grant().map(|g| g.name.as_str()).unwrap_or(""), "authenticated");
                self.authenticated = Some(Authenticated { rights, mechanism });
                self.say(&reply(235, "2.7.0", "Authentication successful"));
                Next::Continue
            }
            AuthOutcome::Temporary(why) => {
                self.shared.metrics.auth(mechanism, "temporary");
                tracing::warn!(session = %self.id, client = %self.peer, mechanism, user, error = %why,
                    "AUTH could not be checked now");
                self.say(&reply(454, "4.7.0", "Temporary authentication failure"));
                Next::Continue
            }
            AuthOutcome::Invalid(why) => {
                self.shared.metrics.auth(mechanism, "invalid");
                self.shared.identity.auth_failed(self.peer);
                // The user name a client gave is logged (a token is not:
                // it goes as the password).
                tracing::warn!(session = %self.id, client = %self.peer, mechanism, user, reason = why,
                    "AUTH failed");
                tokio::time::sleep(self.shared.identity.settings.failure_delay).await;
                self.say(&reply(535, "5.7.8", "Authentication credentials invalid"));
                self.error()
            }
        }
    }
}
