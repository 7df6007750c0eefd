//! A recording SMTP server for the local demo (README "Quick start"):
//! `cargo run -p relay --example sink -- NAME ADDR:PORT` prints one line
//! per message it accepts. It is the tests' own downstream server.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (name, addr) = match args.as_slice() {
        [_, name, addr] => (name.clone(), addr.clone()),
        _ => {
            eprintln!("usage: sink NAME ADDR:PORT");
            std::process::exit(2);
        }
    };
    let sink = common::Sink::start_on(&addr, common::SinkBehaviour::default()).await;
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
                "sink {name}: from <{}> to {:?} ({} bytes, \"{subject}\")",
                m.mail_from,
                m.rcpt_to,
                m.data.len()
            );
        }
        shown = messages.len();
    }
}
