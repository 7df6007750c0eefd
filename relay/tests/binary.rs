//! The `mailroute-relay` binary as users run it: options from the command
//! line and from MAILROUTE_* variables, readiness, a message end to end.

mod common;

use common::*;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[tokio::test]
async fn the_binary_serves_smtp_and_health_from_manifests() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("org.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: mailroute.io/v1alpha1\nkind: AddressSpace\nmetadata: {{name: example}}\nspec: {{domain: example.com, type: Authoritative}}\n---\n\
             apiVersion: mailroute.io/v1alpha1\nkind: MailContact\nmetadata: {{name: ann}}\nspec: {{proxyAddresses: [ann@example.com], targetAddress: ann@mbx.example.com}}\n---\n\
             apiVersion: mailroute.io/v1alpha1\nkind: SmtpConnector\nmetadata: {{name: mbx}}\nspec: {{addressSpaces: [{{domain: mbx.example.com}}], smartHosts: [\"{}\"]}}\n",
            sink.smart_host()
        ),
    )
    .unwrap();
    let (smtp, http) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_mailroute-relay"))
        .args([
            "--listen",
            &format!("127.0.0.1:{smtp}"),
            "--hostname",
            "relay.test",
        ])
        .args(["--manifests", manifest.to_str().unwrap()])
        .env("MAILROUTE_METRICS_LISTEN", format!("127.0.0.1:{http}"))
        .env("MAILROUTE_RELAY_NETWORKS", "127.0.0.0/8")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mailroute-relay starts");
    let _running = Running(child);

    let start = Instant::now();
    loop {
        if http_get(http, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "relay not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        http_get(http, "/healthz")
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );

    let mut c = Client::connect(format!("127.0.0.1:{smtp}").parse().unwrap()).await;
    assert_eq!(
        codes(&c.envelope("s@outside.org", &["ann@example.com"]).await[0]),
        "250 2.1.5"
    );
    assert_eq!(code(&c.data("Subject: hi\r\n\r\nhello\r\n").await), "250");
    assert_eq!(sink.messages()[0].rcpt_to, ["ann@mbx.example.com"]);
}

#[test]
fn bad_options_are_refused_with_a_clear_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_mailroute-relay"))
        .args([
            "--hostname",
            "x",
            "--table",
            "/nonexistent",
            "--relay-networks",
            "10.0.0.0/99",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--relay-networks") && err.contains("prefix must be 0 to 32"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_mailroute-relay"))
        .args(["--hostname", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--table"));
}
