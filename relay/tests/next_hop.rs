//! The relay's side of next hops, against real servers on loopback: a
//! connection pool, STARTTLS (opportunistic and required, verified),
//! AUTH from mounted Secret files, MX delivery through a real DNS server,
//! and DSN parameters.

mod common;

use common::*;
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, MX};
use hickory_proto::rr::{Name, RData, Record};
use relay::Config;
use routing::crd::{SecretRef, TlsMode, TlsSettings};
use routing::fixtures::*;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::CertificateDer;

const MESSAGE: &str = "Subject: hi\r\n\r\nHello.\r\n";

/// A certificate for 127.0.0.1 and its server configuration.
fn certificate() -> (CertificateDer<'static>, Arc<ServerConfig>) {
    self_signed_server("127.0.0.1")
}

/// A sink behaving as `b`, and a relay routing ann@example.com to it.
async fn routed_to(b: SinkBehaviour) -> (Sink, Relay) {
    let sink = Sink::start(b).await;
    let relay = Relay::with_objects(
        config(),
        &one_route("ann@mbx.example.com", &sink.smart_host()),
    )
    .await;
    (sink, relay)
}

/// One route to `sink` through a connector shaped by `shape`.
fn route_with(
    sink: &Sink,
    shape: impl FnOnce(&mut routing::crd::SmtpConnector),
) -> routing::Objects {
    let mut o = one_route("ann@mbx.example.com", &sink.smart_host());
    shape(&mut o.connectors[0]);
    o
}

fn tls(mode: TlsMode, verify: Option<bool>) -> Option<TlsSettings> {
    Some(TlsSettings {
        mode: Some(mode),
        verify,
    })
}

async fn send_one(relay: &Relay) -> (String, String) {
    let mut c = Client::connect(relay.addr).await;
    let rcpt = c.envelope("s@x.test", &["ann@example.com"]).await.remove(0);
    let data = if rcpt.starts_with("250") {
        c.data(MESSAGE).await
    } else {
        String::new()
    };
    c.cmd("QUIT").await;
    (rcpt, data)
}

#[tokio::test]
async fn a_next_hop_connection_serves_many_transactions() {
    let (sink, relay) = routed_to(SinkBehaviour::default()).await;
    for _ in 0..3 {
        let (rcpt, data) = send_one(&relay).await;
        assert!(
            rcpt.starts_with("250") && data.starts_with("250"),
            "{rcpt} {data}"
        );
    }
    // Two clients in one session each: RSET between them keeps it too.
    let mut c = Client::connect(relay.addr).await;
    c.envelope("s@x.test", &["ann@example.com"]).await;
    assert!(c.cmd("RSET").await.starts_with("250"));
    c.envelope_again("s@x.test", &["ann@example.com"]).await;
    assert!(c.data(MESSAGE).await.starts_with("250"));
    assert_eq!(sink.messages().len(), 4);
    assert_eq!(
        sink.connection_count(),
        1,
        "one connection for all transactions"
    );
    let rsets = sink
        .commands
        .lock()
        .unwrap()
        .iter()
        .filter(|c| *c == "RSET")
        .count();
    assert_eq!(rsets, 1);
    let metrics = relay.shared.metrics.render(&relay.tables);
    assert!(
        metrics.contains("mailroute_relay_downstream_connections_total{outcome=\"opened\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mailroute_relay_downstream_connections_total{outcome=\"reused\"} 4"),
        "{metrics}"
    );
}

#[tokio::test]
async fn mail_and_the_first_rcpt_share_a_round_trip_only_with_pipelining() {
    for (no_pipelining, round_trips) in [(false, 3), (true, 4)] {
        let (sink, relay) = routed_to(SinkBehaviour {
            no_pipelining,
            ..Default::default()
        })
        .await;
        let (rcpt, data) = send_one(&relay).await;
        assert!(
            rcpt.starts_with("250") && data.starts_with("250"),
            "{rcpt} {data}"
        );
        let metrics = relay.shared.metrics.render(&relay.tables);
        // EHLO is part of opening; MAIL(+RCPT), [RCPT,] DATA and the dot are timed.
        let line = format!("mailroute_relay_downstream_latency_seconds_count {round_trips}\n");
        assert!(metrics.contains(&line), "{line} in {metrics}");
        assert_eq!(sink.messages()[0].rcpt_to, vec!["ann@mbx.example.com"]);
    }
}

#[tokio::test]
async fn a_kept_connection_the_next_hop_closed_is_replaced_without_the_client_noticing() {
    let (sink, relay) = routed_to(SinkBehaviour {
        close_after_message: true,
        ..Default::default()
    })
    .await;
    for _ in 0..3 {
        let (rcpt, data) = send_one(&relay).await;
        assert!(
            rcpt.starts_with("250") && data.starts_with("250"),
            "{rcpt} {data}"
        );
    }
    assert_eq!(sink.messages().len(), 3);
    assert_eq!(sink.connection_count(), 3);
}

#[tokio::test]
async fn pool_off_opens_a_connection_per_transaction() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let mut cfg = config();
    cfg.downstream.pool.max_idle = 0;
    let relay =
        Relay::with_objects(cfg, &one_route("ann@mbx.example.com", &sink.smart_host())).await;
    for _ in 0..2 {
        send_one(&relay).await;
    }
    assert_eq!(sink.messages().len(), 2);
    assert_eq!(sink.connection_count(), 2);
}

#[tokio::test]
async fn required_tls_with_a_trusted_certificate_delivers_encrypted() {
    let (cert, server) = certificate();
    let sink = Sink::start(SinkBehaviour {
        tls: Some(server),
        ..Default::default()
    })
    .await;
    let mut cfg = config();
    cfg.downstream.extra_roots = vec![cert];
    let relay = Relay::with_objects(
        cfg,
        &route_with(&sink, |c| c.spec.tls = tls(TlsMode::Required, None)),
    )
    .await;
    let (rcpt, data) = send_one(&relay).await;
    assert!(
        rcpt.starts_with("250") && data.starts_with("250"),
        "{rcpt} {data}"
    );
    let m = sink.messages();
    assert_eq!(m.len(), 1);
    assert!(m[0].tls, "the message came over TLS");
}

#[tokio::test]
async fn required_tls_is_never_given_up() {
    // Not offered at all.
    let plain = Sink::start(SinkBehaviour::default()).await;
    let relay = Relay::with_objects(
        config(),
        &route_with(&plain, |c| c.spec.tls = tls(TlsMode::Required, None)),
    )
    .await;
    let (rcpt, _) = send_one(&relay).await;
    assert_eq!(codes(&rcpt), "451 4.7.5", "{rcpt}");
    assert!(
        !plain
            .commands
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.starts_with("MAIL"))
    );

    // Offered with a certificate nobody vouches for, and verification on.
    let (_, server) = certificate();
    let untrusted = Sink::start(SinkBehaviour {
        tls: Some(server.clone()),
        ..Default::default()
    })
    .await;
    let relay = Relay::with_objects(
        config(),
        &route_with(&untrusted, |c| c.spec.tls = tls(TlsMode::Required, None)),
    )
    .await;
    let (rcpt, _) = send_one(&relay).await;
    assert_eq!(codes(&rcpt), "451 4.7.5", "{rcpt}");
    assert!(
        !untrusted
            .commands
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.starts_with("MAIL"))
    );

    // The same with `verify: false`: encrypted, not checked.
    let relay = Relay::with_objects(
        config(),
        &route_with(&untrusted, |c| {
            c.spec.tls = tls(TlsMode::Required, Some(false))
        }),
    )
    .await;
    let (rcpt, data) = send_one(&relay).await;
    assert!(
        rcpt.starts_with("250") && data.starts_with("250"),
        "{rcpt} {data}"
    );
    assert!(untrusted.messages()[0].tls);
}

#[tokio::test]
async fn opportunistic_tls_encrypts_when_offered_and_sends_plain_when_not() {
    let (_, server) = certificate();
    let offering = Sink::start(SinkBehaviour {
        tls: Some(server),
        ..Default::default()
    })
    .await;
    let plain = Sink::start(SinkBehaviour::default()).await;
    for (sink, encrypted) in [(&offering, true), (&plain, false)] {
        let relay = Relay::with_objects(
            config(),
            &route_with(sink, |c| c.spec.tls = tls(TlsMode::Opportunistic, None)),
        )
        .await;
        let (rcpt, data) = send_one(&relay).await;
        assert!(
            rcpt.starts_with("250") && data.starts_with("250"),
            "{rcpt} {data}"
        );
        assert_eq!(sink.messages()[0].tls, encrypted);
    }
    // Mode None never tries.
    let relay = Relay::with_objects(
        config(),
        &route_with(&offering, |c| c.spec.tls = tls(TlsMode::None, None)),
    )
    .await;
    send_one(&relay).await;
    assert!(!offering.messages()[1].tls);
}

fn auth_dir(user: &str, password: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("smarthost-creds");
    std::fs::create_dir(&secret).unwrap();
    std::fs::write(secret.join("username"), format!("{user}\n")).unwrap();
    std::fs::write(secret.join("password"), password).unwrap();
    dir
}

fn with_auth(c: &mut routing::crd::SmtpConnector) {
    c.spec.auth_secret_ref = Some(SecretRef {
        name: "smarthost-creds".into(),
    });
}

#[tokio::test]
async fn auth_uses_the_mounted_secret_over_tls_only() {
    let (_, server) = certificate();
    let sink = Sink::start(SinkBehaviour {
        tls: Some(server),
        auth: Some(("relay@example.com".into(), "s3cret".into())),
        ..Default::default()
    })
    .await;
    let good = auth_dir("relay@example.com", "s3cret");
    let mut cfg = config();
    cfg.downstream.auth_dir = good.path().to_owned();
    let relay = Relay::with_objects(cfg, &route_with(&sink, with_auth)).await;
    let (rcpt, data) = send_one(&relay).await;
    assert!(
        rcpt.starts_with("250") && data.starts_with("250"),
        "{rcpt} {data}"
    );
    let m = sink.messages();
    assert_eq!(m[0].user.as_deref(), Some("relay@example.com"));
    assert!(m[0].tls);

    // A wrong password defers; the mail is not sent unauthenticated.
    let bad = auth_dir("relay@example.com", "wrong");
    let mut cfg = config();
    cfg.downstream.auth_dir = bad.path().to_owned();
    let relay = Relay::with_objects(cfg, &route_with(&sink, with_auth)).await;
    let (rcpt, _) = send_one(&relay).await;
    assert_eq!(codes(&rcpt), "451 4.7.0", "{rcpt}");

    // No Secret mounted: deferred too.
    let mut cfg = config();
    cfg.downstream.auth_dir = "/nonexistent".into();
    let relay = Relay::with_objects(cfg, &route_with(&sink, with_auth)).await;
    let (rcpt, _) = send_one(&relay).await;
    assert_eq!(codes(&rcpt), "451 4.7.0", "{rcpt}");
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test]
async fn credentials_are_never_sent_in_the_clear() {
    let sink = Sink::start(SinkBehaviour {
        auth: Some(("relay@example.com".into(), "s3cret".into())),
        ..Default::default()
    })
    .await;
    let dir = auth_dir("relay@example.com", "s3cret");
    let mut cfg = config();
    cfg.downstream.auth_dir = dir.path().to_owned();
    let relay = Relay::with_objects(cfg, &route_with(&sink, with_auth)).await;
    let (rcpt, _) = send_one(&relay).await;
    assert_eq!(codes(&rcpt), "451 4.7.0", "{rcpt}");
    let commands = sink.commands.lock().unwrap().clone();
    assert!(
        !commands.iter().any(|c| c.starts_with("AUTH")),
        "{commands:?}"
    );
}

/// A DNS server on loopback answering from a fixed zone.
async fn dns_server(
    zone: Vec<(&'static str, RData)>,
    nxdomains: Vec<&'static str>,
) -> std::net::SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1500];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut response = Message::new(
                query.metadata.id,
                MessageType::Response,
                query.metadata.op_code,
            );
            response.metadata.recursion_desired = query.metadata.recursion_desired;
            response.metadata.recursion_available = true;
            response.metadata.authoritative = true;
            for q in &query.queries {
                response.add_query(q.clone());
                let name = q.name.to_ascii().to_ascii_lowercase();
                if nxdomains.iter().any(|d| *d == name) {
                    response.metadata.response_code = ResponseCode::NXDomain;
                    continue;
                }
                for (owner, data) in &zone {
                    if *owner == name && data.record_type() == q.query_type {
                        response.add_answer(Record::from_rdata(q.name.clone(), 60, data.clone()));
                    }
                }
                if response.answers.is_empty() {
                    // An SOA makes "no records" a cacheable NODATA answer.
                    let soa = hickory_proto::rr::rdata::SOA::new(
                        Name::from_ascii("ns.test.").unwrap(),
                        Name::from_ascii("hostmaster.test.").unwrap(),
                        1,
                        60,
                        60,
                        60,
                        60,
                    );
                    response.add_authority(Record::from_rdata(
                        Name::from_ascii("test.").unwrap(),
                        60,
                        RData::SOA(soa),
                    ));
                }
            }
            let _ = socket.send_to(&response.to_vec().unwrap(), from).await;
        }
    });
    addr
}

fn mx(preference: u16, exchange: &str) -> RData {
    RData::MX(MX::new(preference, Name::from_ascii(exchange).unwrap()))
}

fn a(ip: [u8; 4]) -> RData {
    RData::A(A::from(std::net::Ipv4Addr::from(ip)))
}

/// `*` goes out by MX; the sink is every MX host (port from `--mx-port`).
fn mx_routing() -> routing::Objects {
    let mut o = routing::Objects::default();
    o.address_spaces
        .push(authoritative("example", "example.com"));
    o.contacts
        .push(contact("ann", &["ann@example.com"], "ann@partner.test"));
    o.contacts
        .push(contact("bob", &["bob@example.com"], "bob@other.test"));
    o.contacts
        .push(contact("cat", &["cat@example.com"], "cat@nomail.test"));
    o.contacts
        .push(contact("dan", &["dan@example.com"], "dan@gone.test"));
    o.contacts
        .push(contact("eve", &["eve@example.com"], "eve@bare.test"));
    o.connectors.push(connector("internet", &[("*", 1)], &[]));
    o
}

async fn mx_relay(sink: &Sink) -> Relay {
    let dns = dns_server(
        vec![
            ("partner.test.", mx(20, "mx2.partner.test.")),
            ("partner.test.", mx(10, "mx1.partner.test.")),
            // mx1 has no address; mx2 is the sink.
            ("mx2.partner.test.", a([127, 0, 0, 1])),
            ("other.test.", mx(10, "mx.other.test.")),
            ("mx.other.test.", a([127, 0, 0, 1])),
            ("nomail.test.", mx(0, ".")),
            // No MX: the domain's own address.
            ("bare.test.", a([127, 0, 0, 1])),
        ],
        vec!["gone.test."],
    )
    .await;
    let mut cfg: Config = config();
    cfg.downstream.dns_servers = vec![dns];
    cfg.downstream.mx_port = sink.addr.port();
    Relay::with_objects(cfg, &mx_routing()).await
}

#[tokio::test]
async fn delivery_by_mx_follows_dns() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let relay = mx_relay(&sink).await;
    let mut c = Client::connect(relay.addr).await;
    let replies = c
        .envelope("s@x.test", &["ann@example.com", "bob@example.com"])
        .await;
    // Each domain's MX is a next hop of its own; one message goes to both.
    assert!(replies[0].starts_with("250"), "{}", replies[0]);
    assert!(replies[1].starts_with("250"), "{}", replies[1]);
    let done = c.data(MESSAGE).await;
    assert!(
        done.starts_with(
            "250 2.0.0 Ok: accepted by 2 next hops (SmtpConnector/internet (MX of partner.test): "
        ),
        "{done}"
    );
    let r = c
        .envelope_again("s@x.test", &["cat@example.com"])
        .await
        .remove(0);
    assert_eq!(codes(&r), "556 5.1.10", "{r}");
    assert!(c.cmd("RSET").await.starts_with("250"));
    let r = c
        .envelope_again("s@x.test", &["dan@example.com"])
        .await
        .remove(0);
    assert_eq!(codes(&r), "550 5.1.2", "{r}");
    assert!(c.cmd("RSET").await.starts_with("250"));
    c.envelope_again("s@x.test", &["eve@example.com"]).await;
    assert!(c.data(MESSAGE).await.starts_with("250"));
    let mut m: Vec<Vec<String>> = sink.messages().into_iter().map(|m| m.rcpt_to).collect();
    m.sort();
    assert_eq!(
        m,
        [["ann@partner.test"], ["bob@other.test"], ["eve@bare.test"]]
    );
}

#[tokio::test]
async fn dns_failure_defers() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    // A DNS server that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = config();
    cfg.downstream.dns_servers = vec![silent.local_addr().unwrap()];
    cfg.downstream.mx_port = sink.addr.port();
    let relay = Relay::with_objects(cfg, &mx_routing()).await;
    let mut c = Client::connect(relay.addr).await;
    let r = c.envelope("s@x.test", &["ann@example.com"]).await.remove(0);
    assert_eq!(codes(&r), "451 4.4.3", "{r}");
    drop(silent);
}

#[tokio::test]
async fn dsn_parameters_pass_through_to_a_next_hop_that_supports_them() {
    let (sink, relay) = routed_to(SinkBehaviour {
        dsn: true,
        ..Default::default()
    })
    .await;
    let mut c = Client::connect(relay.addr).await;
    assert!(c.cmd("EHLO client.test").await.contains("250-DSN"));
    assert!(
        c.cmd("MAIL FROM:<s@x.test> RET=HDRS ENVID=QQ+2B314")
            .await
            .starts_with("250")
    );
    let r = c
        .cmd("RCPT TO:<ann@example.com> NOTIFY=SUCCESS,FAILURE")
        .await;
    assert!(r.starts_with("250"), "{r}");
    assert!(c.data(MESSAGE).await.starts_with("250"));
    let lines = sink.messages()[0].envelope_lines.clone();
    assert_eq!(lines[0], "MAIL FROM:<s@x.test> RET=HDRS ENVID=QQ+2B314");
    // The rewritten recipient carries the original as ORCPT.
    assert_eq!(
        lines[1],
        "RCPT TO:<ann@mbx.example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;ann@example.com"
    );
}

#[tokio::test]
async fn dsn_requests_a_next_hop_cannot_keep_are_refused() {
    let (sink, relay) = routed_to(SinkBehaviour::default()).await;
    let mut c = Client::connect(relay.addr).await;
    c.cmd("EHLO client.test").await;
    assert!(
        c.cmd("MAIL FROM:<s@x.test> RET=FULL ENVID=abc")
            .await
            .starts_with("250")
    );
    let r = c.cmd("RCPT TO:<ann@example.com> NOTIFY=SUCCESS").await;
    assert_eq!(codes(&r), "555 5.5.4", "{r}");
    let r = c.cmd("RCPT TO:<ann@example.com> NOTIFY=NEVER").await;
    assert_eq!(codes(&r), "555 5.5.4", "{r}");
    // FAILURE is what the next hop does anyway: accepted, parameters dropped.
    let r = c
        .cmd("RCPT TO:<ann@example.com> NOTIFY=FAILURE,DELAY ORCPT=rfc822;x@y.test")
        .await;
    assert!(r.starts_with("250"), "{r}");
    assert!(c.data(MESSAGE).await.starts_with("250"));
    let lines = sink.messages()[0].envelope_lines.clone();
    assert_eq!(
        lines,
        vec!["MAIL FROM:<s@x.test>", "RCPT TO:<ann@mbx.example.com>"]
    );
}
