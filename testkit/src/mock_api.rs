//! A mocked API server (tower-test): every request is recorded so a test
//! can assert the exact sequence, method, path and body.

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub body: Value,
}

pub type Responder = Box<dyn Fn(usize, &Recorded) -> (u16, Value) + Send>;

/// Answers like an API server that accepts everything: the body back.
pub fn accept_all() -> Responder {
    Box::new(|_, r| (200, r.body.clone()))
}

/// A client whose requests are answered by `respond` and recorded; the
/// task returns the record when the client is dropped.
pub fn mock_api(
    respond: Responder,
    default_namespace: &str,
) -> (Client, tokio::task::JoinHandle<Vec<Recorded>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().to_string();
            let path = request.uri().to_string();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap()
            };
            let r = Recorded { method, path, body };
            let (code, mut answer) = respond(seen.len(), &r);
            if code == 200 && answer.is_null() {
                answer =
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200});
            }
            seen.push(r);
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                    .unwrap(),
            );
        }
        seen
    });
    (Client::new(service, default_namespace), task)
}
