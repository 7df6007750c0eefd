//! PROXY protocol v2: the client address from the load balancer's header
//! decides who may relay, and a connection without a header gets nothing.

mod common;

use common::*;
use ppp::v2::{Addresses, Builder, Command, Protocol, Version};
use std::net::SocketAddr;
use tokio::io::AsyncReadExt;

fn header(client: &str) -> Vec<u8> {
    let addresses: Addresses = (
        client.parse::<SocketAddr>().unwrap(),
        "10.1.2.3:25".parse::<SocketAddr>().unwrap(),
    )
        .into();
    Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, addresses)
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_header_names_the_client() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let mut cfg = config();
    cfg.proxy_protocol = true;
    let mut objects = one_route("ann@mbx.example.com", &sink.smart_host());
    objects.connectors.push(routing::fixtures::connector(
        "out",
        &[("*", 1)],
        &[&sink.smart_host()],
    ));
    let relay = Relay::with_objects(cfg, &objects).await;

    // An outside client (by its header) may not relay, even though the
    // TCP connection comes from loopback.
    let mut c = Client::connect_after(relay.addr, &header("203.0.113.7:40000")).await;
    assert!(c.greeting.starts_with("220"), "{}", c.greeting);
    let r = c
        .envelope("s@x.test", &["x@elsewhere.test", "ann@example.com"])
        .await;
    assert_eq!(codes(&r[0]), "554 5.7.1", "{}", r[0]);
    assert!(r[1].starts_with("250"), "{}", r[1]);
    assert!(c.data("Subject: a\r\n\r\nb\r\n").await.starts_with("250"));
    let data = String::from_utf8(sink.messages()[0].data.clone()).unwrap();
    assert!(data.contains("[203.0.113.7]"), "{data}");

    // An inside client may.
    let mut c = Client::connect_after(relay.addr, &header("127.0.0.9:40000")).await;
    let r = c.envelope("s@x.test", &["x@elsewhere.test"]).await;
    assert!(r[0].starts_with("250"), "{}", r[0]);
}

#[tokio::test]
async fn a_connection_without_a_header_is_closed_unanswered() {
    let mut cfg = config();
    cfg.proxy_protocol = true;
    let relay = Relay::with_objects(cfg, &one_route("ann@mbx.example.com", "[127.0.0.1]:9")).await;
    let mut s = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    s.write_all(b"EHLO client.test\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut got))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "no greeting: {:?}", String::from_utf8_lossy(&got));
}
