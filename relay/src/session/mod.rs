//! One SMTP session (RFC 5321): commands parsed with smtp-proto after the
//! strict line check, a [`Transaction`] at a time, each recipient resolved
//! with the routing core on the table the transaction started with and
//! forwarded cut-through to its next hop; the message streamed to all of
//! them, and the answer the outcome policy gives. Who the client is and
//! what it may do: [`auth`] and the routing core's grants.

mod auth;

use crate::Shared;
use crate::data::{self, DataLimits, DataOutcome, Kept};
use crate::downstream::MailParams;
use crate::io::{Io, ServerIo};
use crate::lines::{Line, LineReader};
use crate::received::Trace;
use crate::reply::{Reply, reply};
use crate::transaction::{Conclusion, Transaction};
use routing::address::Address;
use routing::grants::Rights;
use smtp_proto::{
    Error as ParseError, MAIL_BODY_8BITMIME, MAIL_RET_FULL, MAIL_RET_HDRS, MAIL_SMTPUTF8, MailFrom,
    Request,
};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// The longest command line we read (RFC 5321 says 512; extensions need
/// more, and AUTH lines carrying a ServiceAccount token up to 12288: RFC
/// 4954 §4).
const MAX_COMMAND_LINE: usize = 12_288;

/// Which service a listener offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// Port 25: relaying by the relay networks and grants; AUTH after STARTTLS.
    Smtp,
    /// Port 587 (RFC 6409): STARTTLS, then AUTH, before any MAIL.
    Submission,
    /// Port 465 (RFC 8314): TLS from the first byte, then AUTH.
    Submissions,
}

impl Port {
    fn needs_auth(self) -> bool {
        self != Port::Smtp
    }
}

struct Session<S> {
    io: LineReader<ServerIo<S>>,
    tls_active: bool,
    shared: Arc<Shared>,
    peer: IpAddr,
    port: Port,
    /// Set by a successful AUTH; until then each MAIL asks the grants.
    authenticated: Option<Authenticated>,
    /// A verified TLS client certificate: its subject and DNS names.
    certificate: Option<(String, Vec<String>)>,
    helo: Option<String>,
    esmtp: bool,
    tx: Option<Transaction>,
    errors: usize,
    out: Vec<u8>,
    id: String,
}

/// Counts the session as active for as long as it lives (drain waits on it).
struct Active(Arc<Shared>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.session_ended();
    }
}

/// Who AUTH said the client is.
struct Authenticated {
    rights: Rights,
    /// PLAIN or LOGIN, for the Received header.
    mechanism: &'static str,
}

/// A session on port 25.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(stream: S, peer: IpAddr, shared: Arc<Shared>) {
    run_on(stream, peer, shared, Port::Smtp).await
}

pub async fn run_on<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: IpAddr,
    shared: Arc<Shared>,
    port: Port,
) {
    shared.session_started();
    let _active = Active(shared.clone());
    let id = format!("{:x}", shared.next_session.fetch_add(1, Ordering::Relaxed));
    let mut s = Session {
        io: LineReader::new(Io::Plain(stream)),
        tls_active: false,
        shared,
        peer,
        port,
        authenticated: None,
        certificate: None,
        helo: None,
        esmtp: false,
        tx: None,
        errors: 0,
        out: Vec::with_capacity(512),
        id,
    };
    if port == Port::Submissions && !s.handshake().await {
        return;
    }
    // The greeting and 354 carry no enhanced code (RFC 2034 §3).
    let greeting = format!("220 {} ESMTP mailroute-relay\r\n", s.shared.config.hostname);
    s.out.extend_from_slice(greeting.as_bytes());
    if s.flush().await.is_err() {
        return;
    }
    s.serve().await;
    s.end_transaction().await;
}

enum Next {
    Continue,
    Close,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    async fn flush(&mut self) -> std::io::Result<()> {
        let out = std::mem::take(&mut self.out);
        let r = self.io.get_mut().write_all(&out).await;
        self.out = out;
        self.out.clear();
        r?;
        self.io.get_mut().flush().await
    }

    fn say(&mut self, r: &Reply) {
        let _ = r.write(&mut self.out);
    }

    async fn serve(&mut self) {
        let timeout = self.shared.config.command_timeout;
        let mut drain = self.shared.drain_signal();
        loop {
            // Draining: a session between transactions is told to go now;
            // one in a transaction finishes it first.
            if self.tx.is_none() && *drain.borrow_and_update() {
                let r = reply(
                    421,
                    "4.3.2",
                    format!(
                        "{} Service shutting down; try again later",
                        self.shared.config.hostname
                    ),
                );
                self.say(&r);
                let _ = self.flush().await;
                return;
            }
            let read = tokio::time::timeout(timeout, self.io.next_line(MAX_COMMAND_LINE));
            let line = if self.tx.is_none() {
                tokio::select! {
                    line = read => line,
                    _ = drain.changed() => continue,
                }
            } else {
                read.await
            };
            let next = match line {
                Err(_) => {
                    self.say(&reply(
                        421,
                        "4.4.2",
                        format!("{} Timeout exceeded, closing", self.shared.config.hostname),
                    ));
                    Next::Close
                }
                Ok(Err(_)) | Ok(Ok(None)) => return,
                Ok(Ok(Some(Line::BareNewline))) => {
                    // As Postfix does: a client that sends bare line feeds is
                    // either broken or probing for smuggling; either way, stop.
                    self.say(&reply(
                        521,
                        "5.5.2",
                        "Bare CR or LF in command line; closing",
                    ));
                    Next::Close
                }
                Ok(Ok(Some(Line::TooLong))) => {
                    self.say(&reply(500, "5.5.2", "Command line too long"));
                    self.error()
                }
                Ok(Ok(Some(Line::Ok(line)))) => {
                    let line = line.to_vec();
                    self.command(&line).await
                }
            };
            // Pipelined commands are answered together; flush when the
            // client waits for us.
            let waiting = matches!(next, Next::Close) || !self.io.has_buffered();
            if waiting && self.flush().await.is_err() {
                return;
            }
            if matches!(next, Next::Close) {
                // Over TLS, close_notify: the client can tell our close from
                // a truncation (RFC 8446 §6.1). In the clear, closing the
                // socket sends the same FIN: no shutdown call first.
                if self.tls_active {
                    let _ = self.io.get_mut().shutdown().await;
                }
                return;
            }
        }
    }

    fn error(&mut self) -> Next {
        self.errors += 1;
        if self.errors >= self.shared.config.max_errors {
            self.say(&reply(421, "4.7.0", "Too many errors; closing"));
            return Next::Close;
        }
        Next::Continue
    }

    async fn command(&mut self, line: &[u8]) -> Next {
        // smtp-proto's AUTH does not give us the exchange we need (LOGIN's
        // initial response, RFC 4954's replies): ours.
        if line.len() >= 4
            && line[..4].eq_ignore_ascii_case(b"AUTH")
            && line.get(4).is_none_or(|b| b.is_ascii_whitespace())
        {
            return self.auth(line).await;
        }
        // smtp-proto does not know PRDR: a MAIL asking for it is parsed
        // without the parameter.
        let (parsed, prdr) = match Request::parse(&mut line.iter()) {
            Err(ParseError::UnsupportedParameter { param }) if param == "PRDR" => {
                match without_prdr(line) {
                    Some(rest) => (
                        Request::parse(&mut rest.iter()).map(Request::into_owned),
                        true,
                    ),
                    None => (Err(ParseError::UnsupportedParameter { param }), false),
                }
            }
            other => (other.map(Request::into_owned), false),
        };
        let request = match parsed {
            Ok(r) => r,
            Err(e) => {
                let r = match e {
                    ParseError::UnknownCommand => reply(500, "5.5.1", "Command unrecognized"),
                    ParseError::SyntaxError { syntax } => {
                        reply(501, "5.5.4", format!("Syntax: {syntax}"))
                    }
                    ParseError::InvalidSenderAddress => {
                        reply(501, "5.1.7", "Bad sender address syntax")
                    }
                    ParseError::InvalidRecipientAddress => {
                        reply(501, "5.1.3", "Bad recipient address syntax")
                    }
                    ParseError::InvalidParameter { param } => {
                        reply(501, "5.5.4", format!("Invalid parameter {param}"))
                    }
                    ParseError::UnsupportedParameter { param } => {
                        reply(555, "5.5.4", format!("Unsupported parameter {param}"))
                    }
                    _ => reply(500, "5.5.2", "Syntax error"),
                };
                self.say(&r);
                return self.error();
            }
        };
        match request {
            Request::Ehlo { host } => {
                self.end_transaction().await;
                self.helo = Some(host);
                self.esmtp = true;
                let starttls = if self.shared.tls.is_some() && !self.tls_active {
                    "250-STARTTLS\r\n"
                } else {
                    ""
                };
                // Never in cleartext (RFC 8314): AUTH only over TLS.
                let auth = if self.tls_active && self.authenticated.is_none() {
                    "250-AUTH PLAIN LOGIN\r\n"
                } else {
                    ""
                };
                let ehlo = format!(
                    "250-{}\r\n250-PIPELINING\r\n250-SIZE {}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n{starttls}{auth}250-DSN\r\n250-PRDR\r\n250-ENHANCEDSTATUSCODES\r\n250 HELP\r\n",
                    self.shared.config.hostname, self.shared.config.max_message_size
                );
                self.out.extend_from_slice(ehlo.as_bytes());
            }
            Request::Helo { host } => {
                self.end_transaction().await;
                self.helo = Some(host);
                self.esmtp = false;
                let r = reply(250, "2.0.0", self.shared.config.hostname.clone());
                self.say(&r);
            }
            Request::Mail { from } => {
                let r = self.mail(from, prdr);
                self.say(&r);
                if r.code >= 400 {
                    return self.error();
                }
            }
            Request::Rcpt { to } => {
                let (r, reason) = match self.tx.as_mut() {
                    Some(tx) => tx.rcpt(&self.shared, to).await,
                    None => (reply(503, "5.5.1", "Need MAIL before RCPT"), "BadSequence"),
                };
                let decision = match r.code {
                    200..=299 => "forward",
                    400..=499 => "defer",
                    _ => "reject",
                };
                self.shared.metrics.recipient(decision, reason);
                self.say(&r);
            }
            Request::Data => return self.data().await,
            Request::Rset => {
                self.end_transaction().await;
                self.say(&reply(250, "2.0.0", "Ok"));
            }
            Request::Noop { .. } => self.say(&reply(250, "2.0.0", "Ok")),
            Request::Vrfy { .. } => self.say(&reply(
                252,
                "2.5.0",
                "Cannot VRFY user, but will accept message and attempt delivery",
            )),
            Request::Help { .. } => self.say(&reply(214, "2.0.0", "mailroute-relay: see RFC 5321")),
            Request::Quit => {
                self.say(&reply(221, "2.0.0", "Bye"));
                return Next::Close;
            }
            Request::StartTls => return self.starttls().await,
            Request::Lhlo { .. } => {
                self.say(&reply(500, "5.5.1", "This is not an LMTP server"));
                return self.error();
            }
            _ => {
                self.say(&reply(502, "5.5.1", "Command not implemented"));
                return self.error();
            }
        }
        Next::Continue
    }

    fn mail(&mut self, from: MailFrom<String>, prdr: bool) -> Reply {
        let (size, flags) = (from.size, from.flags);
        if self.helo.is_none() {
            return reply(503, "5.5.1", "Send HELO or EHLO first");
        }
        if self.tx.is_some() {
            return reply(503, "5.5.1", "Nested MAIL command");
        }
        if prdr && !self.esmtp {
            return reply(555, "5.5.4", "PRDR needs EHLO");
        }
        if size > self.shared.config.max_message_size {
            return reply(552, "5.3.4", "Message size exceeds fixed limit");
        }
        if self.port.needs_auth() && !self.tls_active {
            return reply(530, "5.7.0", "Must issue a STARTTLS command first");
        }
        if self.port.needs_auth() && self.authenticated.is_none() {
            return reply(530, "5.7.0", "Authentication required");
        }
        let Some(table) = self.shared.tables.current() else {
            return reply(
                451,
                "4.3.0",
                "Routing table not loaded yet; try again later",
            );
        };
        let rights = match &self.authenticated {
            Some(a) => a.rights.clone(),
            None => Rights::unauthenticated(
                table.routing.grants(),
                &self.shared.config.relay_networks,
                self.peer,
                self.certificate
                    .as_ref()
                    .map(|(subject, names)| (subject.as_str(), names.as_slice())),
            ),
        };
        if let Some(r) = self.sender_refused(&rights, &from.address) {
            return r;
        }
        let params = MailParams {
            size: (size > 0).then_some(size),
            eight_bit: flags & MAIL_BODY_8BITMIME != 0,
            smtputf8: flags & MAIL_SMTPUTF8 != 0,
            ret: flags & (MAIL_RET_FULL | MAIL_RET_HDRS),
            envid: from.env_id,
        };
        self.tx = Some(Transaction::new(table, from.address, params, prdr, rights));
        reply(250, "2.1.0", "Ok")
    }

    async fn data(&mut self) -> Next {
        let Some(mut tx) = self.tx.take() else {
            self.say(&reply(503, "5.5.1", "Need MAIL before DATA"));
            return self.error();
        };
        if let Some(r) = tx.start_data(&self.shared, &self.id).await {
            tx.hops.end(&self.shared.outbound).await;
            self.say(&r);
            return Next::Continue;
        }
        self.out
            .extend_from_slice(b"354 End data with <CR><LF>.<CR><LF>\r\n");
        if self.flush().await.is_err() {
            tx.hops.abandon();
            return Next::Close;
        }
        let config = &self.shared.config;
        let single = (tx.recipients.len() == 1).then(|| tx.recipients[0].routed.as_str());
        let record = config.auth.record_principal;
        let header = Trace {
            helo: self.helo.as_deref().unwrap_or("unknown"),
            client: self.peer,
            hostname: &config.hostname,
            esmtp: self.esmtp,
            tls: self.tls_active,
            authenticated: self
                .authenticated
                .as_ref()
                .map(|a| (a.mechanism, record.then(|| a.rights.principal()))),
            id: &self.id,
            recipient: single,
        }
        .header(SystemTime::now());
        let limits = DataLimits {
            max_message_size: config.max_message_size,
            max_line: config.max_line_length,
            hop_limit: config.hop_limit,
            timeout: config.data_timeout,
        };
        // A notification returns the whole message only for RET=FULL from
        // a client that may relay; otherwise its header section.
        let whole = tx.rights.trusted() && tx.params.ret & MAIL_RET_FULL != 0;
        let senders = tx
            .rights
            .grant()
            .is_some_and(|g| !g.senders.is_empty())
            .then(|| tx.rights.clone());
        let mut kept = tx
            .may_notify()
            .then(|| Kept::new(config.bounce_size_limit, !whole));
        let (outcome, bytes) = data::receive(
            &mut self.io,
            &mut tx.hops,
            header,
            &limits,
            tx.prdr,
            kept.as_mut(),
            senders.as_ref(),
        )
        .await;
        self.shared.metrics.message_bytes.inc_by(bytes as u64);
        let next = match outcome {
            DataOutcome::Finished => {
                match tx
                    .conclude(&self.shared, &self.id, tx.rights.trusted(), kept.as_ref())
                    .await
                {
                    Conclusion::One(r) => self.say(&r),
                    Conclusion::PerRecipient(replies, last) => {
                        // PRDR: the intermediate 353 carries no enhanced code.
                        self.out
                            .extend_from_slice(b"353 PRDR content analysis beginning\r\n");
                        for r in &replies {
                            self.say(r);
                        }
                        self.say(&last);
                    }
                }
                Next::Continue
            }
            DataOutcome::Refused(r) => {
                let outcome = if r.code >= 500 {
                    routing::outcome::Outcome::Refused
                } else {
                    routing::outcome::Outcome::Failed
                };
                tx.record(&self.shared, &self.id, &r, outcome);
                self.say(&r);
                Next::Continue
            }
            DataOutcome::ClientLost => {
                self.shared.metrics.transaction("failed");
                Next::Close
            }
        };
        tx.hops.end(&self.shared.outbound).await;
        next
    }

    /// RFC 3207: after 220 the connection turns TLS, the client starts over
    /// with EHLO, and anything it sent behind STARTTLS in the clear is
    /// discarded (the command injection of CVE-2011-0411).
    async fn starttls(&mut self) -> Next {
        let Some(tls) = self.shared.tls.clone() else {
            self.say(&reply(454, "4.7.0", "TLS not available"));
            return Next::Continue;
        };
        if self.tls_active {
            self.say(&reply(503, "5.5.1", "Already using TLS"));
            return self.error();
        }
        self.say(&reply(220, "2.0.0", "Ready to start TLS"));
        if self.flush().await.is_err() {
            return Next::Close;
        }
        self.io.discard_buffered();
        let Io::Plain(plain) = std::mem::replace(self.io.get_mut(), Io::Upgrading) else {
            return Next::Close;
        };
        let handshake = tls.acceptor().accept(plain);
        match tokio::time::timeout(self.shared.config.command_timeout, handshake).await {
            Ok(Ok(stream)) => {
                self.certificate = crate::tls::client_identity(stream.get_ref().1);
                *self.io.get_mut() = Io::Tls(Box::new(stream));
                self.tls_active = true;
                self.end_transaction().await;
                self.helo = None;
                self.esmtp = false;
                Next::Continue
            }
            _ => Next::Close,
        }
    }

    /// Port 465: the TLS handshake before the greeting.
    async fn handshake(&mut self) -> bool {
        let Some(tls) = self.shared.tls.clone() else {
            return false;
        };
        let Io::Plain(plain) = std::mem::replace(self.io.get_mut(), Io::Upgrading) else {
            return false;
        };
        let handshake = tls.acceptor().accept(plain);
        match tokio::time::timeout(self.shared.config.command_timeout, handshake).await {
            Ok(Ok(stream)) => {
                self.certificate = crate::tls::client_identity(stream.get_ref().1);
                *self.io.get_mut() = Io::Tls(Box::new(stream));
                self.tls_active = true;
                true
            }
            _ => false,
        }
    }

    /// MAIL FROM's sender against the client's grant (553 5.7.1), then its
    /// rate (450 4.7.1); each refusal counted and logged with the principal.
    fn sender_refused(&self, rights: &Rights, from: &str) -> Option<Reply> {
        let sender = match from {
            "" => None,
            a => match Address::parse(a) {
                Ok(a) => Some(a),
                // The routing core refuses a malformed sender's recipients.
                Err(_) if rights.grant().is_none() => return None,
                Err(_) => {
                    return Some(reply(553, "5.1.7", "Bad sender address syntax"));
                }
            },
        };
        let refused = rights.check_sender(sender.as_ref()).err().or_else(|| {
            (!self.shared.identity.admit_message(rights))
                .then_some(routing::grants::Refusal::RateExceeded)
        });
        let refusal = refused?;
        self.shared.metrics.grant_refusal(refusal.as_str());
        tracing::info!(
            session = %self.id,
            client = %self.peer,
            principal = rights.principal(),
            sender = from,
            refusal = refusal.as_str(),
            "MAIL refused by the client's grant"
        );
        Some(reply(refusal.code(), refusal.enhanced(), refusal.text()))
    }

    async fn end_transaction(&mut self) {
        if let Some(tx) = self.tx.take() {
            tx.hops.end(&self.shared.outbound).await;
        }
    }
}

/// A MAIL command line without its PRDR parameter (the last
/// whitespace-separated token that is PRDR, in any case): parameters
/// follow the reverse-path.
fn without_prdr(line: &[u8]) -> Option<Vec<u8>> {
    let end = line.len()
        - line
            .iter()
            .rev()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
    let body = &line[..end];
    let mut i = body.len();
    while i > 0 {
        let token_end = i;
        while i > 0 && !body[i - 1].is_ascii_whitespace() {
            i -= 1;
        }
        let token = &body[i..token_end];
        if token.eq_ignore_ascii_case(b"PRDR") && i > 0 {
            let start = i - 1;
            let mut out = body[..start].to_vec();
            out.extend_from_slice(&body[token_end..]);
            out.extend_from_slice(&line[end..]);
            return Some(out);
        }
        while i > 0 && body[i - 1].is_ascii_whitespace() {
            i -= 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::without_prdr;

    #[test]
    fn prdr_is_taken_out_of_a_mail_command() {
        let cases: [(&[u8], Option<&[u8]>); 5] = [
            (
                b"MAIL FROM:<a@b.c> PRDR\r\n",
                Some(b"MAIL FROM:<a@b.c>\r\n"),
            ),
            (
                b"MAIL FROM:<a@b.c> prdr SIZE=10\r\n",
                Some(b"MAIL FROM:<a@b.c> SIZE=10\r\n"),
            ),
            (
                b"MAIL FROM:<a@b.c> SIZE=10 PRDR BODY=8BITMIME\r\n",
                Some(b"MAIL FROM:<a@b.c> SIZE=10 BODY=8BITMIME\r\n"),
            ),
            (b"MAIL FROM:<a@b.c> PRDR=1\r\n", None),
            (b"PRDR\r\n", None),
        ];
        for (line, want) in cases {
            assert_eq!(
                without_prdr(line).as_deref(),
                want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
