//! Real senders in front of the relay, with recipients behind two or three
//! next hops in one message (docs/relay.md, "One message, several next
//! hops"): Postfix with the relay as its relayhost, Exim speaking PRDR,
//! Python's smtplib, swaks, and JavaMail with its defaults. Each test also
//! runs the relay as it was before fan-out (`--max-next-hops 1`: a second
//! next hop's recipient gets 452 4.5.3) and shows what that did to the
//! sender, so the test can fail. Without a peer a test is ignored with what
//! to install (relay/build.rs).

mod common;

use common::*;
use routing::Objects;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// ann, bob, cy of example.com (also of example.org) at three next hops;
/// the senders' domain client.test at a fourth (notifications).
fn org(a: &Sink, b: &Sink, c: &Sink, n: &Sink) -> Objects {
    three_next_hops(a, b, c, &n.smart_host(), &["example.com", "example.org"])
}

struct Peers {
    a: Sink,
    b: Sink,
    c: Sink,
    n: Sink,
}

impl Peers {
    async fn start(b: SinkBehaviour) -> Peers {
        Peers {
            a: Sink::start(SinkBehaviour::default()).await,
            b: Sink::start(b).await,
            c: Sink::start(SinkBehaviour::default()).await,
            n: Sink::start(SinkBehaviour::default()).await,
        }
    }

    /// The relay as it is, and as it was (one next hop per transaction).
    async fn relays(&self) -> (Relay, Relay) {
        let o = org(&self.a, &self.b, &self.c, &self.n);
        let mut before = config();
        before.max_next_hops = 1;
        (
            Relay::with_objects(config(), &o).await,
            Relay::with_objects(before, &o).await,
        )
    }

    /// Every recipient delivered, by subject: (subject, recipient) pairs.
    fn delivered(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for sink in [&self.a, &self.b, &self.c] {
            for m in sink.messages() {
                let subject = subject(&m.data);
                for r in &m.rcpt_to {
                    out.push((subject.clone(), r.clone()));
                }
            }
        }
        out.sort();
        out
    }
}

fn subject(data: &[u8]) -> String {
    String::from_utf8_lossy(data)
        .lines()
        .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
        .unwrap_or_default()
}

async fn until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

fn free_port_now() -> u16 {
    free_port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_postfix_instance),
    ignore = "needs a private Postfix: apt-get install postfix, and root"
)]
async fn postfix_with_the_relay_as_relayhost_delivers_every_recipient_at_once() {
    use testkit::mta::{Postfix, SMTP_CLIENT};
    let peers = Peers::start(SinkBehaviour::default()).await;
    let (relay, before) = peers.relays().await;
    let dir = tempfile::tempdir().unwrap();
    // Postfix relays example.com through the relay and example.org through
    // the relay as it was, as any Postfix with a relayhost would.
    let postfix = Postfix::configure(
        dir.path(),
        free_port_now(),
        &format!(
            "myhostname = postfix.test\n\
             mynetworks = 127.0.0.0/8\n\
             relay_domains = example.com, example.org\n\
             relayhost = [{}]:{}\n\
             transport_maps = hash:{}/conf/transport\n",
            relay.addr.ip(),
            relay.addr.port(),
            dir.path().display()
        ),
        SMTP_CLIENT,
    );
    postfix.map(
        "transport",
        &[format!(
            "example.org smtp:[127.0.0.1]:{}",
            before.addr.port()
        )],
    );
    postfix.start();

    let messages: [(&str, &[&str]); 4] = [
        ("m1", &["ann@example.com", "bob@example.com"]),
        (
            "m2",
            &["ann@example.com", "bob@example.com", "cy@example.com"],
        ),
        ("m3", &["cy@example.com", "bob@example.com"]),
        (
            "m4",
            &["bob@example.com", "cy@example.com", "ann@example.com"],
        ),
    ];
    let mut c = Client::connect(([127, 0, 0, 1], postfix.port).into()).await;
    assert_eq!(code(&c.cmd("EHLO client.test").await), "250");
    for (subject, to) in messages {
        c.envelope_again("s@client.test", to).await;
        let done = c
            .data(&format!("Subject: {subject}\r\n\r\nThrough Postfix.\r\n"))
            .await;
        assert_eq!(code(&done), "250", "{done}");
    }
    let mut want: Vec<(String, String)> = messages
        .iter()
        .flat_map(|(s, to)| {
            to.iter().map(|t| {
                let (local, _) = t.split_once('@').unwrap();
                let domain = match local {
                    "ann" => "mbx1.test",
                    "bob" => "partner.test",
                    _ => "third.test",
                };
                (s.to_string(), format!("{local}@{domain}"))
            })
        })
        .collect();
    want.sort();
    let took = until("every recipient delivered", Duration::from_secs(20), || {
        peers.delivered() == want
    })
    .await;
    until("Postfix's queue empty", Duration::from_secs(10), || {
        postfix.queued() == 0
    })
    .await;
    let log = postfix.maillog();
    assert_eq!(log.matches("status=sent").count(), want.len(), "{log}");
    assert!(!log.contains("status=deferred"), "{log}");
    eprintln!(
        "Postfix in front: {} recipients of 4 messages delivered in {took:?}",
        want.len()
    );

    // The relay as it was: Postfix defers the second next hop's recipient
    // to its next queue run (minutes away).
    c.envelope_again("s@client.test", &["ann@example.org", "bob@example.org"])
        .await;
    assert_eq!(code(&c.data("Subject: before\r\n\r\nx\r\n").await), "250");
    until("Postfix defers bob", Duration::from_secs(10), || {
        postfix.maillog().contains("to=<bob@example.org>")
    })
    .await;
    let log = postfix.maillog();
    let bob = log
        .lines()
        .find(|l| l.contains("to=<bob@example.org>"))
        .unwrap();
    assert!(
        bob.contains("status=deferred") && bob.contains("452 4.5.3"),
        "{bob}"
    );
}

/// The Exim binary relay/build.rs found.
fn exim_binary() -> &'static Path {
    Path::new(option_env!("MAILROUTE_EXIM_BIN").unwrap_or("exim4"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_exim),
    ignore = "needs a private Exim: relay/tests/peers/fetch-exim.sh (./test.sh runs it), and root"
)]
async fn exim_gets_a_verdict_per_recipient_with_prdr_and_bounces_the_refused_one_itself() {
    {
        let peers = Peers::start(SinkBehaviour {
            data_reply: Some("550 5.7.1 Refused by the partner's policy".into()),
            ..Default::default()
        })
        .await;
        let (relay, _) = peers.relays().await;
        let dir = tempfile::tempdir().unwrap();
        // Exim's defaults but for the routes: example.com through the relay,
        // client.test (its bounces) to a sink. hosts_try_prdr is left at its
        // default, which is every host.
        let exim = testkit::mta::Exim::new(
            exim_binary(),
            dir.path(),
            &format!(
                "qualify_domain = client.test\n\
                 begin routers\n\
                 to_relay:\n  driver = manualroute\n  domains = example.com\n  transport = remote\n  route_list = * 127.0.0.1::{relay} byname\n  self = send\n\
                 bounces:\n  driver = manualroute\n  domains = client.test\n  transport = remote\n  route_list = * 127.0.0.1::{bounces} byname\n  self = send\n\
                 begin transports\n\
                 remote:\n  driver = smtp\n  allow_localhost\n\
                 begin retry\n\
                 * * F,1h,10m\n",
                relay = relay.addr.port(),
                bounces = peers.n.addr.port(),
            ),
        );
        let message = "Subject: via Exim\n\nOne message, two next hops.\n";
        let out = blocking({
            let exim = exim.clone();
            move || {
                exim.send(
                    "s@client.test",
                    &["ann@example.com", "bob@example.com"],
                    message,
                )
            }
        })
        .await;
        assert!(out.status.success(), "{out:?}");
        until("Exim's bounce", Duration::from_secs(20), || {
            !peers.n.messages().is_empty()
        })
        .await;
        let log = exim.mainlog();
        // ann delivered once, over PRDR; bob failed with his next hop's reply.
        let line = |start: &str| log.lines().find(|l| l.contains(start)).unwrap_or_default();
        let ann = line("=> ann@example.com");
        assert!(
            ann.contains(" PRDR C=\"250 2.0.0 <ann@example.com> "),
            "{log}"
        );
        let bob = line("** bob@example.com");
        assert!(
            bob.contains(
                "PRDR error after DATA: 550 5.7.1 <bob@example.com> Refused by the partner's policy"
            ),
            "{log}"
        );
        assert_eq!(peers.a.messages().len(), 1);
        assert!(peers.b.messages().is_empty());
        let bounce = &peers.n.messages()[0];
        assert_eq!(bounce.mail_from, "");
        assert_eq!(bounce.rcpt_to, ["s@client.test"]);
        let text = String::from_utf8_lossy(&bounce.data);
        // Exim's own bounce, naming bob and his next hop's refusal.
        assert!(
            text.contains("X-Failed-Recipients: bob@example.com"),
            "{text}"
        );
        assert!(
            text.contains("Message-Id: <") && text.contains("@exim.test>"),
            "{text}"
        );
        assert!(
            text.contains("bob@example.com") && text.contains("550 5.7.1"),
            "{text}"
        );
        let metrics = relay.shared.metrics.render(&relay.tables);
        assert!(
            metrics
                .contains(r#"mailroute_relay_prdr_transactions_total{result="per_recipient"} 1"#),
            "{metrics}"
        );
        assert!(
            !metrics.contains("mailroute_relay_notifications_total{"),
            "{metrics}"
        );
    }
}

/// Python's smtplib: `sendmail` returns the recipients refused at RCPT.
fn smtplib(port: u16, to: &[&str]) -> String {
    let script = format!(
        "import smtplib\n\
         s = smtplib.SMTP('127.0.0.1', {port})\n\
         print(s.sendmail('s@client.test', {to:?}, 'Subject: smtplib\\r\\n\\r\\nFrom Python.\\r\\n'))\n\
         s.quit()\n"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_smtplib_sends_to_three_next_hops_with_nothing_refused() {
    let peers = Peers::start(SinkBehaviour::default()).await;
    let (relay, before) = peers.relays().await;
    let to = ["ann@example.com", "bob@example.com", "cy@example.com"];
    let port = relay.addr.port();
    assert_eq!(blocking(move || smtplib(port, &to)).await, "{}");
    assert_eq!(peers.delivered().len(), 3);
    // As it was: smtplib reports two refused recipients in a return value
    // most applications never read.
    let port = before.addr.port();
    let refused = blocking(move || smtplib(port, &to)).await;
    assert!(
        refused.contains("'bob@example.com': (452") && refused.contains("'cy@example.com': (452"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_swaks), ignore = "needs swaks: apt-get install swaks")]
async fn swaks_sends_one_message_to_two_next_hops() {
    let peers = Peers::start(SinkBehaviour::default()).await;
    let (relay, _) = peers.relays().await;
    let server = relay.addr.to_string();
    let out = blocking(move || {
        Command::new("swaks")
            .args(["--server", &server, "--from", "s@client.test"])
            .args(["--to", "ann@example.com,bob@example.com"])
            .args(["--header", "Subject: swaks", "--body", "From swaks."])
            .output()
            .unwrap()
    })
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("250 2.0.0 Ok: accepted by 2 next hops"),
        "{text}"
    );
    assert_eq!(
        peers.delivered(),
        [
            ("swaks".to_string(), "ann@mbx1.test".to_string()),
            ("swaks".to_string(), "bob@partner.test".to_string())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_javamail),
    ignore = "needs JavaMail: apt-get install default-jdk-headless libjakarta-mail-java"
)]
async fn javamail_with_its_defaults_sends_to_two_next_hops_in_one_go() {
    let peers = Peers::start(SinkBehaviour::default()).await;
    let (relay, before) = peers.relays().await;
    let classes = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/Send.java");
    let jars = "/usr/share/java/jakarta-mail.jar:/usr/share/java/jakarta-activation.jar";
    // -XX:-UsePerfData: no /tmp/hsperfdata_<user> left behind (the JVM
    // puts it in /tmp whatever TMPDIR says).
    let javac = Command::new("javac")
        .args(["-J-XX:-UsePerfData", "-cp", jars, "-d"])
        .arg(classes.path())
        .arg(&source)
        .output()
        .unwrap();
    assert!(javac.status.success(), "{javac:?}");
    let classpath = format!("{}:{jars}", classes.path().display());
    let send = move |port: u16, subject: &'static str| {
        let classpath = classpath.clone();
        blocking(move || {
            let out = Command::new("java")
                .args(["-XX:-UsePerfData", "-cp", &classpath, "Send", "127.0.0.1"])
                .arg(port.to_string())
                .args(["s@client.test", "ann@example.com,bob@example.com", subject])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    assert_eq!(send(relay.addr.port(), "javamail").await.trim(), "sent");
    assert_eq!(peers.delivered().len(), 2);
    // As it was: JavaMail abandons the whole message for one 452.
    let out = send(before.addr.port(), "javamail before").await;
    assert!(out.contains("not sent"), "{out}");
    // Both recipients unsent, ann too, for bob's 452.
    assert!(out.contains("valid, unsent: ann@example.com"), "{out}");
    assert!(out.contains("valid, unsent: bob@example.com"), "{out}");
    assert!(out.contains("because: 452 4.5.3"), "{out}");
    assert_eq!(peers.delivered().len(), 2, "nothing more delivered");
}
