//! The next hop: where a transaction's recipients go, over one SMTP client
//! connection driven step by step with mail-send (MAIL, each RCPT with its
//! own reply, DATA) so that every reply is passed back to our client as it
//! happens. Connections come from [`targets`] (smart hosts or MX), are set
//! up by [`open`] (STARTTLS, AUTH) and kept for reuse in a [`pool`].

mod auth;
mod deliver;
pub mod open;
pub mod pool;
pub mod targets;
pub mod tls;

use crate::reply::{Reply, passed_back, reply};
use open::Connection;
use pool::{Pool, PoolLimits};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use routing::table::ConnectorRoute;
use smtp_proto::{
    EXT_8BIT_MIME, EXT_DSN, EXT_PIPELINING, EXT_SIZE, EXT_SMTP_UTF8, MAIL_RET_FULL, MAIL_RET_HDRS,
    RCPT_NOTIFY_DELAY, RCPT_NOTIFY_FAILURE, RCPT_NOTIFY_NEVER, RCPT_NOTIFY_SUCCESS,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use targets::{Dns, Unroutable};
use tokio::io::AsyncWriteExt;
use tokio_rustls::rustls::pki_types::CertificateDer;

/// Client-side timeouts (RFC 5321 §4.5.3.2 gives the defaults).
#[derive(Clone, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    /// Greeting, EHLO, MAIL, RCPT, DATA initiation.
    pub command: Duration,
    /// Each write of message data.
    pub data_block: Duration,
    /// The reply to the final dot.
    pub data_end: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(30),
            command: Duration::from_secs(300),
            data_block: Duration::from_secs(180),
            data_end: Duration::from_secs(600),
        }
    }
}

/// How the relay talks to next hops (all from the command line).
#[derive(Clone, Debug)]
pub struct Settings {
    pub timeouts: Timeouts,
    pub pool: PoolLimits,
    /// Where AUTH Secrets are mounted, one directory per Secret.
    pub auth_dir: PathBuf,
    /// Trust anchors beyond the system's, for verified TLS.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// DNS servers for MX lookups; empty: /etc/resolv.conf.
    pub dns_servers: Vec<SocketAddr>,
    /// The port of MX hosts (25; other values are for tests).
    pub mx_port: u16,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timeouts: Timeouts::default(),
            pool: PoolLimits::default(),
            auth_dir: PathBuf::from("/etc/mailroute/auth"),
            extra_roots: Vec::new(),
            dns_servers: Vec::new(),
            mx_port: 25,
        }
    }
}

/// Which next hop a recipient needs. A transaction has one: a connector
/// with smart hosts is one next hop; delivery by MX is one per domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HopId {
    pub connector: u32,
    pub mx_domain: Option<Box<str>>,
}

impl HopId {
    pub fn of(connector: u32, route: &ConnectorRoute, recipient: &str) -> HopId {
        let mx_domain = route.smart_hosts.is_empty().then(|| {
            let domain = recipient.rsplit_once('@').map_or("", |(_, d)| d);
            domain.to_ascii_lowercase().into_boxed_str()
        });
        HopId {
            connector,
            mx_domain,
        }
    }
}

/// What the client asked for in MAIL FROM that the next hop must support.
#[derive(Clone, Debug, Default)]
pub struct MailParams {
    pub size: Option<usize>,
    pub eight_bit: bool,
    pub smtputf8: bool,
    /// DSN (RFC 3461): MAIL_RET_FULL or MAIL_RET_HDRS, or 0.
    pub ret: u64,
    pub envid: Option<String>,
}

/// DSN parameters of one RCPT (RFC 3461).
#[derive(Clone, Debug, Default)]
pub struct RcptParams {
    /// The RCPT_NOTIFY_* bits.
    pub notify: u64,
    pub orcpt: Option<String>,
}

/// What a transaction starts with at its next hop.
pub struct Envelope<'a> {
    pub from: &'a str,
    pub params: &'a MailParams,
    /// The first recipient as routed, as the client gave it, and its DSN
    /// parameters.
    pub to: &'a str,
    pub original: &'a str,
    pub dsn: &'a RcptParams,
}

/// How beginning a transaction on a connection went.
enum Begin {
    /// MAIL accepted; the first RCPT's reply.
    Open(Reply),
    /// MAIL refused (or a parameter we cannot pass on); no transaction.
    Refused(Reply),
    /// The connection failed.
    Broken(Reply),
}

/// The relay's side of all next hops.
pub struct Outbound {
    settings: Settings,
    hostname: String,
    pool: Pool,
    tls: tls::ClientTls,
    dns: Dns,
    latency: Histogram,
    opened: Counter,
    reused: Counter,
}

impl Outbound {
    pub fn new(
        settings: Settings,
        hostname: String,
        metrics: &crate::metrics::Metrics,
    ) -> Outbound {
        Outbound {
            pool: Pool::new(settings.pool.clone()),
            tls: tls::ClientTls::new(&settings.extra_roots),
            dns: Dns::new(&settings.dns_servers),
            settings,
            hostname,
            latency: metrics.downstream_latency.clone(),
            opened: metrics.connection("opened"),
            reused: metrics.connection("reused"),
        }
    }

    /// A next hop for `id` with the transaction begun: MAIL FROM and the
    /// first RCPT (pipelined when the next hop offers PIPELINING), on an
    /// idle connection when one is kept and still alive, else on the
    /// route's hosts in order until one works. Ok carries the first RCPT's
    /// reply; Err the reply for our client and the reason for metrics.
    pub async fn start(
        &self,
        id: HopId,
        route: &ConnectorRoute,
        envelope: &Envelope<'_>,
    ) -> Result<(NextHop, Reply), (Reply, &'static str)> {
        let key = pool_key(&id, route);
        if let Some(conn) = self.pool.take(&key) {
            let mut hop = self.hop(conn, id.clone(), key.clone());
            match hop.begin(envelope).await {
                Begin::Open(r) => {
                    self.reused.inc();
                    return Ok((hop, r));
                }
                Begin::Refused(r) => {
                    hop.release(self);
                    return Err((r, "NextHop"));
                }
                // The kept connection went stale (closed or timed out by
                // the next hop): open a new one.
                Begin::Broken(_) => {}
            }
        }
        let targets = self
            .dns
            .targets(route, id.mx_domain.as_deref(), self.settings.mx_port)
            .await
            .map_err(|u| (unroutable(u, route), "NextHopUnreachable"))?;
        let mut last = None;
        for target in &targets {
            match self.open(target, route).await {
                Ok(conn) => {
                    self.opened.inc();
                    let mut hop = self.hop(conn, id, key);
                    return match hop.begin(envelope).await {
                        Begin::Open(r) => Ok((hop, r)),
                        Begin::Refused(r) => {
                            // No transaction was opened: the connection stays good.
                            hop.release(self);
                            Err((r, "NextHop"))
                        }
                        Begin::Broken(r) => Err((r, "NextHopLost")),
                    };
                }
                Err(f) => {
                    tracing::warn!(connector = %route.name, host = %target.name, addr = %target.addr, error = %f.detail, "next hop failed; trying the next one");
                    last = Some(f);
                }
            }
        }
        let f = last.expect("targets() returns at least one target");
        tracing::warn!(connector = %route.name, error = %f.detail, "no host of the connector could take the mail");
        Err((f.reply, "NextHopUnreachable"))
    }

    fn hop(&self, conn: Connection, id: HopId, key: String) -> NextHop {
        NextHop {
            conn,
            id,
            key,
            latency: self.latency.clone(),
            timeouts: self.settings.timeouts.clone(),
        }
    }
}

fn pool_key(id: &HopId, route: &ConnectorRoute) -> String {
    use std::fmt::Write;
    // Everything that shapes a connection: a changed connector never gets
    // a connection set up for its old self. Written in place: this runs
    // for every transaction.
    let mut key = String::with_capacity(96);
    key.push_str(&route.name);
    key.push('|');
    key.push_str(id.mx_domain.as_deref().unwrap_or(""));
    for host in &route.smart_hosts {
        let _ = write!(key, "|{host}");
    }
    let _ = write!(
        key,
        "|{:?}|{}|{}",
        route.tls_mode,
        route.tls_verify,
        route.auth_secret.as_deref().unwrap_or("")
    );
    key
}

fn unroutable(u: Unroutable, route: &ConnectorRoute) -> Reply {
    match u {
        Unroutable::NoSuchDomain => reply(550, "5.1.2", "Recipient domain does not exist"),
        Unroutable::NullMx => reply(
            556,
            "5.1.10",
            "Recipient domain does not accept mail (null MX)",
        ),
        Unroutable::Temporary(e) => {
            tracing::warn!(connector = %route.name, error = %e, "next hop address not found");
            reply(
                451,
                "4.4.3",
                "Next hop address lookup failed; try again later",
            )
        }
    }
}

/// RFC 3461 §4: xtext, for ENVID and ORCPT values.
fn xtext(s: &str, out: &mut String) {
    for b in s.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
}

/// MAIL FROM with the parameters the next hop supports; one it cannot
/// honour is refused here with the proper code.
fn mail_command(
    from: &str,
    p: &MailParams,
    ehlo: &smtp_proto::EhloResponse<String>,
) -> Result<String, Reply> {
    let has = |ext| ehlo.capabilities & ext != 0;
    let mut cmd = format!("MAIL FROM:<{from}>");
    if let Some(size) = p.size.filter(|_| has(EXT_SIZE)) {
        if ehlo.size > 0 && size > ehlo.size {
            return Err(reply(552, "5.3.4", "Message too big for the next hop"));
        }
        cmd.push_str(&format!(" SIZE={size}"));
    }
    if p.eight_bit && has(EXT_8BIT_MIME) {
        cmd.push_str(" BODY=8BITMIME");
    }
    if p.smtputf8 {
        if !has(EXT_SMTP_UTF8) {
            return Err(reply(
                553,
                "5.6.7",
                "The next hop does not support SMTPUTF8",
            ));
        }
        cmd.push_str(" SMTPUTF8");
    }
    // Toward a next hop without DSN, RET and ENVID are dropped (RFC 3461
    // §4.3); what depends on them is refused at RCPT (see `rcpt`).
    if has(EXT_DSN) {
        if p.ret & MAIL_RET_FULL != 0 {
            cmd.push_str(" RET=FULL");
        } else if p.ret & MAIL_RET_HDRS != 0 {
            cmd.push_str(" RET=HDRS");
        }
        if let Some(envid) = &p.envid {
            cmd.push_str(" ENVID=");
            xtext(envid, &mut cmd);
        }
    }
    cmd.push_str("\r\n");
    Ok(cmd)
}

fn lost(e: &mail_send::Error) -> Reply {
    match e {
        mail_send::Error::Timeout => reply(451, "4.4.2", "Next hop timed out; try again later"),
        mail_send::Error::UnexpectedReply(r) => passed_back(r),
        _ => reply(
            451,
            "4.4.2",
            "Connection to the next hop lost; try again later",
        ),
    }
}

pub struct NextHop {
    conn: Connection,
    pub id: HopId,
    key: String,
    latency: Histogram,
    timeouts: Timeouts,
}

impl NextHop {
    /// MAIL and the first RCPT, in one round trip when the next hop
    /// offers PIPELINING (RFC 2920).
    async fn begin(&mut self, e: &Envelope<'_>) -> Begin {
        let mail = match mail_command(e.from, e.params, &self.conn.ehlo) {
            Ok(m) => m,
            Err(r) => return Begin::Refused(r),
        };
        let rcpt = self.rcpt_command(e.to, e.original, e.dsn);
        if let (Ok(rcpt), true) = (&rcpt, self.conn.ehlo.capabilities & EXT_PIPELINING != 0) {
            let start = Instant::now();
            // One write for both: on loopback and in a pod network every
            // send costs the receiver's side too.
            let both = mail + rcpt;
            let client = &mut self.conn.client;
            let replies = tokio::time::timeout(client.timeout, async {
                client.stream.write_all(both.as_bytes()).await?;
                client.stream.flush().await?;
                client.read_many(2).await
            })
            .await
            .unwrap_or(Err(mail_send::Error::Timeout));
            self.latency.observe(start.elapsed().as_secs_f64());
            return match replies.as_deref() {
                Ok([m, r]) if m.is_positive_completion() => Begin::Open(passed_back(r)),
                Ok([m, _]) if m.code != 421 => Begin::Refused(passed_back(m)),
                Ok(_) => Begin::Broken(reply(421, "4.4.2", "Next hop closing; try again later")),
                Err(e) => Begin::Broken(lost(e)),
            };
        }
        match self.cmd(mail).await {
            Ok(m) if m.is_positive_completion() => {}
            Ok(m) if m.code != 421 => return Begin::Refused(passed_back(&m)),
            Ok(m) => return Begin::Broken(passed_back(&m)),
            Err(r) => return Begin::Broken(r),
        }
        match rcpt {
            Err(refusal) => Begin::Open(refusal),
            Ok(rcpt) => match self.cmd(rcpt).await {
                Ok(r) => Begin::Open(passed_back(&r)),
                Err(r) => Begin::Broken(r),
            },
        }
    }

    /// RCPT TO and the next hop's reply, whatever it is. `original` is the
    /// address the client gave, sent as ORCPT when we rewrote it and the
    /// next hop keeps DSN records.
    pub async fn rcpt(
        &mut self,
        to: &str,
        original: &str,
        dsn: &RcptParams,
    ) -> Result<Reply, Reply> {
        match self.rcpt_command(to, original, dsn) {
            Ok(cmd) => self.cmd(cmd).await.map(|r| passed_back(&r)),
            Err(refusal) => Ok(refusal),
        }
    }

    /// The RCPT command, or the refusal of DSN requests this next hop
    /// cannot keep.
    fn rcpt_command(&self, to: &str, original: &str, dsn: &RcptParams) -> Result<String, Reply> {
        let mut cmd = format!("RCPT TO:<{to}>");
        if self.conn.ehlo.capabilities & EXT_DSN != 0 {
            if dsn.notify != 0 {
                let names = [
                    (RCPT_NOTIFY_NEVER, "NEVER"),
                    (RCPT_NOTIFY_SUCCESS, "SUCCESS"),
                    (RCPT_NOTIFY_FAILURE, "FAILURE"),
                    (RCPT_NOTIFY_DELAY, "DELAY"),
                ];
                let set: Vec<&str> = names
                    .iter()
                    .filter(|(f, _)| dsn.notify & f != 0)
                    .map(|(_, n)| *n)
                    .collect();
                cmd.push_str(" NOTIFY=");
                cmd.push_str(&set.join(","));
            }
            let orcpt = dsn
                .orcpt
                .as_deref()
                .or((original != to).then_some(original));
            if let Some(orcpt) = orcpt {
                cmd.push_str(" ORCPT=rfc822;");
                xtext(orcpt, &mut cmd);
            }
        } else if dsn.notify & (RCPT_NOTIFY_SUCCESS | RCPT_NOTIFY_NEVER) != 0 {
            // Without DSN downstream, neither a success notice nor silence
            // on failure can be promised, and we keep no queue to promise
            // it ourselves.
            return Err(reply(
                555,
                "5.5.4",
                "NOTIFY=SUCCESS or NEVER cannot be honoured: the next hop does not support DSN",
            ));
        }
        cmd.push_str("\r\n");
        Ok(cmd)
    }

    /// DATA; Ok once the next hop said 354.
    pub async fn data(&mut self) -> Result<(), Reply> {
        let r = self.cmd("DATA\r\n").await?;
        if r.code == 354 {
            Ok(())
        } else {
            Err(passed_back(&r))
        }
    }

    /// Message data as it goes on the wire (dot-stuffed, CRLF lines).
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), Reply> {
        match tokio::time::timeout(
            self.timeouts.data_block,
            self.conn.client.stream.write_all(bytes),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(reply(
                451,
                "4.4.2",
                "Connection to the next hop lost during DATA; try again later",
            )),
            Err(_) => Err(reply(
                451,
                "4.4.2",
                "Next hop timed out during DATA; try again later",
            )),
        }
    }

    /// Whether the next hop gave up on the message before its end: it
    /// closed the connection, or said something unasked (a 421 or 5xx
    /// before its close) while the data streamed. Looked at without waiting,
    /// just before the final dot, so that a next hop gone on the way is
    /// known before any other is sent its dot (routing::outcome::abandon).
    pub fn gave_up(&self) -> Option<Reply> {
        let said = self.conn.client.stream.peer_gave_up()?;
        tracing::warn!(said = %said, "the next hop gave up during DATA");
        Some(reply(
            451,
            "4.4.2",
            format!("The next hop gave up during DATA ({said}); try again later"),
        ))
    }

    /// The end of the message — `last`: what is left of its data, then the
    /// final dot, in one write — and the next hop's verdict on it.
    pub async fn finish(&mut self, last: &[u8]) -> Result<Reply, Reply> {
        self.write(last).await?;
        let start = Instant::now();
        let r = tokio::time::timeout(self.timeouts.data_end, self.conn.client.read())
            .await
            .unwrap_or(Err(mail_send::Error::Timeout))
            .map_err(|e| lost(&e));
        self.latency.observe(start.elapsed().as_secs_f64());
        r.map(|r| passed_back(&r))
    }

    /// One command and its reply, timed for the latency histogram; Err when
    /// the connection failed.
    async fn cmd(&mut self, cmd: impl AsRef<[u8]>) -> Result<Reply, Reply> {
        let start = Instant::now();
        let r = self.conn.client.cmd(cmd).await.map_err(|e| lost(&e));
        self.latency.observe(start.elapsed().as_secs_f64());
        r
    }

    /// Keep the connection for the next transaction; call only when no
    /// transaction is open at the next hop (after the reply to the final
    /// dot, or a refused MAIL).
    pub fn release(self, outbound: &Outbound) {
        outbound.pool.put(self.key, self.conn);
    }

    /// End an open transaction (RSET) and keep the connection if the next
    /// hop agrees.
    pub async fn reset(mut self, outbound: &Outbound) {
        if let Ok(r) = self.cmd("RSET\r\n").await
            && r.is_positive_completion()
        {
            self.release(outbound);
        }
    }
}
