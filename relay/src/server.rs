//! Accepting connections: the PROXY header when configured, the
//! per-client connection limit, one task per session.

use crate::reply::{reply, to_bytes};
use crate::session::Port;
use crate::{Shared, proxy, session};
use std::net::IpAddr;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// Counts a client's connections while it is held.
struct ClientSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl ClientSlot {
    fn take(shared: &Arc<Shared>, ip: IpAddr) -> Option<ClientSlot> {
        let mut clients = shared.clients.lock().expect("client table lock");
        let n = clients.entry(ip).or_default();
        if *n >= shared.config.max_connections_per_client {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            shared: shared.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut clients = self.shared.clients.lock().expect("client table lock");
        if let Some(n) = clients.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                clients.remove(&self.ip);
            }
        }
    }
}

/// Accepts port-25 sessions until draining starts; the listener is closed
/// then, so new connections are refused while sessions finish.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    serve_on(listener, shared, Port::Smtp).await
}

/// [`serve`] for the given service (submission on 587, 465).
pub async fn serve_on(listener: TcpListener, shared: Arc<Shared>, port: Port) {
    let mut drain = shared.drain_signal();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = drain.wait_for(|d| *d) => return,
        };
        let (mut stream, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let client = if shared.config.proxy_protocol {
                let header = proxy::read_client(&mut stream);
                match tokio::time::timeout(shared.config.command_timeout, header).await {
                    Ok(Ok(client)) => client.unwrap_or(peer.ip()),
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, error = %e, "connection without a valid PROXY header closed");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "no PROXY header in time; connection closed");
                        return;
                    }
                }
            } else {
                peer.ip()
            };
            let Some(_slot) = ClientSlot::take(&shared, client) else {
                let r = reply(
                    421,
                    "4.7.0",
                    "Too many connections from your address; try again later",
                );
                let _ = stream.write_all(&to_bytes(&r)).await;
                return;
            };
            session::run_on(stream, client, shared, port).await;
        });
    }
}
