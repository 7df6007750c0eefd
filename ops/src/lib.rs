//! What mailroute's two daemons (the operator and the relay) share for
//! operations: a tiny HTTP/1.1 endpoint for `/metrics`, `/healthz` and
//! `/readyz`, JSON logs, and the shutdown signal. Each daemon supplies only
//! the answers.

pub mod json;

use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One HTTP answer.
pub struct Response {
    pub status: &'static str,
    pub content_type: &'static str,
    pub body: String,
}

pub const TEXT: &str = "text/plain";
pub const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Response {
    pub fn ok(content_type: &'static str, body: impl Into<String>) -> Response {
        Response {
            status: "200 OK",
            content_type,
            body: body.into(),
        }
    }

    pub fn unavailable(body: impl Into<String>) -> Response {
        Response {
            status: "503 Service Unavailable",
            content_type: TEXT,
            body: body.into(),
        }
    }

    pub fn not_found() -> Response {
        Response {
            status: "404 Not Found",
            content_type: TEXT,
            body: "not found\n".into(),
        }
    }
}

/// Answers every request on `listener` with `respond(path)`. Probes and
/// scrapes are tiny GETs: one read, one answer, close.
pub async fn serve<F>(listener: TcpListener, respond: F)
where
    F: Fn(&str) -> Response + Send + Sync + 'static,
{
    let respond = Arc::new(respond);
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let respond = respond.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await
            else {
                return;
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let r = respond(path);
            let head = format!(
                "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                r.status,
                r.content_type,
                r.body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(r.body.as_bytes()).await;
        });
    }
}

/// JSON logs on stdout, filtered by `MAILROUTE_LOG` (default `info`).
pub fn init_json_logs() {
    tracing_subscriber::fmt()
        .json()
        .event_format(json::JsonLines::default())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MAILROUTE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
}

/// Resolves on SIGTERM (Kubernetes) or SIGINT.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
