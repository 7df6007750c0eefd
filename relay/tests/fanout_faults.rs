//! Faults under load with two or three next hops per message: the
//! `mailroute-relay` binary between senders that retry as MTAs do (a 4xx
//! or a broken connection: the same message again) and next hops that fail
//! — one refuses every third message for good, one drops the connection in
//! every fourth message's data, one is down at RCPT time — while the relay
//! itself is SIGKILLed in the middle of a message and restarted. Afterwards
//! no acknowledged message may be lost: each recipient the relay accepted
//! is at its next hop, or named in a notification to its sender; every
//! duplicate is one the relay said it risked (its metric) or falls in the
//! kill's window.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const WORKERS: usize = 4;
const MESSAGES: usize = 40;

/// Who is where: ann at a (fine), bob at b (refuses every third message),
/// cy at c (drops every fourth), dee at a next hop that is down.
const RECIPIENTS: [[&str; 3]; 4] = [
    ["ann@example.com", "bob@example.com", "cy@example.com"],
    ["ann@example.com", "bob@example.com", ""],
    ["bob@example.com", "cy@example.com", "dee@example.com"],
    ["cy@example.com", "ann@example.com", ""],
];

fn manifests(a: &Sink, b: &Sink, c: &Sink, n: &Sink, down: &str) -> String {
    let mut y = String::from(
        "apiVersion: mailroute.io/v1alpha1\nkind: AddressSpace\nmetadata: {name: example}\nspec: {domain: example.com, type: Authoritative}\n",
    );
    for (name, domain) in [
        ("ann", "mbx1.test"),
        ("bob", "partner.test"),
        ("cy", "third.test"),
        ("dee", "down.test"),
    ] {
        y += &format!(
            "---\napiVersion: mailroute.io/v1alpha1\nkind: MailContact\nmetadata: {{name: {name}}}\nspec: {{proxyAddresses: [{name}@example.com], targetAddress: {name}@{domain}}}\n"
        );
    }
    for (name, domain, host) in [
        ("mbx1", "mbx1.test", a.smart_host()),
        ("partner", "partner.test", b.smart_host()),
        ("third", "third.test", c.smart_host()),
        ("down", "down.test", down.to_owned()),
        ("senders", "client.test", n.smart_host()),
    ] {
        y += &format!(
            "---\napiVersion: mailroute.io/v1alpha1\nkind: SmtpConnector\nmetadata: {{name: {name}}}\nspec: {{addressSpaces: [{{domain: {domain}}}], smartHosts: [\"{host}\"], tls: {{mode: None}}}}\n"
        );
    }
    y
}

struct Relay {
    child: Child,
    http: u16,
}

impl Relay {
    fn start(smtp: u16, http: u16, manifest: &std::path::Path, log: &std::path::Path) -> Relay {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mailroute-relay"))
            .args(["--listen", &format!("127.0.0.1:{smtp}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{http}")])
            .args([
                "--hostname",
                "relay.test",
                "--relay-networks",
                "127.0.0.0/8",
            ])
            .args(["--manifests", manifest.to_str().unwrap()])
            .args([
                "--connect-timeout",
                "2",
                "--max-connections-per-client",
                "200",
            ])
            .stdout(Stdio::from(log))
            .stderr(Stdio::null())
            .spawn()
            .expect("mailroute-relay starts");
        Relay { child, http }
    }

    /// A counter of its /metrics, 0 when absent.
    fn metric(&self, name: &str) -> f64 {
        let text = http_get(self.http, "/metrics").unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One attempt at a message, as a sending MTA makes it.
#[derive(Debug, PartialEq)]
enum Attempt {
    /// 250 after the data: these recipients were accepted at RCPT.
    Acknowledged(Vec<String>),
    /// A 4xx (at RCPT for every recipient, or after the data) or a broken
    /// connection: the sender keeps the message and tries again.
    Retry(String),
    /// A 5xx after the data: the sender bounces it.
    Refused(String),
}

async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Result<String, String> {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(20), r.read_line(&mut line))
            .await
            .map_err(|_| "timeout".to_string())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        all.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(all);
        }
    }
}

async fn attempt(addr: SocketAddr, subject: &str, to: &[&str]) -> Attempt {
    match attempt_once(addr, subject, to).await {
        Ok(a) => a,
        Err(e) => Attempt::Retry(e),
    }
}

async fn attempt_once(addr: SocketAddr, subject: &str, to: &[&str]) -> Result<Attempt, String> {
    let s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    reply(&mut r).await?;
    let mut cmd = async |line: String| -> Result<String, String> {
        w.write_all(line.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        reply(&mut r).await
    };
    cmd("EHLO sender.test\r\n".into()).await?;
    cmd("MAIL FROM:<s@client.test>\r\n".into()).await?;
    let mut accepted = Vec::new();
    for t in to {
        if cmd(format!("RCPT TO:<{t}>\r\n")).await?.starts_with("250") {
            accepted.push(t.to_string());
        }
    }
    if accepted.is_empty() {
        return Ok(Attempt::Retry("no recipient accepted".into()));
    }
    if !cmd("DATA\r\n".into()).await?.starts_with("354") {
        return Ok(Attempt::Retry("DATA refused".into()));
    }
    let body = "0123456789abcdef0123456789abcdef\r\n".repeat(64);
    let done = cmd(format!("Subject: {subject}\r\n\r\n{body}.\r\n")).await?;
    let _ = cmd("QUIT\r\n".into()).await;
    Ok(match done.as_bytes()[0] {
        b'2' => Attempt::Acknowledged(accepted),
        b'5' => Attempt::Refused(done),
        _ => Attempt::Retry(done),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_message_is_lost_under_faults_and_a_sigkill() {
    let a = Sink::start(SinkBehaviour::default()).await;
    let b = Sink::start(SinkBehaviour {
        refuse_every: Some((3, "554 5.7.1 Refused: every third message".into())),
        ..Default::default()
    })
    .await;
    let c = Sink::start(SinkBehaviour {
        drop_every: Some((4, 200)),
        ..Default::default()
    })
    .await;
    let n = Sink::start(SinkBehaviour::default()).await;
    let down = format!("[127.0.0.1]:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("org.yaml");
    std::fs::write(&manifest, manifests(&a, &b, &c, &n, &down)).unwrap();
    let log = dir.path().join("relay.log");
    let (smtp, http) = (free_port(), free_port());
    let addr: SocketAddr = ([127, 0, 0, 1], smtp).into();
    let relay = Arc::new(Mutex::new(Relay::start(smtp, http, &manifest, &log)));
    wait_ready(http).await;

    // Senders: each message until it is acknowledged or refused, as an MTA
    // retries (quickly here).
    let outcomes = Arc::new(Mutex::new(BTreeMap::<String, (Attempt, usize)>::new()));
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let outcomes = outcomes.clone();
        workers.push(tokio::spawn(async move {
            for m in 0..MESSAGES {
                let subject = format!("f-{w}-{m}");
                let to: Vec<&str> = RECIPIENTS[(w + m) % RECIPIENTS.len()]
                    .iter()
                    .copied()
                    .filter(|t| !t.is_empty())
                    .collect();
                let mut tries = 0;
                let last = loop {
                    tries += 1;
                    match attempt(addr, &subject, &to).await {
                        Attempt::Retry(why) if tries < 60 => {
                            let _ = why;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        other => break other,
                    }
                };
                outcomes.lock().unwrap().insert(subject, (last, tries));
            }
        }));
    }

    // Mid-run: a message whose data is half sent when the relay is killed.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let s = TcpStream::connect(addr).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    reply(&mut r).await.unwrap();
    for line in [
        "EHLO sender.test",
        "MAIL FROM:<s@client.test>",
        "RCPT TO:<ann@example.com>",
        "RCPT TO:<bob@example.com>",
        "DATA",
    ] {
        w.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        reply(&mut r).await.unwrap();
    }
    w.write_all(format!("Subject: killed\r\n\r\n{}", "x\r\n".repeat(10_000)).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let risked_before_kill = relay
        .lock()
        .unwrap()
        .metric("mailroute_relay_duplicate_risk_recipients_total");
    {
        let mut relay = relay.lock().unwrap();
        relay.child.kill().unwrap(); // SIGKILL
        relay.child.wait().unwrap();
    }
    let killed = Instant::now();
    let _ = w.write_all(b"more\r\n.\r\n").await;
    assert!(reply(&mut r).await.is_err(), "no reply from a killed relay");
    // Restarted (as its Deployment would), on the same port.
    *relay.lock().unwrap() = Relay::start(smtp, http, &manifest, &log);
    wait_ready(http).await;
    let back = killed.elapsed();

    for w in workers {
        w.await.unwrap();
    }
    let risked_after = relay
        .lock()
        .unwrap()
        .metric("mailroute_relay_duplicate_risk_recipients_total");
    let notifications_sent = relay
        .lock()
        .unwrap()
        .metric("mailroute_relay_notifications_total{result=\"sent\"}");

    // Where every recipient went: (subject, recipient) → copies; and the
    // notifications, by the subject they return and the recipient they name.
    let mut copies: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (sink, domain) in [(&a, "mbx1.test"), (&b, "partner.test"), (&c, "third.test")] {
        for m in sink.messages() {
            let subject = String::from_utf8_lossy(&m.data)
                .lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
                .unwrap_or_default();
            for r in &m.rcpt_to {
                assert!(r.ends_with(domain), "{r} at {domain}");
                let given = r.replace(domain, "example.com");
                *copies.entry((subject.clone(), given)).or_default() += 1;
            }
        }
    }
    let mut notified: BTreeMap<(String, String), usize> = BTreeMap::new();
    for m in n.messages() {
        assert_eq!(m.mail_from, "", "notifications come from <>");
        let text = String::from_utf8_lossy(&m.data).into_owned();
        let subject = text
            .lines()
            .filter_map(|l| l.strip_prefix("Subject: "))
            .find(|s| s.starts_with("f-") || *s == "killed")
            .unwrap_or_default()
            .to_owned();
        for line in text.lines() {
            if let Some(r) = line.strip_prefix("Original-Recipient: rfc822; ") {
                *notified.entry((subject.clone(), r.to_owned())).or_default() += 1;
            }
        }
    }

    let outcomes = outcomes.lock().unwrap();
    let mut acknowledged = 0;
    let mut lost = Vec::new();
    for (subject, (attempt, _)) in outcomes.iter() {
        let Attempt::Acknowledged(accepted) = attempt else {
            continue;
        };
        acknowledged += 1;
        for r in accepted {
            let key = (subject.clone(), r.clone());
            if !copies.contains_key(&key) && !notified.contains_key(&key) {
                lost.push(format!("{subject} {r}"));
            }
        }
    }
    let duplicates: usize = copies.values().map(|&n| n - 1).sum();
    let retries: usize = outcomes.values().map(|(_, t)| t - 1).sum();
    let refused = outcomes
        .values()
        .filter(|(a, _)| matches!(a, Attempt::Refused(_)))
        .count();
    let figure = format!(
        "{} messages, {acknowledged} acknowledged, {} lost, {refused} refused; {retries} retries; {} notifications at the senders' next hop ({notifications_sent} sent by the restarted relay); {duplicates} duplicate deliveries, {} risked by the relay's count; relay back {back:?} after SIGKILL",
        outcomes.len(),
        lost.len(),
        n.messages().len(),
        risked_before_kill + risked_after
    );
    eprintln!("{figure}");
    assert!(lost.is_empty(), "{figure}\nlost: {lost:?}");
    assert_eq!(acknowledged, WORKERS * MESSAGES, "{figure}");
    assert!(
        !notified.is_empty(),
        "bob's refusals were notified: {figure}"
    );
    // The killed message: never acknowledged, never delivered.
    assert!(!copies.keys().any(|(s, _)| s == "killed"), "{figure}");
    // Every duplicate is one the relay counted, or in the kill's window
    // (a next hop had the final dot when the relay died: one per worker).
    assert!(
        duplicates as f64 <= risked_before_kill + risked_after + WORKERS as f64,
        "{figure}"
    );
    // One log line per transaction, naming each recipient, its next hop and
    // that hop's reply.
    let log = std::fs::read_to_string(&log).unwrap();
    let notified_line = log
        .lines()
        .find(|l| l.contains(r#""outcome":"partial_notified""#))
        .unwrap_or_else(|| panic!("no partial_notified transaction in the log"));
    for part in [
        "<bob@example.com> as <bob@partner.test> via SmtpConnector/partner",
        "SmtpConnector/partner: 554 5.7.1 Refused: every third message",
        "SmtpConnector/mbx1: 250 2.0.0 Ok: queued as SINK1 [queue id SINK1]",
        r#""reply":"250 2.0.0 Ok: accepted for"#,
    ] {
        assert!(notified_line.contains(part), "{part} in {notified_line}");
    }
}
