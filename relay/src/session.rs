//! One SMTP session (RFC 5321): commands parsed with smtp-proto after the
//! strict line check, a transaction at a time, each recipient resolved with
//! the routing core on the table the transaction started with, and
//! forwarded cut-through to one next hop.

use crate::Shared;
use crate::data::{self, DataLimits, DataOutcome};
use crate::downstream::{Envelope, HopId, MailParams, NextHop, RcptParams};
use crate::io::{Io, ServerIo};
use crate::lines::{Line, LineReader};
use crate::received::Trace;
use crate::reply::{Reply, from_routing, reply};
use crate::table::Loaded;
use routing::Decision;
use smtp_proto::{
    Error as ParseError, MAIL_BODY_8BITMIME, MAIL_RET_FULL, MAIL_RET_HDRS, MAIL_SMTPUTF8, MailFrom,
    RCPT_NOTIFY_DELAY, RCPT_NOTIFY_FAILURE, RCPT_NOTIFY_NEVER, RCPT_NOTIFY_SUCCESS, RcptTo,
    Request,
};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// The longest command line we read (RFC 5321 says 512; extensions need more).
const MAX_COMMAND_LINE: usize = 2048;

struct Transaction {
    table: Arc<Loaded>,
    from: String,
    params: MailParams,
    hop: Option<NextHop>,
    /// Why the next hop can no longer take this transaction's message.
    broken: Option<Reply>,
    recipients: Vec<String>,
}

struct Session<S> {
    io: LineReader<ServerIo<S>>,
    tls_active: bool,
    shared: Arc<Shared>,
    peer: IpAddr,
    may_relay: bool,
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

pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(stream: S, peer: IpAddr, shared: Arc<Shared>) {
    shared.session_started();
    let _active = Active(shared.clone());
    let may_relay = shared
        .config
        .relay_networks
        .iter()
        .any(|n| n.contains(peer));
    let id = format!("{:x}", shared.next_session.fetch_add(1, Ordering::Relaxed));
    let mut s = Session {
        io: LineReader::new(Io::Plain(stream)),
        tls_active: false,
        shared,
        peer,
        may_relay,
        helo: None,
        esmtp: false,
        tx: None,
        errors: 0,
        out: Vec::with_capacity(512),
        id,
    };
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
        let request = match Request::parse(&mut line.iter()) {
            Ok(r) => r.into_owned(),
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
                let ehlo = format!(
                    "250-{}\r\n250-PIPELINING\r\n250-SIZE {}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n{starttls}250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n250 HELP\r\n",
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
                let r = self.mail(from);
                self.say(&r);
                if r.code >= 400 {
                    return self.error();
                }
            }
            Request::Rcpt { to } => {
                let (r, reason) = self.rcpt(to).await;
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

    fn mail(&mut self, from: MailFrom<String>) -> Reply {
        let (size, flags) = (from.size, from.flags);
        if self.helo.is_none() {
            return reply(503, "5.5.1", "Send HELO or EHLO first");
        }
        if self.tx.is_some() {
            return reply(503, "5.5.1", "Nested MAIL command");
        }
        if size > self.shared.config.max_message_size {
            return reply(552, "5.3.4", "Message size exceeds fixed limit");
        }
        let Some(table) = self.shared.tables.current() else {
            return reply(
                451,
                "4.3.0",
                "Routing table not loaded yet; try again later",
            );
        };
        self.tx = Some(Transaction {
            table,
            from: from.address,
            params: MailParams {
                size: (size > 0).then_some(size),
                eight_bit: flags & MAIL_BODY_8BITMIME != 0,
                smtputf8: flags & MAIL_SMTPUTF8 != 0,
                ret: flags & (MAIL_RET_FULL | MAIL_RET_HDRS),
                envid: from.env_id,
            },
            hop: None,
            broken: None,
            recipients: Vec::new(),
        });
        reply(250, "2.1.0", "Ok")
    }

    /// The reply for one RCPT, and the reason for metrics.
    async fn rcpt(&mut self, to: RcptTo<String>) -> (Reply, &'static str) {
        let shared = &self.shared;
        let Some(tx) = self.tx.as_mut() else {
            return (reply(503, "5.5.1", "Need MAIL before RCPT"), "BadSequence");
        };
        if tx.recipients.len() >= shared.config.max_recipients {
            return (
                reply(452, "4.5.3", "Too many recipients"),
                "TooManyRecipients",
            );
        }
        let (recipient, connector) = match tx.table.routing.resolve(&to.address, self.may_relay) {
            Decision::Reply(r) => return (from_routing(&r), r.reason.as_str()),
            Decision::Forward {
                recipient,
                connector,
            } => (recipient, connector),
        };
        if let Some(broken) = &tx.broken {
            return (broken.clone(), "NextHopLost");
        }
        let route = tx.table.routing.connector(connector);
        let too_big = matches!((route.max_message_size, tx.params.size), (Some(max), Some(size)) if size as u64 > max);
        if too_big {
            return (
                reply(552, "5.3.4", "Message too big for this recipient's route"),
                "TooBig",
            );
        }
        let id = HopId::of(connector, route, &recipient);
        let dsn = RcptParams {
            notify: to.flags
                & (RCPT_NOTIFY_NEVER
                    | RCPT_NOTIFY_SUCCESS
                    | RCPT_NOTIFY_FAILURE
                    | RCPT_NOTIFY_DELAY),
            orcpt: to.orcpt,
        };
        let answer = match &mut tx.hop {
            Some(hop) if hop.id != id => {
                // One next hop per transaction: the sender retries this one
                // in a transaction of its own (RFC 5321 §4.5.3.1.10).
                let r = reply(
                    452,
                    "4.5.3",
                    "Recipient routed to another next hop; try it in a new transaction",
                );
                return (r, "OtherNextHop");
            }
            Some(hop) => hop.rcpt(&recipient, &to.address, &dsn).await,
            None => {
                let envelope = Envelope {
                    from: &tx.from,
                    params: &tx.params,
                    to: &recipient,
                    original: &to.address,
                    dsn: &dsn,
                };
                match shared.outbound.start(id, route, &envelope).await {
                    Ok((hop, r)) => {
                        tx.hop = Some(hop);
                        Ok(r)
                    }
                    Err((r, reason)) => return (r, reason),
                }
            }
        };
        match answer {
            Ok(r) if r.is_positive_completion() => {
                tx.recipients.push(recipient);
                (reply(250, "2.1.5", "Ok"), "Routed")
            }
            Ok(r) => (r, "NextHop"),
            Err(r) => {
                // The next hop is gone; the transaction cannot deliver.
                tx.hop = None;
                tx.broken = Some(r.clone());
                (r, "NextHopLost")
            }
        }
    }

    async fn data(&mut self) -> Next {
        let Some(mut tx) = self.tx.take() else {
            self.say(&reply(503, "5.5.1", "Need MAIL before DATA"));
            return self.error();
        };
        if tx.recipients.is_empty() {
            if let Some(hop) = tx.hop.take() {
                hop.reset(&self.shared.outbound).await;
            }
            self.say(&reply(554, "5.5.1", "No valid recipients"));
            return Next::Continue;
        }
        if let Some(r) = tx.broken.take() {
            self.say(&r);
            return Next::Continue;
        }
        let Some(mut hop) = tx.hop.take() else {
            self.say(&reply(451, "4.4.2", "Next hop lost; try again later"));
            return Next::Continue;
        };
        if let Err(r) = hop.data().await {
            if r.code != 421 {
                hop.reset(&self.shared.outbound).await;
            }
            self.say(&r);
            return Next::Continue;
        }
        self.out
            .extend_from_slice(b"354 End data with <CR><LF>.<CR><LF>\r\n");
        if self.flush().await.is_err() {
            return Next::Close;
        }
        let config = &self.shared.config;
        let single = (tx.recipients.len() == 1).then(|| tx.recipients[0].as_str());
        let header = Trace {
            helo: self.helo.as_deref().unwrap_or("unknown"),
            client: self.peer,
            hostname: &config.hostname,
            esmtp: self.esmtp,
            tls: self.tls_active,
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
        let (outcome, bytes) = data::receive(&mut self.io, &mut hop, header, &limits).await;
        self.shared.metrics.message_bytes.inc_by(bytes as u64);
        match outcome {
            DataOutcome::Reply(r, finished) => {
                // After the next hop's verdict on the final dot the
                // connection is between transactions and can serve the
                // next one. Otherwise it is dropped without the final dot,
                // so the next hop discards what it got.
                if finished && r.code != 421 {
                    hop.release(&self.shared.outbound);
                }
                let outcome = match r.code {
                    250 => "delivered",
                    500..=599 => "refused",
                    _ => "failed",
                };
                self.shared.metrics.transaction(outcome);
                self.say(&r);
                Next::Continue
            }
            DataOutcome::ClientLost => {
                self.shared.metrics.transaction("failed");
                Next::Close
            }
        }
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

    async fn end_transaction(&mut self) {
        if let Some(hop) = self.tx.take().and_then(|tx| tx.hop) {
            hop.reset(&self.shared.outbound).await;
        }
    }
}
