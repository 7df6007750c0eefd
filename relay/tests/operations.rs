//! Operations: draining on SIGTERM, metrics, readiness.

mod common;

use common::*;
use std::time::Duration;
use testkit::http_get;

#[tokio::test]
async fn draining_finishes_transactions_in_flight_and_sends_the_rest_421() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let relay = Relay::with_objects(
        config(),
        &one_route("ann@mbx.example.com", &sink.smart_host()),
    )
    .await;
    let http = relay.http().await;
    let mut busy = Client::connect(relay.addr).await;
    assert_eq!(
        codes(&busy.envelope("s@outside.org", &["ann@example.com"]).await[0]),
        "250 2.1.5"
    );
    let mut idle = Client::connect(relay.addr).await;
    assert_eq!(code(&idle.cmd("EHLO idle").await), "250");

    relay.shared.drain();
    // The idle session is told at once.
    assert_eq!(codes(&idle.reply().await), "421 4.3.2");
    assert!(http_get(http, "/readyz").await.starts_with("HTTP/1.1 503"));
    // No new connections.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(relay.addr).await.is_err());
    // The transaction in flight completes, then that session is told too.
    assert_eq!(
        code(&busy.data("Subject: last\r\n\r\nlast one\r\n").await),
        "250"
    );
    assert_eq!(codes(&busy.reply().await), "421 4.3.2");
    assert!(relay.shared.sessions_ended(Duration::from_secs(2)).await);
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test]
async fn metrics_count_sessions_recipients_transactions_and_the_table() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let relay = Relay::with_objects(
        config(),
        &one_route("ann@mbx.example.com", &sink.smart_host()),
    )
    .await;
    let http = relay.http().await;
    let mut c = Client::connect(relay.addr).await;
    c.envelope("s@outside.org", &["ann@example.com", "nobody@example.com"])
        .await;
    assert_eq!(code(&c.data("Subject: m\r\n\r\nbody\r\n").await), "250");
    let _ = c.cmd("QUIT").await;
    let m = http_get(http, "/metrics").await;
    assert!(m.starts_with("HTTP/1.1 200"));
    let version = relay.tables.current().unwrap().version.clone();
    for expected in [
        "mailroute_relay_sessions_total 1".to_string(),
        "mailroute_relay_recipients_total{decision=\"forward\",reason=\"Routed\"} 1".into(),
        "mailroute_relay_recipients_total{decision=\"reject\",reason=\"UnknownRecipient\"} 1"
            .into(),
        "mailroute_relay_transactions_total{outcome=\"delivered\"} 1".into(),
        format!("mailroute_relay_table_info{{version=\"{version}\"}} 1"),
        // MAIL+RCPT (pipelined: one round trip), DATA, the final dot.
        "mailroute_relay_downstream_latency_seconds_count 3".into(),
    ] {
        assert!(m.contains(&expected), "{expected} missing from\n{m}");
    }
    assert!(http_get(http, "/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(http_get(http, "/readyz").await.contains(&version));
}

/// Leaving (SIGTERM with --shutdown-delay): unready at once, but still
/// accepting and delivering, so a connection a Service sends before it
/// notices is served, never refused; draining then closes the listener.
#[tokio::test]
async fn a_leaving_relay_is_unready_but_still_accepts_until_it_drains() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let relay = Relay::with_objects(
        config(),
        &one_route("ann@mbx.example.com", &sink.smart_host()),
    )
    .await;
    let http = relay.http().await;
    relay.shared.leave();
    let ready = http_get(http, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(ready.contains("still accepting"), "{ready}");
    let mut late = Client::connect(relay.addr).await;
    assert_eq!(
        codes(&late.envelope("s@outside.org", &["ann@example.com"]).await[0]),
        "250 2.1.5"
    );
    assert_eq!(
        code(&late.data("Subject: late\r\n\r\nlate\r\n").await),
        "250"
    );
    assert_eq!(sink.messages().len(), 1);

    relay.shared.drain();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(relay.addr).await.is_err());
    assert!(http_get(http, "/readyz").await.contains("draining"));
}
