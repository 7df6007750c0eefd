//! The relay end to end on loopback: real sockets, a real downstream SMTP
//! server, a real client.

mod common;

use common::*;
use routing::Objects;
use routing::fixtures::*;

/// docs/design.md, "Reference scenarios" scenario 1 (alias table) pointed at two sinks.
fn alias_table(mbx1: &Sink, mbx2: &Sink) -> Objects {
    let mut o = Objects::default();
    o.address_spaces
        .push(authoritative("example", "example.com"));
    o.contacts
        .push(contact("ann", &["ann@example.com"], "ann@mbx1.example.com"));
    o.contacts
        .push(contact("bob", &["bob@example.com"], "bob@mbx2.example.com"));
    o.contacts
        .push(contact("ada", &["ada@example.com"], "ada@mbx1.example.com"));
    o.connectors.push(connector(
        "mbx1",
        &[("mbx1.example.com", 1)],
        &[&mbx1.smart_host()],
    ));
    o.connectors.push(connector(
        "mbx2",
        &[("mbx2.example.com", 1)],
        &[&mbx2.smart_host()],
    ));
    o
}

const MESSAGE: &str = "From: sender@outside.org\r\nTo: ann@example.com\r\nSubject: hello\r\n\r\nHi Ann.\r\n.leading dot\r\n";

#[tokio::test]
async fn routes_each_recipient_to_its_next_hop_and_rewrites_it() {
    let (mbx1, mbx2) = two_sinks().await;
    let relay = Relay::with_objects(config(), &alias_table(&mbx1, &mbx2)).await;
    let mut c = Client::connect(relay.addr).await;
    assert!(
        c.greeting.starts_with("220 relay.test ESMTP"),
        "{}",
        c.greeting
    );
    let rcpts = c
        .envelope(
            "sender@outside.org",
            &["ann@example.com", "ADA@example.com"],
        )
        .await;
    assert_eq!(
        rcpts.iter().map(|r| codes(r)).collect::<Vec<_>>(),
        ["250 2.1.5", "250 2.1.5"]
    );
    let done = c.data(MESSAGE).await;
    assert!(
        done.starts_with("250 2.0.0 Ok: accepted by the next hop (Ok: queued as SINK1)"),
        "{done}"
    );
    let got = mbx1.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].mail_from, "sender@outside.org");
    assert_eq!(
        got[0].rcpt_to,
        ["ann@mbx1.example.com", "ada@mbx1.example.com"]
    );
    let data = String::from_utf8(got[0].data.clone()).unwrap();
    assert!(data.starts_with("Received: from client.test ([127.0.0.1])\r\n\tby relay.test (mailroute-relay) with ESMTP id "), "{data}");
    // The body arrives as sent, dot-stuffing included.
    assert!(data.ends_with("\r\nFrom: sender@outside.org\r\nTo: ann@example.com\r\nSubject: hello\r\n\r\nHi Ann.\r\n..leading dot\r\n"), "{data}");
    assert!(mbx2.messages().is_empty());
    assert_eq!(code(&c.cmd("QUIT").await), "221");
}

#[tokio::test]
async fn routing_refusals_come_from_the_table() {
    let (mbx1, mbx2) = two_sinks().await;
    let relay = Relay::with_objects(config(), &alias_table(&mbx1, &mbx2)).await;
    let mut c = Client::connect(relay.addr).await;
    let rcpts = c
        .envelope(
            "s@outside.org",
            &["nobody@example.com", "x@other.org", "not an address"],
        )
        .await;
    assert_eq!(codes(&rcpts[0]), "550 5.1.1");
    // The test client comes from 127.0.0.1, inside the default relay networks:
    // relaying is allowed but no connector covers other.org.
    assert_eq!(codes(&rcpts[1]), "451 4.4.0");
    assert_eq!(code(&rcpts[2]), "501");
    assert_eq!(codes(&c.cmd("DATA").await), "554 5.5.1");
    // From outside the relay networks the relay is not open.
    let mut closed = config();
    closed.relay_networks = relay::networks::parse_list("10.0.0.0/8").unwrap();
    let relay = Relay::with_objects(closed, &alias_table(&mbx1, &mbx2)).await;
    let mut c = Client::connect(relay.addr).await;
    let rcpts = c
        .envelope("s@outside.org", &["x@mbx1.example.com", "ann@example.com"])
        .await;
    assert_eq!(codes(&rcpts[0]), "554 5.7.1");
    assert_eq!(codes(&rcpts[1]), "250 2.1.5");
}

#[tokio::test]
async fn next_hop_refusals_are_passed_back() {
    let mbx1 = Sink::start(SinkBehaviour {
        refuse: vec!["ada@mbx1.example.com".into()],
        ..Default::default()
    })
    .await;
    let mbx2 = Sink::start(SinkBehaviour::default()).await;
    let relay = Relay::with_objects(config(), &alias_table(&mbx1, &mbx2)).await;
    let mut c = Client::connect(relay.addr).await;
    let rcpts = c
        .envelope("s@outside.org", &["ada@example.com", "ann@example.com"])
        .await;
    assert!(
        rcpts[0].starts_with("550 5.1.1 <sink> Recipient address rejected"),
        "{}",
        rcpts[0]
    );
    assert_eq!(codes(&rcpts[1]), "250 2.1.5");
    assert_eq!(code(&c.data(MESSAGE).await), "250");
    assert_eq!(mbx1.messages()[0].rcpt_to, ["ann@mbx1.example.com"]);
}

#[tokio::test]
async fn next_hop_down_is_a_temporary_failure() {
    let mbx2 = Sink::start(SinkBehaviour::default()).await;
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let mut o = alias_table(&mbx2, &mbx2);
    o.connectors[0] = connector(
        "mbx1",
        &[("mbx1.example.com", 1)],
        &[&format!("[127.0.0.1]:{}", dead_addr.port())],
    );
    let relay = Relay::with_objects(config(), &o).await;
    let mut c = Client::connect(relay.addr).await;
    let rcpts = c.envelope("s@outside.org", &["ann@example.com"]).await;
    assert_eq!(codes(&rcpts[0]), "451 4.4.1");
}

#[tokio::test]
async fn smart_hosts_fail_over_in_order() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_host = format!("[127.0.0.1]:{}", dead.local_addr().unwrap().port());
    drop(dead);
    let mut o = alias_table(&sink, &sink);
    o.connectors[0] = connector(
        "mbx1",
        &[("mbx1.example.com", 1)],
        &[&dead_host, &sink.smart_host()],
    );
    let relay = Relay::with_objects(config(), &o).await;
    let mut c = Client::connect(relay.addr).await;
    assert_eq!(
        codes(&c.envelope("s@outside.org", &["ann@example.com"]).await[0]),
        "250 2.1.5"
    );
    assert_eq!(code(&c.data(MESSAGE).await), "250");
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test]
async fn never_250_unless_the_next_hop_said_250() {
    // The next hop drops the connection in the middle of the message.
    let dropping = Sink::start(SinkBehaviour {
        drop_in_data_after: Some(100),
        ..Default::default()
    })
    .await;
    let relay = Relay::with_objects(config(), &alias_table(&dropping, &dropping)).await;
    let mut c = Client::connect(relay.addr).await;
    c.envelope("s@outside.org", &["ann@example.com"]).await;
    let big = format!(
        "Subject: big\r\n\r\n{}",
        "0123456789abcdef\r\n".repeat(10_000)
    );
    let r = c.data(&big).await;
    assert_eq!(codes(&r), "451 4.4.2", "{r}");
    assert!(dropping.messages().is_empty());

    // The next hop refuses the message after the data.
    let refusing = Sink::start(SinkBehaviour {
        data_reply: Some("554 5.7.1 Spam".into()),
        ..Default::default()
    })
    .await;
    let relay = Relay::with_objects(config(), &alias_table(&refusing, &refusing)).await;
    let mut c = Client::connect(relay.addr).await;
    c.envelope("s@outside.org", &["ann@example.com"]).await;
    assert!(c.data(MESSAGE).await.starts_with("554 5.7.1 Spam"));
    // The session goes on.
    assert_eq!(code(&c.cmd("NOOP").await), "250");
}

#[tokio::test]
async fn too_many_hops_is_refused_and_nothing_is_forwarded() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let mut cfg = config();
    cfg.hop_limit = 3;
    let relay = Relay::with_objects(cfg, &alias_table(&sink, &sink)).await;
    let mut c = Client::connect(relay.addr).await;
    c.envelope("s@outside.org", &["ann@example.com"]).await;
    let three =
        "Received: from a\r\nReceived: from b\r\nreceived: from c\r\nSubject: x\r\n\r\nbody\r\n";
    assert_eq!(code(&c.data(three).await), "250");
    c.envelope_again("s@outside.org", &["ann@example.com"])
        .await;
    let four = format!("Received: from z\r\n{three}");
    assert_eq!(codes(&c.data(&four).await), "554 5.4.6");
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test]
async fn bare_line_feeds_are_refused_and_never_forwarded() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let relay = Relay::with_objects(config(), &alias_table(&sink, &sink)).await;
    let mut c = Client::connect(relay.addr).await;
    c.envelope("s@outside.org", &["ann@example.com"]).await;
    assert_eq!(code(&c.cmd("DATA").await), "354");
    // The smuggling attempt: "\n.\r\n" must not end the data, and a second
    // message hidden behind it must not be sent anywhere.
    c.send(b"Subject: a\r\n\r\nfirst\n.\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<ann@example.com>\r\nDATA\r\nsmuggled\r\n.\r\n").await;
    let r = c.reply().await;
    assert_eq!(codes(&r), "554 5.5.2", "{r}");
    assert_eq!(code(&c.cmd("NOOP").await), "250");
    assert!(sink.messages().is_empty());
    assert!(
        !sink
            .commands
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("evil"))
    );

    // In a command line, a bare LF ends the session.
    let mut c = Client::connect(relay.addr).await;
    c.send(b"EHLO x\nNOOP\r\n").await;
    assert_eq!(codes(&c.reply().await), "521 5.5.2");
    assert_eq!(c.reply().await, "");
}

#[tokio::test]
async fn protocol_basics() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let relay = Relay::with_objects(config(), &alias_table(&sink, &sink)).await;
    let mut c = Client::connect(relay.addr).await;
    assert_eq!(codes(&c.cmd("MAIL FROM:<a@b.c>").await), "503 5.5.1");
    let ehlo = c.cmd("EHLO client.test").await;
    for ext in [
        "PIPELINING",
        "SIZE 26214400",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(ehlo.contains(ext), "{ext} missing from {ehlo}");
    }
    assert_eq!(codes(&c.cmd("VRFY ann").await), "252 2.5.0");
    assert_eq!(code(&c.cmd("HELP").await), "214");
    assert_eq!(
        codes(&c.cmd("RCPT TO:<ann@example.com>").await),
        "503 5.5.1"
    );
    assert_eq!(
        codes(&c.cmd("MAIL FROM:<a@b.c> SIZE=999999999").await),
        "552 5.3.4"
    );
    assert_eq!(code(&c.cmd("MAIL FROM:<a@b.c>").await), "250");
    assert_eq!(codes(&c.cmd("MAIL FROM:<a@b.c>").await), "503 5.5.1");
    assert_eq!(code(&c.cmd("RSET").await), "250");
    assert_eq!(code(&c.cmd("FOO bar").await), "500");
    // Pipelined: all replies come back, in order.
    c.send(b"MAIL FROM:<a@b.c>\r\nRCPT TO:<ann@example.com>\r\nRCPT TO:<nobody@example.com>\r\nNOOP\r\n").await;
    let replies = [
        c.reply().await,
        c.reply().await,
        c.reply().await,
        c.reply().await,
    ];
    assert_eq!(
        replies.iter().map(|r| codes(r)).collect::<Vec<_>>(),
        ["250 2.1.0", "250 2.1.5", "550 5.1.1", "250 2.0.0"]
    );
}

#[tokio::test]
async fn a_relay_without_a_table_defers() {
    let relay = Relay::start(
        config(),
        std::sync::Arc::new(relay::table::Tables::default()),
    )
    .await;
    let mut c = Client::connect(relay.addr).await;
    assert_eq!(code(&c.cmd("EHLO x").await), "250");
    assert_eq!(codes(&c.cmd("MAIL FROM:<a@b.c>").await), "451 4.3.0");
}
