//! STARTTLS from clients (RFC 3207), with a real TLS handshake and a
//! certificate reloaded from its files.

mod common;

use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

fn write_cert(dir: &std::path::Path) -> CertificateDer<'static> {
    let ck = rcgen::generate_simple_self_signed(vec!["relay.test".into()]).unwrap();
    std::fs::write(dir.join("tls.crt"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), ck.signing_key.serialize_pem()).unwrap();
    ck.cert.der().clone()
}

fn connector(trusted: &[CertificateDer<'static>]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for c in trusted {
        roots.add(c.clone()).unwrap();
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn reply<S: AsyncRead + Unpin>(r: &mut BufReader<S>) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.unwrap() == 0 {
            return all;
        }
        all.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return all;
        }
    }
}

async fn cmd<S: AsyncRead + AsyncWrite + Unpin>(s: &mut BufReader<S>, line: &str) -> String {
    s.get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .unwrap();
    reply(s).await
}

async fn relay_with_tls(dir: &std::path::Path, sink: &Sink) -> Relay {
    let tls = relay::tls::Tls::new(dir.join("tls.crt"), dir.join("tls.key")).unwrap();
    tokio::spawn(tls.clone().watch(Duration::from_millis(50)));
    let o = one_route("ann@mbx.example.com", &sink.smart_host());
    let tables = Arc::new(relay::table::Tables::default());
    tables.set(table_of(&o));
    Relay::start_shared(relay::Shared::with_tls(config(), tables, Some(tls))).await
}

/// Plain EHLO and STARTTLS, then the handshake.
async fn upgrade(
    relay: &Relay,
    trusted: &[CertificateDer<'static>],
    pipelined: &str,
) -> BufReader<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut plain = BufReader::new(TcpStream::connect(relay.addr).await.unwrap());
    assert!(reply(&mut plain).await.starts_with("220"));
    let ehlo = cmd(&mut plain, "EHLO client.test").await;
    assert!(ehlo.contains("250-STARTTLS"), "{ehlo}");
    plain
        .get_mut()
        .write_all(format!("STARTTLS\r\n{pipelined}").as_bytes())
        .await
        .unwrap();
    assert_eq!(codes(&reply(&mut plain).await), "220 2.0.0");
    let tls = connector(trusted)
        .connect(
            ServerName::try_from("relay.test").unwrap(),
            plain.into_inner(),
        )
        .await
        .expect("TLS handshake");
    BufReader::new(tls)
}

#[tokio::test]
async fn mail_over_starttls_is_marked_esmtps_and_plaintext_injection_is_discarded() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cert = write_cert(dir.path());
    let relay = relay_with_tls(dir.path(), &sink).await;

    // "RSET" sent in the clear behind STARTTLS must not be answered inside TLS.
    let mut tls = upgrade(&relay, &[cert], "RSET\r\n").await;
    let ehlo = cmd(&mut tls, "EHLO client.test").await;
    assert!(
        ehlo.starts_with("250-relay.test"),
        "first reply over TLS must answer EHLO: {ehlo}"
    );
    assert!(!ehlo.contains("STARTTLS"));
    assert_eq!(codes(&cmd(&mut tls, "STARTTLS").await), "503 5.5.1");
    assert_eq!(
        code(&cmd(&mut tls, "MAIL FROM:<s@outside.org>").await),
        "250"
    );
    assert_eq!(
        codes(&cmd(&mut tls, "RCPT TO:<ann@example.com>").await),
        "250 2.1.5"
    );
    assert_eq!(code(&cmd(&mut tls, "DATA").await), "354");
    tls.get_mut()
        .write_all(b"Subject: secret\r\n\r\nover TLS\r\n.\r\n")
        .await
        .unwrap();
    assert_eq!(code(&reply(&mut tls).await), "250");
    let data = String::from_utf8(sink.messages()[0].data.clone()).unwrap();
    assert!(data.contains("with ESMTPS id"), "{data}");
}

#[tokio::test]
async fn a_changed_certificate_is_used_for_new_sessions() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let first = write_cert(dir.path());
    let relay = relay_with_tls(dir.path(), &sink).await;
    let tls = upgrade(&relay, std::slice::from_ref(&first), "").await;
    assert_eq!(
        tls.get_ref().get_ref().1.peer_certificates().unwrap()[0],
        first
    );

    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = write_cert(dir.path());
    let start = Instant::now();
    loop {
        let tls = upgrade(&relay, &[first.clone(), second.clone()], "").await;
        if tls.get_ref().get_ref().1.peer_certificates().unwrap()[0] == second {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "certificate not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn without_a_certificate_starttls_is_not_offered() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let mut o = routing::Objects::default();
    o.connectors.push(routing::fixtures::connector(
        "mbx",
        &[("mbx.example.com", 1)],
        &[&sink.smart_host()],
    ));
    let relay = Relay::with_objects(config(), &o).await;
    let mut c = Client::connect(relay.addr).await;
    assert!(!c.cmd("EHLO x").await.contains("STARTTLS"));
    assert_eq!(codes(&c.cmd("STARTTLS").await), "454 4.7.0");
}
