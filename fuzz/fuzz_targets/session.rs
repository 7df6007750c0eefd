//! Arbitrary bytes from a client through a whole SMTP session: the strict
//! line reader, smtp-proto's command parser, the transaction state machine
//! and the DATA reader. Nothing may panic, and every reply line must be
//! well-formed (three digits, then a space or a hyphen). The routes lead
//! to closed loopback ports (three next hops, so one transaction fans out),
//! so forwarding fails fast (451).

#![no_main]

use libfuzzer_sys::fuzz_target;
use relay::table::{Loaded, Tables};
use relay::{Config, Shared};
use routing::fixtures::{authoritative, connector, contact};
use std::sync::{Arc, LazyLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
});

static SHARED: LazyLock<Arc<Shared>> = LazyLock::new(|| {
    let mut objects = routing::Objects::default();
    objects.address_spaces.push(authoritative("example", "example.com"));
    objects.contacts.push(contact("ann", &["ann@example.com"], "ann@mbx.example.com"));
    objects.connectors.push(connector("mbx", &[("mbx.example.com", 1)], &["[127.0.0.1]:1"]));
    for (name, domain, host) in [("bob", "b.test", "[127.0.0.1]:2"), ("cy", "c.test", "[127.0.0.1]:3")] {
        let to = format!("{name}@{domain}");
        objects.contacts.push(contact(name, &[&format!("{name}@example.com")], &to));
        objects.connectors.push(connector(name, &[(domain, 1)], &[host]));
    }
    let compiled = routing::compile(&objects, &routing::CompileOptions::default());
    let version = routing::table::encode(compiled.table()).manifest.version;
    let tables = Arc::new(Tables::default());
    tables.set(Loaded { routing: compiled.routing, version });
    let config = Config {
        max_message_size: 4096,
        max_line_length: 512,
        ..Config::default()
    };
    RUNTIME.block_on(async { Shared::new(config, tables) })
});

fuzz_target!(|data: &[u8]| {
    let shared = SHARED.clone();
    RUNTIME.block_on(async move {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let session = tokio::spawn(relay::session::run(server, [127, 0, 0, 1].into(), shared));
        let _ = client.write_all(data).await;
        let _ = client.shutdown().await;
        let mut replies = Vec::new();
        let _ = client.read_to_end(&mut replies).await;
        session.await.expect("the session task must not panic");
        for line in replies.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            assert!(line.ends_with(b"\r"), "reply line without CRLF: {line:?}");
            assert!(line.len() >= 4, "short reply line: {line:?}");
            assert!(line[..3].iter().all(u8::is_ascii_digit), "{line:?}");
            assert!(line[3] == b' ' || line[3] == b'-', "{line:?}");
        }
    });
});
