//! The relay's answers on the operations port: `/metrics` (Prometheus
//! text), `/healthz`, and `/readyz` (ready once a table is loaded, until a
//! SIGTERM).

use crate::Shared;
use ops::Response;
use std::sync::Arc;
use tokio::net::TcpListener;

pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    ops::serve(listener, move |path| respond(&shared, path)).await
}

fn respond(shared: &Shared, path: &str) -> Response {
    match path {
        "/healthz" => Response::ok(ops::TEXT, "ok\n"),
        "/readyz" => match (shared.tables.current(), shared.is_leaving()) {
            (_, true) if shared.is_draining() => Response::unavailable("not ready: draining\n"),
            (_, true) => Response::unavailable("not ready: shutting down, still accepting\n"),
            (Some(t), false) => Response::ok(ops::TEXT, format!("ready: table {}\n", t.version)),
            (None, false) => Response::unavailable("not ready: no routing table loaded\n"),
        },
        "/metrics" => Response::ok(ops::PROMETHEUS, shared.metrics.render(&shared.tables)),
        _ => Response::not_found(),
    }
}
