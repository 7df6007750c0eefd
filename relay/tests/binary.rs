//! The `mailroute-relay` binary as users run it: options from the command
//! line and from MAILROUTE_* variables, readiness, a message end to end.

mod common;

use common::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
        // One thread serves every session (the runtime is built from it).
        .env("MAILROUTE_WORKER_THREADS", "1")
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

fn relay_args(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mailroute-relay"))
        .args(["--hostname", "relay.test", "--listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap()
}

/// A relay that cannot have a table from its --manifests must not start:
/// running on, it would answer 451 to every message.
#[test]
fn unusable_manifests_stop_the_relay_at_start_naming_the_file() {
    let out = relay_args(&["--manifests", "/nonexistent/org.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "mailroute-relay: --manifests: /nonexistent/org.yaml: No such file or directory (os error 2)\n"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: mailroute.io/v1alpha1\nkind: AddressSpace\nmetadata: {name: a}\nspec:\n  domain: a.example\n  typ: Authoritative\n",
    )
    .unwrap();
    let out = relay_args(&["--manifests", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:6: AddressSpace/a: unknown field spec.typ",
            bad.display()
        )),
        "{err}"
    );

    // Several namespaces: the advice names a flag this very binary has.
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let out = relay_args(&["--manifests", examples]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("choose one with --namespace"), "{err}");
    let out = relay_args(&["--manifests", examples, "--namespace", "alias-tabel"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no mailroute.io objects in namespace \"alias-tabel\"")
            && err.contains("alias-table"),
        "{err}"
    );
}

#[tokio::test]
async fn manifests_of_several_namespaces_serve_the_one_named() {
    let (smtp, http) = (free_port(), free_port());
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let child = Command::new(env!("CARGO_BIN_EXE_mailroute-relay"))
        .args([
            "--hostname",
            "relay.test",
            "--listen",
            &format!("127.0.0.1:{smtp}"),
        ])
        .args(["--metrics-listen", &format!("127.0.0.1:{http}")])
        .args(["--manifests", examples, "--namespace", "alias-table"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _running = Running(child);
    wait_ready(http).await;
    let mut c = Client::connect(format!("127.0.0.1:{smtp}").parse().unwrap()).await;
    // carol is unknown in alias-table's authoritative example.com.
    let replies = c.envelope("s@outside.org", &["carol@example.com"]).await;
    assert_eq!(codes(&replies[0]), "550 5.1.1");
}

/// A table directory that is not there yet (a volume mounted late) is
/// waited for, and said so in the log, not in silence.
#[tokio::test]
async fn a_missing_table_directory_is_logged_and_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("table");
    let http = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailroute-relay"))
        .args(["--hostname", "relay.test", "--listen", "127.0.0.1:0"])
        .args(["--metrics-listen", &format!("127.0.0.1:{http}")])
        .args([
            "--table",
            table.to_str().unwrap(),
            "--reload-interval-ms",
            "50",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let logs = child.stdout.take().unwrap();
    let _running = Running(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(logs).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let waiting = format!(
        "waiting for the routing table: {}/manifest.json is not there yet",
        table.display()
    );
    let line = std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(10)).ok())
        .find(|l| l.contains("waiting for the routing table"))
        .expect("a waiting line within 10 s");
    assert!(
        line.contains(&waiting) && line.contains("\"level\":\"WARN\""),
        "{line}"
    );
    assert!(
        http_get(http, "/readyz")
            .unwrap()
            .starts_with("HTTP/1.1 503")
    );
    // Logged once, not at every look (it looks every 50 ms).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rx.try_iter().filter(|l| l.contains("waiting for")).count(),
        0
    );

    let objects = routing::fixtures::small_org_through("relay.example");
    let encoded = routing::table::encode(routing::compile(&objects, &Default::default()).table());
    std::fs::create_dir(&table).unwrap();
    for (key, bytes) in &encoded.files {
        std::fs::write(table.join(key), bytes).unwrap();
    }
    wait_ready(http).await;
}

/// `--configmap` is part of the default build: without a cluster it says
/// what is missing instead of "unexpected argument".
#[test]
fn configmap_mode_is_in_the_default_build() {
    let out = relay_args(&["--configmap", "mailroute-table"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("mailroute-relay: --configmap mailroute-table: no Kubernetes API"),
        "{err}"
    );
}

/// SIGTERM with --shutdown-delay: unready at once, still accepting for the
/// delay, then the listener closes and the process exits.
#[tokio::test]
async fn sigterm_keeps_accepting_for_the_shutdown_delay_then_exits() {
    let (smtp, http) = (free_port(), free_port());
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailroute-relay"))
        .args([
            "--hostname",
            "relay.test",
            "--listen",
            &format!("127.0.0.1:{smtp}"),
        ])
        .args(["--metrics-listen", &format!("127.0.0.1:{http}")])
        .args(["--manifests", examples, "--namespace", "alias-table"])
        .args(["--shutdown-delay", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_ready(http).await;
    // The shell's own kill: a minimal Debian has no kill(1) (procps).
    let term = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status()
        .unwrap();
    assert!(term.success());
    let signalled = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        http_get(http, "/readyz")
            .unwrap()
            .starts_with("HTTP/1.1 503")
    );
    let mut c = Client::connect(format!("127.0.0.1:{smtp}").parse().unwrap()).await;
    assert_eq!(code(&c.cmd("NOOP").await), "250");
    assert!(signalled.elapsed() < Duration::from_secs(2));
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "still running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exited.success(), "{exited:?}");
    assert!(signalled.elapsed() >= Duration::from_secs(2));
    assert!(std::net::TcpStream::connect(("127.0.0.1", smtp)).is_err());
}
