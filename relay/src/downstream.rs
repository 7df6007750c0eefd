//! The next hop: one SMTP client connection per transaction, driven step by
//! step with mail-send (MAIL, each RCPT with its own reply, DATA) so that
//! every reply can be passed back to our client as it happens.

use crate::reply::{Reply, passed_back, reply};
use mail_send::SmtpClient;
use prometheus_client::metrics::histogram::Histogram;
use routing::crd::TlsMode;
use routing::table::{ConnectorRoute, SmartHost};
use smtp_proto::{EXT_8BIT_MIME, EXT_SIZE, EXT_SMTP_UTF8, EhloResponse};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

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

pub struct NextHop {
    client: SmtpClient<TcpStream>,
    latency: Histogram,
    pub connector: u32,
    /// The smart host we reached, for logs and the Received trail.
    pub host: String,
    ehlo: EhloResponse<String>,
    timeouts: Timeouts,
}

/// What the client asked for in MAIL FROM that the next hop must support.
#[derive(Clone, Debug, Default)]
pub struct MailParams {
    pub size: Option<usize>,
    pub eight_bit: bool,
    pub smtputf8: bool,
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

impl NextHop {
    /// Connects to the connector's smart hosts in order until one greets us
    /// and answers EHLO.
    pub async fn connect(
        index: u32,
        route: &ConnectorRoute,
        hostname: &str,
        timeouts: &Timeouts,
        latency: Histogram,
    ) -> Result<NextHop, Reply> {
        if route.smart_hosts.is_empty() {
            return Err(reply(
                451,
                "4.4.3",
                "Delivery by MX is not available in this relay yet; try again later",
            ));
        }
        if route.tls_mode == TlsMode::Required {
            return Err(reply(
                451,
                "4.7.5",
                "TLS to the next hop is required but not available in this relay yet",
            ));
        }
        if route.auth_secret.is_some() {
            return Err(reply(
                451,
                "4.7.0",
                "AUTH to the next hop is not available in this relay yet",
            ));
        }
        let mut last = String::from("no address");
        for host in &route.smart_hosts {
            for addr in addresses(host).await {
                match NextHop::open(addr, hostname, timeouts).await {
                    Ok((client, ehlo)) => {
                        return Ok(NextHop {
                            client,
                            latency,
                            connector: index,
                            host: host.to_string(),
                            ehlo,
                            timeouts: timeouts.clone(),
                        });
                    }
                    Err(e) => {
                        tracing::warn!(connector = %route.name, host = %host, %addr, error = %e, "next hop failed; trying the next one");
                        last = e;
                    }
                }
            }
        }
        tracing::warn!(connector = %route.name, error = %last, "no smart host of the connector answered");
        Err(reply(
            451,
            "4.4.1",
            "Next hop not reachable; try again later",
        ))
    }

    async fn open(
        addr: SocketAddr,
        hostname: &str,
        t: &Timeouts,
    ) -> Result<(SmtpClient<TcpStream>, EhloResponse<String>), String> {
        let mut client = SmtpClient::connect(addr, t.connect)
            .await
            .map_err(|e| e.to_string())?;
        client.timeout = t.command;
        let greeting = tokio::time::timeout(t.command, client.read())
            .await
            .map_err(|_| "greeting timed out".to_string())?
            .map_err(|e| e.to_string())?;
        if greeting.code != 220 {
            return Err(format!("greeting {} {}", greeting.code, greeting.message));
        }
        let ehlo = client.ehlo(hostname).await.map_err(|e| e.to_string())?;
        Ok((client, ehlo))
    }

    /// MAIL FROM, passing on the parameters the next hop supports; a
    /// parameter it cannot honour is refused here with the proper code.
    pub async fn mail(&mut self, from: &str, params: &MailParams) -> Result<(), Reply> {
        let mut cmd = format!("MAIL FROM:<{from}>");
        if let Some(size) = params
            .size
            .filter(|_| self.ehlo.capabilities & EXT_SIZE != 0)
        {
            if self.ehlo.size > 0 && size > self.ehlo.size {
                return Err(reply(552, "5.3.4", "Message too big for the next hop"));
            }
            cmd.push_str(&format!(" SIZE={size}"));
        }
        if params.eight_bit && self.ehlo.capabilities & EXT_8BIT_MIME != 0 {
            cmd.push_str(" BODY=8BITMIME");
        }
        if params.smtputf8 {
            if self.ehlo.capabilities & EXT_SMTP_UTF8 == 0 {
                return Err(reply(
                    553,
                    "5.6.7",
                    "The next hop does not support SMTPUTF8",
                ));
            }
            cmd.push_str(" SMTPUTF8");
        }
        cmd.push_str("\r\n");
        let r = self.cmd(cmd).await?;
        if r.is_positive_completion() {
            Ok(())
        } else {
            Err(passed_back(&r))
        }
    }

    /// RCPT TO; the next hop's reply, whatever it is.
    pub async fn rcpt(&mut self, to: &str) -> Result<Reply, Reply> {
        let r = self.cmd(format!("RCPT TO:<{to}>\r\n")).await?;
        Ok(passed_back(&r))
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
            self.client.stream.write_all(bytes),
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

    /// The final dot, and the next hop's verdict on the message.
    pub async fn finish(&mut self) -> Result<Reply, Reply> {
        self.client.timeout = self.timeouts.data_end;
        let r = self.cmd(".\r\n").await;
        self.client.timeout = self.timeouts.command;
        r.map(|r| passed_back(&r))
    }

    /// One command and its reply, timed for the latency histogram.
    async fn cmd(&mut self, cmd: impl AsRef<[u8]>) -> Result<Reply, Reply> {
        let start = Instant::now();
        let r = self.client.cmd(cmd).await.map_err(|e| lost(&e));
        self.latency.observe(start.elapsed().as_secs_f64());
        r
    }

    pub async fn quit(mut self) {
        let _ = self.client.cmd("QUIT\r\n").await;
    }
}

async fn addresses(host: &SmartHost) -> Vec<SocketAddr> {
    if let Ok(ip) = host.host.parse() {
        return vec![SocketAddr::new(ip, host.port)];
    }
    // MX lookup of un-bracketed host names comes with DNS support; until
    // then both forms resolve the name's addresses.
    match tokio::net::lookup_host((host.host.as_str(), host.port)).await {
        Ok(addrs) => addrs.collect(),
        Err(e) => {
            tracing::warn!(host = %host, error = %e, "cannot resolve smart host");
            Vec::new()
        }
    }
}
