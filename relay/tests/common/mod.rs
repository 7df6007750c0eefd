//! Test peers on real loopback sockets: a downstream SMTP server that
//! records what it receives and can refuse, stall or drop; a line-level SMTP
//! client; and the relay itself started in-process on an ephemeral port.

#![allow(dead_code)]

use relay::table::{Loaded, Tables};
use relay::{Config, Shared, server};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One message as the downstream server received it.
#[derive(Clone, Debug, Default)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The data as it came on the wire, without the final ".\r\n".
    pub data: Vec<u8>,
    /// The message came over TLS.
    pub tls: bool,
    /// The user the client authenticated as.
    pub user: Option<String>,
    /// The MAIL and RCPT lines as sent.
    pub envelope_lines: Vec<String>,
}

#[derive(Clone, Default)]
pub struct SinkBehaviour {
    /// RCPT addresses answered 550 5.1.1.
    pub refuse: Vec<String>,
    /// Close the connection after this many bytes of DATA.
    pub drop_in_data_after: Option<usize>,
    /// Answer the final dot with this instead of 250.
    pub data_reply: Option<String>,
    /// Answer the final dot of every Nth message (counted over all
    /// connections) with this refusal instead of 250.
    pub refuse_every: Option<(usize, String)>,
    /// Close the connection after this many bytes of DATA, in every Nth
    /// message (counted over all connections).
    pub drop_every: Option<(usize, usize)>,
    /// Answer the DATA command with this instead of 354.
    pub data_command_reply: Option<String>,
    /// Offer STARTTLS with this certificate.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Offer AUTH PLAIN and accept only this user and password.
    pub auth: Option<(String, String)>,
    /// Offer DSN (RFC 3461).
    pub dsn: bool,
    /// Close the connection after each transaction, as a server with a
    /// short idle timeout would, without telling.
    pub close_after_message: bool,
    /// Do not offer PIPELINING.
    pub no_pipelining: bool,
}

pub struct Sink {
    pub addr: SocketAddr,
    /// DATA commands seen (over all connections), for `refuse_every` and
    /// `drop_every`.
    pub data_started: Arc<AtomicUsize>,
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Every command line seen, for protocol checks.
    pub commands: Arc<Mutex<Vec<String>>>,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
}

impl Sink {
    pub async fn start(behaviour: SinkBehaviour) -> Sink {
        Sink::start_on("127.0.0.1:0", behaviour).await
    }

    pub async fn start_on(addr: &str, behaviour: SinkBehaviour) -> Sink {
        Sink::try_start_on(addr, behaviour).await.unwrap()
    }

    pub async fn try_start_on(addr: &str, behaviour: SinkBehaviour) -> std::io::Result<Sink> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let data_started = Arc::new(AtomicUsize::new(0));
        let (r, c, n, d) = (
            received.clone(),
            commands.clone(),
            connections.clone(),
            data_started.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                n.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(sink_session(
                    stream,
                    behaviour.clone(),
                    r.clone(),
                    c.clone(),
                    d.clone(),
                ));
            }
        });
        Ok(Sink {
            addr,
            data_started,
            received,
            commands,
            connections,
        })
    }

    pub fn messages(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// `[ip]:port` for a connector's smart hosts.
    pub fn smart_host(&self) -> String {
        format!("[{}]:{}", self.addr.ip(), self.addr.port())
    }
}

/// A self-signed certificate for `name` (a host name or an IP address)
/// and a TLS server configuration presenting it.
pub fn self_signed_server(
    name: &str,
) -> (
    tokio_rustls::rustls::pki_types::CertificateDer<'static>,
    Arc<tokio_rustls::rustls::ServerConfig>,
) {
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let ck = rcgen::generate_simple_self_signed(vec![name.into()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    (cert, Arc::new(config))
}

type SinkIo = relay::io::ServerIo<TcpStream>;

async fn sink_session(
    stream: TcpStream,
    b: SinkBehaviour,
    received: Arc<Mutex<Vec<Received>>>,
    commands: Arc<Mutex<Vec<String>>>,
    data_started: Arc<AtomicUsize>,
) {
    let mut io: BufReader<SinkIo> = BufReader::new(relay::io::Io::Plain(stream));
    let _ = io.get_mut().write_all(b"220 sink ESMTP\r\n").await;
    let mut current = Received::default();
    let mut tls = false;
    let mut user: Option<String> = None;
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        commands.lock().unwrap().push(line.trim_end().to_string());
        let upper = line.to_ascii_uppercase();
        let answer: String = if upper.starts_with("EHLO") {
            let mut ehlo =
                String::from("250-sink\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n");
            if !b.no_pipelining {
                ehlo.push_str("250-PIPELINING\r\n");
            }
            if b.tls.is_some() && !tls {
                ehlo.push_str("250-STARTTLS\r\n");
            }
            if b.auth.is_some() {
                ehlo.push_str("250-AUTH PLAIN\r\n");
            }
            if b.dsn {
                ehlo.push_str("250-DSN\r\n");
            }
            ehlo.push_str("250 ENHANCEDSTATUSCODES\r\n");
            ehlo
        } else if upper.starts_with("STARTTLS") && b.tls.is_some() && !tls {
            let _ = io
                .get_mut()
                .write_all(b"220 2.0.0 Ready to start TLS\r\n")
                .await;
            let relay::io::Io::Plain(tcp) = io.into_inner() else {
                return;
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(b.tls.clone().unwrap());
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            io = BufReader::new(relay::io::Io::Tls(Box::new(stream)));
            tls = true;
            continue;
        } else if upper.starts_with("AUTH PLAIN") && b.auth.is_some() {
            let (want_user, want_password) = b.auth.clone().unwrap();
            let given = line.trim_end().split(' ').nth(2).unwrap_or("");
            let expected = base64_plain(&want_user, &want_password);
            if given == expected {
                user = Some(want_user);
                "235 2.7.0 Authentication successful\r\n".into()
            } else {
                "535 5.7.8 Authentication credentials invalid\r\n".into()
            }
        } else if upper.starts_with("MAIL FROM:") {
            current = Received {
                tls,
                user: user.clone(),
                ..Received::default()
            };
            current.mail_from = between(&line, '<', '>');
            current.envelope_lines.push(line.trim_end().to_string());
            "250 2.1.0 Ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            let to = between(&line, '<', '>');
            if b.refuse.iter().any(|x| x.eq_ignore_ascii_case(&to)) {
                "550 5.1.1 <sink> Recipient address rejected: User unknown\r\n".into()
            } else {
                current.envelope_lines.push(line.trim_end().to_string());
                current.rcpt_to.push(to);
                "250 2.1.5 Ok\r\n".into()
            }
        } else if upper.starts_with("DATA") {
            if let Some(reply) = &b.data_command_reply {
                let _ = io
                    .get_mut()
                    .write_all(format!("{reply}\r\n").as_bytes())
                    .await;
                continue;
            }
            let nth = data_started.fetch_add(1, Ordering::SeqCst) + 1;
            let refusal = b
                .refuse_every
                .as_ref()
                .filter(|(every, _)| nth.is_multiple_of(*every))
                .map(|(_, r)| r.clone())
                .or(b.data_reply.clone());
            let drop_after = b
                .drop_every
                .filter(|(every, _)| nth.is_multiple_of(*every))
                .map(|(_, after)| after)
                .or(b.drop_in_data_after);
            let _ = io
                .get_mut()
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await;
            let mut data = Vec::new();
            let mut byte = [0u8; 1];
            loop {
                if io.read(&mut byte).await.unwrap_or(0) == 0 {
                    return;
                }
                data.push(byte[0]);
                if drop_after.is_some_and(|limit| data.len() >= limit) {
                    return;
                }
                if data.ends_with(b"\r\n.\r\n") || data == b".\r\n" {
                    break;
                }
            }
            data.truncate(data.len() - 3);
            current.data = data;
            if let Some(reply) = refusal {
                format!("{reply}\r\n")
            } else {
                received.lock().unwrap().push(std::mem::take(&mut current));
                if b.close_after_message {
                    let _ = io
                        .get_mut()
                        .write_all(b"250 2.0.0 Ok: queued as SINK1\r\n")
                        .await;
                    return;
                }
                "250 2.0.0 Ok: queued as SINK1\r\n".into()
            }
        } else if upper.starts_with("QUIT") {
            let _ = io.get_mut().write_all(b"221 2.0.0 Bye\r\n").await;
            return;
        } else if upper.starts_with("RSET") || upper.starts_with("NOOP") {
            "250 2.0.0 Ok\r\n".into()
        } else {
            "502 5.5.1 Not implemented\r\n".into()
        };
        if io.get_mut().write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The AUTH PLAIN initial response for a user and password (RFC 4616).
pub fn base64_plain(user: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let raw = format!("\0{user}\0{password}");
    let mut out = String::new();
    for chunk in raw.as_bytes().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn between(s: &str, a: char, b: char) -> String {
    let start = s.find(a).map(|i| i + 1).unwrap_or(0);
    let end = s[start..].find(b).map(|i| start + i).unwrap_or(s.len());
    s[start..end].to_string()
}

/// The relay on an ephemeral loopback port, routing by `table`.
pub struct Relay {
    pub addr: SocketAddr,
    pub tables: Arc<Tables>,
    pub shared: Arc<Shared>,
}

impl Relay {
    pub async fn start(config: Config, tables: Arc<Tables>) -> Relay {
        Relay::start_shared(Shared::new(config, tables)).await
    }

    pub async fn start_shared(shared: Arc<Shared>) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(server::serve(listener, shared.clone()));
        Relay {
            addr,
            tables: shared.tables.clone(),
            shared,
        }
    }

    /// `/metrics`, `/healthz`, `/readyz` on an ephemeral port.
    pub async fn http(&self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(relay::http::serve(listener, self.shared.clone()));
        addr
    }

    /// A relay whose table is compiled from objects.
    pub async fn with_objects(config: Config, objects: &routing::Objects) -> Relay {
        let tables = Arc::new(Tables::default());
        tables.set(table_of(objects));
        Relay::start(config, tables).await
    }
}

pub fn table_of(objects: &routing::Objects) -> Loaded {
    let compiled = routing::compile(objects, &routing::CompileOptions::default());
    let version = routing::table::encode(compiled.table()).manifest.version;
    Loaded {
        routing: compiled.routing,
        version,
    }
}

pub fn config() -> Config {
    Config {
        hostname: "relay.test".into(),
        downstream: relay::downstream::Settings {
            timeouts: relay::downstream::Timeouts {
                connect: Duration::from_secs(2),
                command: Duration::from_secs(5),
                data_block: Duration::from_secs(5),
                data_end: Duration::from_secs(5),
            },
            ..Default::default()
        },
        ..Config::default()
    }
}

/// A line-level SMTP client.
pub struct Client {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
    pub greeting: String,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Client::connect_after(addr, b"").await
    }

    /// Sends `preamble` (a PROXY header) before reading the greeting.
    pub async fn connect_after(addr: SocketAddr, preamble: &[u8]) -> Client {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(preamble).await.unwrap();
        let (r, w) = s.into_split();
        let mut c = Client {
            r: BufReader::new(r),
            w,
            greeting: String::new(),
        };
        c.greeting = c.reply().await;
        c
    }

    /// The next reply, all lines joined; "" at end of stream.
    pub async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(20), self.r.read_line(&mut line))
                .await
                .expect("reply within 20 s")
                .unwrap_or(0);
            if n == 0 {
                return all;
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    pub async fn send(&mut self, raw: &[u8]) {
        self.w.write_all(raw).await.unwrap();
    }

    /// Sends one command line (CRLF added) and returns the reply.
    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// EHLO, MAIL, the RCPTs; returns the RCPT replies.
    pub async fn envelope(&mut self, from: &str, to: &[&str]) -> Vec<String> {
        assert!(self.cmd("EHLO client.test").await.starts_with("250"));
        self.envelope_again(from, to).await
    }

    /// DATA with a message body (CRLF lines, not yet dot-stuffed); the final reply.
    pub async fn data(&mut self, message: &str) -> String {
        let r = self.cmd("DATA").await;
        if !r.starts_with("354") {
            return r;
        }
        let mut wire = String::new();
        for line in message
            .strip_suffix("\r\n")
            .unwrap_or(message)
            .split("\r\n")
        {
            if line.starts_with('.') {
                wire.push('.');
            }
            wire.push_str(line);
            wire.push_str("\r\n");
        }
        wire.push_str(".\r\n");
        self.send(wire.as_bytes()).await;
        self.reply().await
    }
}

pub fn code(reply: &str) -> &str {
    reply.get(..3).unwrap_or("")
}

/// "451 4.4.1" from a reply.
pub fn codes(reply: &str) -> String {
    reply
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Client {
    /// MAIL and RCPTs in a session that already said EHLO.
    pub async fn envelope_again(&mut self, from: &str, to: &[&str]) -> Vec<String> {
        assert!(
            self.cmd(&format!("MAIL FROM:<{from}>"))
                .await
                .starts_with("250")
        );
        let mut replies = Vec::new();
        for t in to {
            replies.push(self.cmd(&format!("RCPT TO:<{t}>")).await);
        }
        replies
    }
}

/// One authoritative domain, contact ann (ann@example.com → `target`) and a
/// connector for mbx.example.com to `smart_host`.
pub fn one_route(target: &str, smart_host: &str) -> routing::Objects {
    use routing::fixtures::*;
    let mut o = routing::Objects::default();
    o.address_spaces
        .push(authoritative("example", "example.com"));
    o.contacts
        .push(contact("ann", &["ann@example.com"], target));
    o.connectors
        .push(connector("mbx", &[("mbx.example.com", 1)], &[smart_host]));
    o
}

/// A loopback port free a moment ago, for processes that need a fixed one.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain GET of an ops endpoint of a relay process (`/readyz`,
/// `/metrics`) on 127.0.0.1:`port`; None while nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Waits until the relay process with /readyz on `port` is ready.
pub async fn wait_ready(port: u16) {
    let start = std::time::Instant::now();
    while !http_get(port, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        assert!(start.elapsed() < Duration::from_secs(10), "relay not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// ann, bob and cy at three next hops — mbx1.test, partner.test and
/// third.test, behind sinks `a`, `b`, `c` — with an address in each of
/// `domains` (authoritative); the senders' domain client.test at
/// `senders` (where notifications go).
pub fn three_next_hops(
    a: &Sink,
    b: &Sink,
    c: &Sink,
    senders: &str,
    domains: &[&str],
) -> routing::Objects {
    use routing::fixtures::*;
    let mut o = routing::Objects::default();
    for domain in domains {
        o.address_spaces
            .push(authoritative(&domain.replace('.', "-"), domain));
    }
    for (name, domain) in [
        ("ann", "mbx1.test"),
        ("bob", "partner.test"),
        ("cy", "third.test"),
    ] {
        let addresses: Vec<String> = domains.iter().map(|d| format!("{name}@{d}")).collect();
        let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
        o.contacts
            .push(contact(name, &addresses, &format!("{name}@{domain}")));
    }
    for (name, domain, host) in [
        ("mbx1", "mbx1.test", a.smart_host()),
        ("partner", "partner.test", b.smart_host()),
        ("third", "third.test", c.smart_host()),
        ("senders", "client.test", senders.to_owned()),
    ] {
        o.connectors.push(connector(name, &[(domain, 1)], &[&host]));
    }
    o
}

/// Two recording sinks, for routes to two next hops.
pub async fn two_sinks() -> (Sink, Sink) {
    (
        Sink::start(SinkBehaviour::default()).await,
        Sink::start(SinkBehaviour::default()).await,
    )
}
