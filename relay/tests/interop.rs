//! Interop with real MTA tools: Postfix's smtp-source sending through the
//! relay to Postfix's smtp-sink, and swaks as a client (plain and
//! STARTTLS). Without the tools these tests are ignored with the package
//! to install (see build.rs); .ci/run installs them.

mod common;

use common::*;
use routing::fixtures::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Postfix's smtp-sink on a loopback port, dumping each message into `dir`.
struct SmtpSink {
    child: std::process::Child,
    port: u16,
}

impl SmtpSink {
    fn start(dir: &Path) -> SmtpSink {
        let port = free_port();
        let mut cmd = Command::new("smtp-sink");
        if is_root() {
            // smtp-sink refuses to run as root without dropping privileges.
            cmd.args(["-u", "nobody"]);
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
                .unwrap();
        }
        let template = format!("{}/%d.%H%M%S", dir.display());
        let child = cmd
            .args(["-d", &template, &format!("127.0.0.1:{port}"), "64"])
            .stdout(Stdio::null())
            .spawn()
            .expect("smtp-sink runs");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "smtp-sink did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        SmtpSink { child, port }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dumps(dir: &Path, want: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let files: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        if files.len() >= want || Instant::now() > deadline {
            return files
                .iter()
                .map(|f| std::fs::read_to_string(f.path()).unwrap())
                .collect();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// smtp-source's recipients for `-t rcpt@example.com -r 3` are
/// rcpt@, 2rcpt@ and 3rcpt@example.com; each is rewritten to sink.test.
fn smtp_source_routing(sink_port: u16) -> routing::Objects {
    let mut o = routing::Objects::default();
    o.address_spaces
        .push(authoritative("example", "example.com"));
    for local in ["rcpt", "2rcpt", "3rcpt"] {
        o.contacts.push(contact(
            local,
            &[&format!("{local}@example.com")],
            &format!("{local}@sink.test"),
        ));
    }
    let host = format!("[127.0.0.1]:{sink_port}");
    o.connectors
        .push(connector("sink", &[("sink.test", 1)], &[&host]));
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_postfix_tools),
    ignore = "needs smtp-source and smtp-sink from the Debian package postfix"
)]
async fn smtp_source_through_the_relay_to_smtp_sink() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(dir.path());
    let relay = Relay::with_objects(config(), &smtp_source_routing(sink.port)).await;
    let target = relay.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("smtp-source")
            .args([
                "-s",
                "4",
                "-m",
                "20",
                "-r",
                "3",
                "-l",
                "2000",
                "-f",
                "sender@x.test",
                "-t",
                "rcpt@example.com",
                &target,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "smtp-source: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let messages = dumps(dir.path(), 20);
    assert_eq!(messages.len(), 20);
    for m in &messages {
        // smtp-sink offers DSN, so each rewritten recipient carries its
        // original address as ORCPT.
        for local in ["rcpt", "2rcpt", "3rcpt"] {
            let line =
                format!("X-Rcpt-Args: <{local}@sink.test> ORCPT=rfc822;{local}@example.com\n");
            assert!(m.contains(&line), "{line} in {m}");
        }
        assert!(m.contains("X-Mail-Args: <sender@x.test>"), "{m}");
        // smtp-source says HELO, not EHLO.
        assert!(
            m.contains("by relay.test (mailroute-relay) with SMTP id"),
            "{m}"
        );
    }
    assert_eq!(
        relay
            .shared
            .metrics
            .render(&relay.tables)
            .matches("outcome=\"delivered\"} 20")
            .count(),
        1
    );
}

fn swaks(args: &[&str]) -> (i32, String) {
    let out = Command::new("swaks")
        .args(args)
        .output()
        .expect("swaks runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_swaks), ignore = "needs swaks from the Debian package swaks")]
async fn swaks_delivers_and_sees_refusals() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let relay = Relay::with_objects(
        config(),
        &one_route("ann@mbx.example.com", &sink.smart_host()),
    )
    .await;
    let server = relay.addr.to_string();
    let args = [
        "--server",
        &server,
        "--from",
        "s@x.test",
        "--helo",
        "client.test",
        "--header",
        "Subject: swaks interop",
        "--body",
        "Hello from swaks.",
    ];
    let (code, text) = {
        let mut a = args.to_vec();
        a.extend(["--to", "ann@example.com"]);
        let a: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            swaks(&a.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .await
        .unwrap()
    };
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("250 2.0.0 Ok: accepted by the next hop"),
        "{text}"
    );
    let m = sink.messages();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].rcpt_to, vec!["ann@mbx.example.com"]);
    let data = String::from_utf8(m[0].data.clone()).unwrap();
    assert!(
        data.contains("Subject: swaks interop") && data.contains("Hello from swaks."),
        "{data}"
    );

    // An unknown recipient of an authoritative domain: refused at RCPT.
    let (code, text) = {
        let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        a.extend(["--to".into(), "nobody@example.com".into()]);
        tokio::task::spawn_blocking(move || {
            swaks(&a.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .await
        .unwrap()
    };
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("550 5.1.1"), "{text}");
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_swaks), ignore = "needs swaks from the Debian package swaks")]
async fn swaks_over_starttls() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["relay.test".into()]).unwrap();
    std::fs::write(dir.path().join("tls.crt"), ck.cert.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), ck.signing_key.serialize_pem()).unwrap();
    let tls = relay::tls::Tls::new(dir.path().join("tls.crt"), dir.path().join("tls.key")).unwrap();
    let sink = Sink::start(SinkBehaviour::default()).await;
    let tables = std::sync::Arc::new(relay::table::Tables::default());
    tables.set(table_of(&one_route(
        "ann@mbx.example.com",
        &sink.smart_host(),
    )));
    let relay = Relay::start_shared(relay::Shared::with_tls(config(), tables, Some(tls))).await;
    let server = relay.addr.to_string();
    let (code, text) = tokio::task::spawn_blocking(move || {
        swaks(&[
            "--server",
            &server,
            "--tls",
            "--from",
            "s@x.test",
            "--to",
            "ann@example.com",
            "--body",
            "over TLS",
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("TLS started"), "{text}");
    let data = String::from_utf8(sink.messages()[0].data.clone()).unwrap();
    assert!(data.contains("with ESMTPS"), "{data}");
}
