//! Test support for the operator and the relay (a dev-dependency only):
//! - [`mock_api`]: a tower-test API server that records every request, so a
//!   test asserts the exact sequence, method, path and body;
//! - [`fake_cluster`]: a mocked API server with just enough state (lists,
//!   quiet watches, Leases) to run the operator as a whole;
//! - [`rbac`]: what a ServiceAccount may do under the RBAC manifests in
//!   `deploy/`, so a test proves every recorded request would be allowed;
//! - [`mta`]: private Postfix and Exim instances, real MTAs as the relay's
//!   peers and the importers' reference.

pub mod fake_cluster;
pub mod mock_api;
pub mod mta;
pub mod rbac;

pub use fake_cluster::{FakeCluster, Seen};
pub use mock_api::{Recorded, Responder, accept_all, mock_api};
pub use rbac::Grants;

/// A file of the repository, by its path from the workspace root.
pub fn repo_file(path: &str) -> std::path::PathBuf {
    let testkit = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    testkit
        .parent()
        .expect("testkit is in the workspace")
        .join(path)
}

/// A plain HTTP GET of `path` (an ops endpoint: `/metrics`, `/readyz`), the
/// whole response as text, status line first.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}
