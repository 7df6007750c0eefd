//! `/metrics` (Prometheus text), `/healthz` and `/readyz` (ready once a
//! table is loaded and while not draining) over plain HTTP/1.1.

use crate::Shared;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await
            else {
                return;
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let (status, content_type, body) = respond(&shared, path);
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

fn respond(shared: &Shared, path: &str) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain";
    match path {
        "/healthz" => ("200 OK", TEXT, "ok\n".into()),
        "/readyz" => match (shared.tables.current(), shared.is_draining()) {
            (_, true) => (
                "503 Service Unavailable",
                TEXT,
                "not ready: draining\n".into(),
            ),
            (Some(t), false) => ("200 OK", TEXT, format!("ready: table {}\n", t.version)),
            (None, false) => (
                "503 Service Unavailable",
                TEXT,
                "not ready: no routing table loaded\n".into(),
            ),
        },
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            shared.metrics.render(&shared.tables),
        ),
        _ => ("404 Not Found", TEXT, "not found\n".into()),
    }
}
