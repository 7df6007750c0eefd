//! One message, several next hops (docs/relay.md, "One message, several
//! next hops"): recipients of one transaction routed to different next hops
//! are each checked with their own, the message is streamed to all of them,
//! and the answer after the data follows the outcome policy — 250 only when
//! every recipient is accounted for, a notification for permanent refusals
//! when others accepted, a reply per recipient with PRDR.

mod common;

use common::*;
use routing::Objects;
use routing::fixtures::*;

/// ann → next hop a, bob → b, cy → c; the senders' domain client.test
/// (where notifications go) → `n`.
fn org(a: &Sink, b: &Sink, c: &Sink, n: &str) -> Objects {
    three_next_hops(a, b, c, n, &["example.com"])
}

const MESSAGE: &str =
    "From: s@client.test\r\nSubject: fan-out\r\n\r\nOne message, several next hops.\r\n";

struct Setup {
    a: Sink,
    b: Sink,
    c: Sink,
    n: Sink,
    relay: Relay,
}

async fn setup(b: SinkBehaviour) -> Setup {
    let a = Sink::start(SinkBehaviour::default()).await;
    let b = Sink::start(b).await;
    let c = Sink::start(SinkBehaviour::default()).await;
    let n = Sink::start(SinkBehaviour::default()).await;
    let relay = Relay::with_objects(config(), &org(&a, &b, &c, &n.smart_host())).await;
    Setup { a, b, c, n, relay }
}

fn metric(relay: &Relay, line: &str) -> bool {
    relay
        .shared
        .metrics
        .render(&relay.tables)
        .lines()
        .any(|l| l == line)
}

#[tokio::test]
async fn one_message_reaches_every_next_hop_in_one_transaction() {
    let s = setup(SinkBehaviour::default()).await;
    let mut c = Client::connect(s.relay.addr).await;
    let rcpts = c
        .envelope(
            "s@client.test",
            &["ann@example.com", "bob@example.com", "cy@example.com"],
        )
        .await;
    assert_eq!(
        rcpts.iter().map(|r| codes(r)).collect::<Vec<_>>(),
        ["250 2.1.5"; 3]
    );
    let done = c.data(MESSAGE).await;
    assert_eq!(
        done,
        "250 2.0.0 Ok: accepted by 3 next hops (SmtpConnector/mbx1: Ok: queued as SINK1; SmtpConnector/partner: Ok: queued as SINK1; SmtpConnector/third: Ok: queued as SINK1)\r\n"
    );
    let (a, b, third) = (s.a.messages(), s.b.messages(), s.c.messages());
    assert_eq!(a.len() + b.len() + third.len(), 3, "one copy each");
    assert_eq!(a[0].rcpt_to, ["ann@mbx1.test"]);
    assert_eq!(b[0].rcpt_to, ["bob@partner.test"]);
    assert_eq!(third[0].rcpt_to, ["cy@third.test"]);
    // The same bytes to each: one Received header, the body as sent.
    assert_eq!(a[0].data, b[0].data);
    assert_eq!(a[0].data, third[0].data);
    assert!(s.n.messages().is_empty(), "no notification");
    assert!(metric(
        &s.relay,
        r#"mailroute_relay_transactions_total{outcome="delivered"} 1"#
    ));
    assert!(metric(
        &s.relay,
        "mailroute_relay_transaction_next_hops_sum 3.0"
    ));
}

#[tokio::test]
async fn dsn_parameters_go_to_each_next_hop_for_its_own_recipients() {
    let a = Sink::start(SinkBehaviour {
        dsn: true,
        ..Default::default()
    })
    .await;
    let b = Sink::start(SinkBehaviour {
        dsn: true,
        ..Default::default()
    })
    .await;
    let relay = Relay::with_objects(config(), &org(&a, &b, &b, "[127.0.0.1]:1")).await;
    let mut c = Client::connect(relay.addr).await;
    assert_eq!(code(&c.cmd("EHLO client.test").await), "250");
    assert_eq!(
        code(
            &c.cmd("MAIL FROM:<s@client.test> RET=HDRS ENVID=QQ314159")
                .await
        ),
        "250"
    );
    assert_eq!(
        code(
            &c.cmd("RCPT TO:<ann@example.com> NOTIFY=SUCCESS,FAILURE")
                .await
        ),
        "250"
    );
    assert_eq!(
        code(
            &c.cmd("RCPT TO:<bob@example.com> NOTIFY=NEVER ORCPT=rfc822;bob+2Bx@example.com")
                .await
        ),
        "250"
    );
    assert_eq!(code(&c.data(MESSAGE).await), "250");
    assert_eq!(
        a.messages()[0].envelope_lines,
        [
            "MAIL FROM:<s@client.test> RET=HDRS ENVID=QQ314159",
            "RCPT TO:<ann@mbx1.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;ann@example.com",
        ]
    );
    assert_eq!(
        b.messages()[0].envelope_lines,
        [
            "MAIL FROM:<s@client.test> RET=HDRS ENVID=QQ314159",
            "RCPT TO:<bob@partner.test> NOTIFY=NEVER ORCPT=rfc822;bob+2Bx@example.com",
        ]
    );
}

#[tokio::test]
async fn past_the_next_hop_limit_a_recipient_is_deferred_to_a_new_transaction() {
    let (a, b) = two_sinks().await;
    let mut cfg = config();
    cfg.max_next_hops = 2;
    let relay = Relay::with_objects(cfg, &org(&a, &b, &b, "[127.0.0.1]:1")).await;
    let mut c = Client::connect(relay.addr).await;
    let rcpts = c
        .envelope(
            "s@client.test",
            &[
                "ann@example.com",
                "bob@example.com",
                "cy@example.com",
                "ann@example.com",
            ],
        )
        .await;
    assert_eq!(codes(&rcpts[0]), "250 2.1.5");
    assert_eq!(codes(&rcpts[1]), "250 2.1.5");
    assert_eq!(
        rcpts[2],
        "452 4.5.3 Too many next hops for one transaction (at most 2); try this recipient in a new one\r\n"
    );
    // A next hop already in use takes more recipients.
    assert_eq!(codes(&rcpts[3]), "250 2.1.5");
    assert_eq!(code(&c.data(MESSAGE).await), "250");
    assert_eq!(a.messages()[0].rcpt_to, ["ann@mbx1.test", "ann@mbx1.test"]);
}

#[tokio::test]
async fn a_permanent_refusal_beside_an_acceptance_is_notified_then_acknowledged() {
    let s = setup(SinkBehaviour {
        data_reply: Some("554 5.7.1 Content refused by policy".into()),
        ..Default::default()
    })
    .await;
    let mut c = Client::connect(s.relay.addr).await;
    c.envelope("s@client.test", &["ann@example.com", "bob@example.com"])
        .await;
    let done = c.data(MESSAGE).await;
    assert_eq!(
        done,
        "250 2.0.0 Ok: accepted for 1 recipient(s); 1 refused (SmtpConnector/partner: 554 5.7.1 Content refused by policy); the sender is notified\r\n"
    );
    assert_eq!(s.a.messages().len(), 1);
    assert!(s.b.messages().is_empty());
    let n = s.n.messages();
    assert_eq!(n.len(), 1, "one notification");
    assert_eq!(n[0].mail_from, "", "from <>");
    assert_eq!(n[0].rcpt_to, ["s@client.test"]);
    let report = String::from_utf8(n[0].data.clone()).unwrap();
    for part in [
        "Subject: Undelivered Mail Returned to Sender\r\n",
        "Auto-Submitted: auto-replied\r\n",
        "<bob@example.com> (sent as <bob@partner.test>): SmtpConnector/partner said:\r\n    554 5.7.1 Content refused by policy\r\n",
        "Final-Recipient: rfc822; bob@partner.test\r\nOriginal-Recipient: rfc822; bob@example.com\r\nAction: failed\r\nStatus: 5.7.1\r\n",
        "Content-Type: text/rfc822-headers\r\n\r\nReceived: from client.test",
        "Subject: fan-out\r\n\r\n",
    ] {
        assert!(report.contains(part), "{part:?} in\n{report}");
    }
    assert!(
        !report.contains("several next hops."),
        "headers only: {report}"
    );
    assert!(
        !report.contains("ann@"),
        "only the refused recipient: {report}"
    );
    assert!(metric(
        &s.relay,
        r#"mailroute_relay_transactions_total{outcome="partial_notified"} 1"#
    ));
    assert!(metric(
        &s.relay,
        r#"mailroute_relay_notifications_total{result="sent"} 1"#
    ));
}

#[tokio::test]
async fn ret_full_returns_the_whole_message_to_a_trusted_sender() {
    let s = setup(SinkBehaviour {
        data_reply: Some("550 5.2.2 Mailbox full".into()),
        ..Default::default()
    })
    .await;
    let mut c = Client::connect(s.relay.addr).await;
    assert_eq!(code(&c.cmd("EHLO client.test").await), "250");
    assert_eq!(
        code(&c.cmd("MAIL FROM:<s@client.test> RET=FULL ENVID=abc").await),
        "250"
    );
    assert_eq!(code(&c.cmd("RCPT TO:<ann@example.com>").await), "250");
    assert_eq!(code(&c.cmd("RCPT TO:<bob@example.com>").await), "250");
    assert_eq!(code(&c.data(MESSAGE).await), "250");
    let report = String::from_utf8(s.n.messages()[0].data.clone()).unwrap();
    assert!(report.contains("Original-Envelope-Id: abc\r\n"), "{report}");
    assert!(
        report.contains("Content-Type: message/rfc822\r\n\r\nReceived: from client.test"),
        "{report}"
    );
    assert!(
        report.contains("One message, several next hops.\r\n"),
        "{report}"
    );
}

#[tokio::test]
async fn no_notification_for_a_null_sender_or_one_who_asked_for_none() {
    let s = setup(SinkBehaviour {
        data_reply: Some("554 5.7.1 No".into()),
        // NOTIFY=NEVER needs a next hop that keeps DSN records.
        dsn: true,
        ..Default::default()
    })
    .await;
    let mut c = Client::connect(s.relay.addr).await;
    c.envelope("", &["ann@example.com", "bob@example.com"])
        .await;
    assert_eq!(
        c.data(MESSAGE).await,
        "250 2.0.0 Ok: accepted for 1 recipient(s); 1 refused (SmtpConnector/partner: 554 5.7.1 No); no notification: the sender is <>\r\n"
    );
    assert_eq!(code(&c.cmd("MAIL FROM:<s@client.test>").await), "250");
    assert_eq!(code(&c.cmd("RCPT TO:<ann@example.com>").await), "250");
    assert_eq!(
        code(&c.cmd("RCPT TO:<bob@example.com> NOTIFY=NEVER").await),
        "250"
    );
    assert!(
        c.data(MESSAGE)
            .await
            .ends_with("no notification: NOTIFY asked for none\r\n")
    );
    assert!(s.n.messages().is_empty());
    assert_eq!(s.a.messages().len(), 2);
}

#[tokio::test]
async fn a_notification_that_cannot_be_sent_now_is_a_4xx_and_counted_as_a_duplicate_risk() {
    let a = Sink::start(SinkBehaviour::default()).await;
    let b = Sink::start(SinkBehaviour {
        data_reply: Some("554 5.7.1 No".into()),
        ..Default::default()
    })
    .await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_host = format!("[127.0.0.1]:{}", dead.local_addr().unwrap().port());
    drop(dead);
    let relay = Relay::with_objects(config(), &org(&a, &b, &b, &dead_host)).await;
    let mut c = Client::connect(relay.addr).await;
    c.envelope("s@client.test", &["ann@example.com", "bob@example.com"])
        .await;
    assert_eq!(
        c.data(MESSAGE).await,
        "451 4.3.0 <bob@example.com> refused (SmtpConnector/partner: 554 5.7.1 No) and the sender cannot be notified now; try again later (1 recipient(s) already accepted may get this message twice)\r\n"
    );
    assert!(metric(
        &relay,
        r#"mailroute_relay_transactions_total{outcome="partial_deferred"} 1"#
    ));
    assert!(metric(
        &relay,
        r#"mailroute_relay_notifications_total{result="deferred"} 1"#
    ));
    assert!(metric(
        &relay,
        "mailroute_relay_duplicate_risk_recipients_total 1"
    ));
}

#[tokio::test]
async fn a_sender_the_table_cannot_route_gets_the_refusal_itself() {
    let s = setup(SinkBehaviour {
        data_reply: Some("554 5.7.1 No".into()),
        ..Default::default()
    })
    .await;
    let mut c = Client::connect(s.relay.addr).await;
    // nowhere.test has no connector: the notification has no route.
    c.envelope("s@nowhere.test", &["ann@example.com", "bob@example.com"])
        .await;
    assert_eq!(
        c.data(MESSAGE).await,
        "554 5.7.1 <bob@example.com> refused (SmtpConnector/partner: 554 5.7.1 No); delivered to 1 other recipient(s); the notification to the sender was refused\r\n"
    );
    assert!(metric(
        &s.relay,
        r#"mailroute_relay_transactions_total{outcome="partial_refused"} 1"#
    ));
    assert!(metric(
        &s.relay,
        r#"mailroute_relay_notifications_total{result="refused"} 1"#
    ));
}

#[tokio::test]
async fn every_next_hop_refusing_gives_one_of_their_refusals_naming_it() {
    let refusing = SinkBehaviour {
        data_reply: Some("554 5.7.1 Spam".into()),
        ..Default::default()
    };
    let a = Sink::start(refusing.clone()).await;
    let b = Sink::start(refusing).await;
    let relay = Relay::with_objects(config(), &org(&a, &b, &b, "[127.0.0.1]:1")).await;
    let mut c = Client::connect(relay.addr).await;
    c.envelope("s@client.test", &["ann@example.com", "bob@example.com"])
        .await;
    assert_eq!(
        c.data(MESSAGE).await,
        "554 5.7.1 Spam (SmtpConnector/mbx1; all 2 next hops refused the message)\r\n"
    );
}

/// The client asks for PRDR; ann's next hop accepts, bob's refuses.
async fn prdr_exchange(c: &mut Client) -> Vec<String> {
    let ehlo = c.cmd("EHLO client.test").await;
    assert!(ehlo.contains("250-PRDR\r\n"), "{ehlo}");
    assert_eq!(code(&c.cmd("MAIL FROM:<s@client.test> PRDR").await), "250");
    assert_eq!(code(&c.cmd("RCPT TO:<ann@example.com>").await), "250");
    assert_eq!(code(&c.cmd("RCPT TO:<bob@example.com>").await), "250");
    assert_eq!(code(&c.cmd("DATA").await), "354");
    c.send(format!("{MESSAGE}.\r\n").as_bytes()).await;
    let mut replies = vec![c.reply().await];
    if replies[0].starts_with("353") {
        for _ in 0..3 {
            replies.push(c.reply().await);
        }
    }
    replies
}

#[tokio::test]
async fn with_prdr_each_recipient_gets_its_own_next_hops_verdict() {
    let s = setup(SinkBehaviour {
        data_reply: Some("550 5.7.1 Refused by policy".into()),
        ..Default::default()
    })
    .await;
    let mut c = Client::connect(s.relay.addr).await;
    assert_eq!(
        prdr_exchange(&mut c).await,
        [
            "353 PRDR content analysis beginning\r\n",
            "250 2.0.0 <ann@example.com> Ok: queued as SINK1 (SmtpConnector/mbx1)\r\n",
            "550 5.7.1 <bob@example.com> Refused by policy (SmtpConnector/partner)\r\n",
            "250 2.0.0 Ok: accepted for 1 of 2 recipients\r\n",
        ]
    );
    assert_eq!(s.a.messages().len(), 1);
    assert!(s.n.messages().is_empty(), "no notification with PRDR");
    assert!(metric(
        &s.relay,
        r#"mailroute_relay_prdr_transactions_total{result="per_recipient"} 1"#
    ));
    // The session goes on.
    assert_eq!(code(&c.cmd("NOOP").await), "250");
}

/// DATA with a large message sent in two parts, a pause between them: the
/// next hop that drops mid-DATA is gone before the rest arrives.
async fn send_in_two_parts(c: &mut Client) -> String {
    assert_eq!(code(&c.cmd("DATA").await), "354");
    let body = "0123456789abcdef\r\n".repeat(5_000);
    c.send(format!("Subject: big\r\n\r\n{body}").as_bytes())
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    c.send(format!("{body}.\r\n").as_bytes()).await;
    c.reply().await
}

#[tokio::test]
async fn a_next_hop_lost_mid_data_drops_the_message_everywhere_without_prdr() {
    let s = setup(SinkBehaviour {
        drop_in_data_after: Some(100),
        ..Default::default()
    })
    .await;
    let mut c = Client::connect(s.relay.addr).await;
    c.envelope("s@client.test", &["ann@example.com", "bob@example.com"])
        .await;
    let r = send_in_two_parts(&mut c).await;
    assert!(
        r.starts_with("451 4.4.2 Connection to the next hop lost during DATA; try again later (SmtpConnector/partner)")
            || r.starts_with("451 4.4.2 The next hop gave up during DATA"),
        "{r}"
    );
    // Nothing delivered anywhere: the retry duplicates nothing.
    assert!(s.a.messages().is_empty());
    assert!(metric(
        &s.relay,
        "mailroute_relay_duplicate_risk_recipients_total 0"
    ));

    // With PRDR the other next hop delivers and bob alone is deferred.
    let mut c = Client::connect(s.relay.addr).await;
    assert_eq!(code(&c.cmd("EHLO client.test").await), "250");
    assert_eq!(code(&c.cmd("MAIL FROM:<s@client.test> PRDR").await), "250");
    assert_eq!(code(&c.cmd("RCPT TO:<ann@example.com>").await), "250");
    assert_eq!(code(&c.cmd("RCPT TO:<bob@example.com>").await), "250");
    let r = send_in_two_parts(&mut c).await;
    assert_eq!(r, "353 PRDR content analysis beginning\r\n");
    let r = c.reply().await;
    assert_eq!(codes(&r), "250 2.0.0", "{r}");
    let r = c.reply().await;
    assert!(r.starts_with("451 4.4.2 <bob@example.com> "), "{r}");
    assert_eq!(codes(&c.reply().await), "250 2.0.0");
    assert_eq!(s.a.messages().len(), 1);
}

#[tokio::test]
async fn a_next_hop_down_at_rcpt_defers_its_recipients_only_and_is_tried_once() {
    let a = Sink::start(SinkBehaviour::default()).await;
    // A next hop that accepts connections and closes them at once.
    let closing = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closing_host = format!("[127.0.0.1]:{}", closing.local_addr().unwrap().port());
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = attempts.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = closing.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(s);
        }
    });
    let mut o = org(&a, &a, &a, "[127.0.0.1]:1");
    o.connectors[1] = connector("partner", &[("partner.test", 1)], &[&closing_host]);
    o.contacts
        .push(contact("bea", &["bea@example.com"], "bea@partner.test"));
    let relay = Relay::with_objects(config(), &o).await;
    let mut c = Client::connect(relay.addr).await;
    let rcpts = c
        .envelope(
            "s@client.test",
            &["ann@example.com", "bob@example.com", "bea@example.com"],
        )
        .await;
    assert_eq!(codes(&rcpts[0]), "250 2.1.5");
    assert_eq!(codes(&rcpts[1]), "451 4.4.1");
    assert_eq!(codes(&rcpts[2]), "451 4.4.1");
    assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(code(&c.data(MESSAGE).await), "250");
    assert_eq!(a.messages()[0].rcpt_to, ["ann@mbx1.test"]);
}

#[tokio::test]
async fn a_next_hop_refusing_data_is_part_of_the_outcome_and_one_refusing_every_rcpt_is_not() {
    let a = Sink::start(SinkBehaviour::default()).await;
    let b = Sink::start(SinkBehaviour {
        data_command_reply: Some("554 5.3.0 No DATA today".into()),
        ..Default::default()
    })
    .await;
    let c3 = Sink::start(SinkBehaviour {
        refuse: vec!["cy@third.test".into()],
        ..Default::default()
    })
    .await;
    let n = Sink::start(SinkBehaviour::default()).await;
    let relay = Relay::with_objects(config(), &org(&a, &b, &c3, &n.smart_host())).await;
    let mut c = Client::connect(relay.addr).await;
    let rcpts = c
        .envelope(
            "s@client.test",
            &["ann@example.com", "bob@example.com", "cy@example.com"],
        )
        .await;
    assert_eq!(code(&rcpts[2]), "550");
    let done = c.data(MESSAGE).await;
    assert!(done.starts_with("250 2.0.0 Ok: accepted for 1 recipient(s); 1 refused (SmtpConnector/partner: 554 5.3.0 No DATA today)"), "{done}");
    assert_eq!(n.messages().len(), 1);
    // The third next hop took no part: RSET, and its connection reused.
    assert!(c3.commands.lock().unwrap().iter().any(|l| l == "RSET"));
    // Every next hop refusing DATA: one reply, before any data is sent.
    let mut c = Client::connect(relay.addr).await;
    c.envelope("s@client.test", &["bob@example.com"]).await;
    assert_eq!(c.cmd("DATA").await, "554 5.3.0 No DATA today\r\n");
}
