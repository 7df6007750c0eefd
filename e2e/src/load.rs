//! Continuous mail through the relay while the cluster changes under it:
//! workers each send one message per connection, every message with its
//! own subject, and record what happened to it. Afterwards every message
//! the relay acknowledged (250 after the data) must be at a sink: nothing
//! acknowledged may be lost.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// What became of one message.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// 250 after the data: the relay took responsibility.
    Acknowledged,
    /// The connection could not be made (refused, unreachable).
    ConnectFailed(String),
    /// The connection broke (reset, closed) before the final reply.
    Broken(String),
    /// A 4xx or 5xx reply: the sender keeps the message and retries.
    Refused(String),
    /// No reply in time.
    TimedOut,
}

/// Everything one run sent, by subject.
#[derive(Default, Debug)]
pub struct Report {
    pub outcomes: BTreeMap<String, Outcome>,
    pub elapsed: Duration,
}

impl Report {
    pub fn acknowledged(&self) -> Vec<&str> {
        self.outcomes
            .iter()
            .filter(|(_, o)| **o == Outcome::Acknowledged)
            .map(|(s, _)| s.as_str())
            .collect()
    }

    /// Outcomes other than Acknowledged, counted by kind (the first
    /// example of each kept for the message).
    pub fn failures(&self) -> BTreeMap<&'static str, (usize, String)> {
        let mut out: BTreeMap<&'static str, (usize, String)> = BTreeMap::new();
        for o in self.outcomes.values() {
            let (kind, example) = match o {
                Outcome::Acknowledged => continue,
                Outcome::ConnectFailed(e) => ("connection failed", e.clone()),
                Outcome::Broken(e) => ("connection broken", e.clone()),
                Outcome::Refused(r) => ("refused (4xx/5xx)", r.clone()),
                Outcome::TimedOut => ("timed out", String::new()),
            };
            let entry = out.entry(kind).or_insert((0, example));
            entry.0 += 1;
        }
        out
    }

    /// Every failure, in the order sent (for a test's message).
    pub fn failure_list(&self) -> Vec<String> {
        self.outcomes
            .iter()
            .filter(|(_, o)| **o != Outcome::Acknowledged)
            .map(|(s, o)| format!("{s}: {o:?}"))
            .collect()
    }

    pub fn summary(&self) -> String {
        format!(
            "{} sent in {:.1} s, {} acknowledged, failures: {:?}",
            self.outcomes.len(),
            self.elapsed.as_secs_f64(),
            self.acknowledged().len(),
            self.failures()
        )
    }
}

/// A running load; `stop` ends it and gives the report.
pub struct Load {
    running: Arc<AtomicBool>,
    report: Arc<Mutex<Report>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    started: Instant,
}

impl Load {
    /// `workers` concurrent senders to `relay`, each message to one of
    /// `recipients` in turn (an entry `a@x,b@y` is one message to both),
    /// subjects `<run>-<worker>-<n>`.
    pub fn start(relay: SocketAddr, workers: usize, recipients: Vec<String>, run: &str) -> Load {
        let running = Arc::new(AtomicBool::new(true));
        let report = Arc::new(Mutex::new(Report::default()));
        let started = Instant::now();
        let recipients = Arc::new(recipients);
        let handles = (0..workers)
            .map(|w| {
                let (running, report, recipients) =
                    (running.clone(), report.clone(), recipients.clone());
                let run = run.to_owned();
                tokio::spawn(async move {
                    let mut n = 0usize;
                    while running.load(Ordering::Relaxed) {
                        let subject = format!("{run}-{w}-{n}");
                        let rcpt = &recipients[(w + n) % recipients.len()];
                        let sent_at = started.elapsed();
                        let outcome = match send_one(relay, rcpt, &subject).await {
                            // When, for the failures: lined up with what the cluster did.
                            Outcome::ConnectFailed(e) => Outcome::ConnectFailed(format!(
                                "{e} at +{:.1} s",
                                sent_at.as_secs_f64()
                            )),
                            Outcome::Broken(e) => {
                                Outcome::Broken(format!("{e} at +{:.1} s", sent_at.as_secs_f64()))
                            }
                            other => other,
                        };
                        let pause = !matches!(outcome, Outcome::Acknowledged);
                        report.lock().await.outcomes.insert(subject, outcome);
                        n += 1;
                        if pause {
                            // As a real sender would, do not hammer a failing relay.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                })
            })
            .collect();
        Load {
            running,
            report,
            workers: handles,
            started,
        }
    }

    /// Messages sent so far.
    pub async fn sent(&self) -> usize {
        self.report.lock().await.outcomes.len()
    }

    pub async fn stop(self) -> Report {
        self.running.store(false, Ordering::Relaxed);
        for w in self.workers {
            let _ = w.await;
        }
        let mut report = std::mem::take(&mut *self.report.lock().await);
        report.elapsed = self.started.elapsed();
        report
    }
}

const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

async fn send_one(relay: SocketAddr, rcpt: &str, subject: &str) -> Outcome {
    let stream = match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(relay)).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Outcome::ConnectFailed(e.to_string()),
        Err(_) => return Outcome::ConnectFailed("connect timed out".into()),
    };
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut steps: Vec<(String, &str)> = vec![
        (String::new(), "220"),
        ("EHLO load.e2e.test\r\n".into(), "250"),
        ("MAIL FROM:<load@e2e.test>\r\n".into(), "250"),
    ];
    for to in rcpt.split(',') {
        steps.push((format!("RCPT TO:<{to}>\r\n"), "250"));
    }
    steps.push(("DATA\r\n".into(), "354"));
    for (command, expect) in &steps {
        if let Some(outcome) = exchange(&mut r, &mut w, command, expect).await {
            return outcome;
        }
    }
    let body = format!("Subject: {subject}\r\nFrom: <load@e2e.test>\r\n\r\nload\r\n.\r\n");
    if let Some(outcome) = exchange(&mut r, &mut w, &body, "250").await {
        return outcome;
    }
    let _ = w.write_all(b"QUIT\r\n").await;
    Outcome::Acknowledged
}

/// Sends `command` (if any) and reads the reply: None when it starts with
/// `expect`, else what went wrong.
async fn exchange(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    command: &str,
    expect: &str,
) -> Option<Outcome> {
    if !command.is_empty()
        && let Err(e) = w.write_all(command.as_bytes()).await
    {
        return Some(Outcome::Broken(e.to_string()));
    }
    let reply = async {
        loop {
            let mut line = String::new();
            match r.read_line(&mut line).await {
                Ok(0) => return Err("closed by the relay".to_owned()),
                Ok(_) if line.as_bytes().get(3) == Some(&b'-') => continue,
                Ok(_) => return Ok(line.trim_end().to_owned()),
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    match tokio::time::timeout(REPLY_TIMEOUT, reply).await {
        Err(_) => Some(Outcome::TimedOut),
        Ok(Err(e)) => Some(Outcome::Broken(e)),
        Ok(Ok(line)) if line.starts_with(expect) => None,
        Ok(Ok(line)) => Some(Outcome::Refused(line)),
    }
}
