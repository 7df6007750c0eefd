//! The submission benchmark's client (bench/submission.sh): SESSIONS
//! concurrent sessions, each message on a new connection with STARTTLS,
//! optionally AUTH PLAIN, one recipient, 1 KB; prints messages per second.
//!
//! `submit_bench ADDR MESSAGES SESSIONS [USER PASSWORD]`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

async fn reply<S: AsyncRead + Unpin>(r: &mut BufReader<S>) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return all;
        }
        all.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return all;
        }
    }
}

async fn cmd<S: AsyncRead + AsyncWrite + Unpin>(s: &mut BufReader<S>, line: &str) -> String {
    // One write per command: two would wait on Nagle and a delayed ACK.
    s.get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .unwrap();
    reply(s).await
}

fn expect(r: &str, code: &str, what: &str) {
    assert!(r.starts_with(code), "{what}: {r}");
}

async fn one(addr: &str, tls: &TlsConnector, auth: Option<&str>, body: &str) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut plain = BufReader::new(tcp);
    expect(&reply(&mut plain).await, "220", "greeting");
    expect(&cmd(&mut plain, "EHLO bench.test").await, "250", "EHLO");
    expect(&cmd(&mut plain, "STARTTLS").await, "220", "STARTTLS");
    let name = ServerName::try_from("relay.bench").unwrap();
    let stream = tls.connect(name, plain.into_inner()).await.unwrap();
    let mut s = BufReader::new(stream);
    expect(&cmd(&mut s, "EHLO bench.test").await, "250", "EHLO");
    if let Some(credentials) = auth {
        expect(
            &cmd(&mut s, &format!("AUTH PLAIN {credentials}")).await,
            "235",
            "AUTH",
        );
    }
    expect(
        &cmd(&mut s, "MAIL FROM:<app@example.com>").await,
        "250",
        "MAIL",
    );
    expect(
        &cmd(&mut s, "RCPT TO:<bob@partner.example>").await,
        "250",
        "RCPT",
    );
    expect(&cmd(&mut s, "DATA").await, "354", "DATA");
    expect(&cmd(&mut s, body).await, "250", "end of data");
    let _ = cmd(&mut s, "QUIT").await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (addr, messages, sessions) = match args.as_slice() {
        [_, a, m, s, ..] => (
            a.clone(),
            m.parse::<usize>().unwrap(),
            s.parse::<usize>().unwrap(),
        ),
        _ => {
            eprintln!("usage: submit_bench ADDR MESSAGES SESSIONS [USER PASSWORD]");
            std::process::exit(2);
        }
    };
    let auth = args.get(4).zip(args.get(5)).map(|(u, p)| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("\0{u}\0{p}"))
    });
    // The bench's relay has a throw-away certificate: not checked (the
    // relay's own opportunistic connector).
    let tls = relay::downstream::tls::ClientTls::new(&[])
        .connector(false)
        .expect("an opportunistic connector")
        .clone();
    let mut body = String::from("From: app@example.com\r\nSubject: bench\r\n\r\n");
    while body.len() < 1024 {
        body.push_str("0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n");
    }
    body.push('.');
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..sessions)
        .map(|_| {
            let (addr, tls, auth, body, next) = (
                addr.clone(),
                tls.clone(),
                auth.clone(),
                body.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < messages {
                    one(&addr, &tls, auth.as_deref(), &body).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{:.0}", messages as f64 / secs);
}
