//! A recording SMTP server for the local demo (`examples/demo.sh`) and the
//! end-to-end tests: `sink NAME ADDR:PORT` prints one line per message it
//! accepts. It offers STARTTLS with a throw-away self-signed certificate made
//! at start, as most mail servers offer TLS, so connectors with `tls: {mode:
//! Required, verify: false}` work against it. It is the tests' own
//! downstream server.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, name, addr] = args.as_slice() else {
        eprintln!("usage: sink NAME ADDR:PORT");
        std::process::exit(2);
    };
    let behaviour = common::SinkBehaviour {
        tls: Some(common::self_signed_server("sink.invalid").1),
        ..Default::default()
    };
    let sink = match common::Sink::try_start_on(addr, behaviour).await {
        Ok(sink) => sink,
        Err(e) => {
            eprintln!("sink {name}: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    println!("sink {name} listening on {}", sink.addr);
    let mut shown = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let messages = sink.messages();
        for m in &messages[shown..] {
            let subject = String::from_utf8_lossy(&m.data)
                .lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
                .unwrap_or_default();
            println!(
                "sink {name}: from <{}> to {:?} ({}, \"{subject}\")",
                m.mail_from,
                m.rcpt_to,
                if m.tls { "TLS" } else { "plain" }
            );
        }
        shown = messages.len();
    }
}
