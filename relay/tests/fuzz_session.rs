//! Arbitrary bytes from a client never panic a session, and every reply it
//! sends is a well-formed SMTP reply line.

mod common;

use proptest::prelude::*;
use relay::{Shared, session};
use routing::fixtures::*;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn shared() -> Arc<Shared> {
    let mut o = routing::Objects::default();
    o.address_spaces
        .push(authoritative("example", "example.com"));
    o.contacts.push(contact(
        "ann",
        &["ann@example.com"],
        "ann@example.com.invalid",
    ));
    // Two next hops nothing listens at: the fan-out, each failing fast.
    for (name, domain) in [("bob", "b.test"), ("cy", "c.test")] {
        o.contacts.push(contact(
            name,
            &[&format!("{name}@example.com")],
            &format!("{name}@{domain}"),
        ));
        o.connectors
            .push(connector(name, &[(domain, 1)], &["[127.0.0.1]:1"]));
    }
    let tables = Arc::new(relay::table::Tables::default());
    tables.set(common::table_of(&o));
    Shared::new(common::config(), tables)
}

/// Fragments that steer random input into interesting states.
fn arb_input() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"EHLO x\r\n".to_vec()),
        Just(b"HELO x\r\n".to_vec()),
        Just(b"MAIL FROM:<a@b.c>\r\n".to_vec()),
        Just(b"MAIL FROM:<a@b.c> PRDR\r\n".to_vec()),
        Just(b"MAIL FROM:<> PRDR prdr\r\n".to_vec()),
        Just(b"RCPT TO:<nobody@example.com>\r\n".to_vec()),
        Just(b"RCPT TO:<bob@example.com>\r\n".to_vec()),
        Just(b"RCPT TO:<cy@example.com> NOTIFY=NEVER\r\n".to_vec()),
        Just(b"DATA\r\n".to_vec()),
        Just(b".\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"RSET\r\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..64),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_client_bytes_never_panic_the_session(input in arb_input()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let output = rt.block_on(async {
            let (mut client, server) = tokio::io::duplex(1 << 20);
            let task = tokio::spawn(session::run(server, "127.0.0.1".parse().unwrap(), shared()));
            client.write_all(&input).await.unwrap();
            client.shutdown().await.unwrap();
            let mut out = Vec::new();
            client.read_to_end(&mut out).await.unwrap();
            task.await.expect("session does not panic");
            out
        });
        let text = String::from_utf8(output).expect("replies are UTF-8");
        prop_assert!(text.ends_with("\r\n"));
        for line in text.split_terminator("\r\n") {
            let code = line.get(..3).unwrap_or("");
            prop_assert!(code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()), "bad reply line {:?}", line);
            prop_assert!(matches!(line.as_bytes().get(3), None | Some(b' ') | Some(b'-')), "bad reply line {:?}", line);
        }
    }
}
