//! A mocked API server with just enough state to run the operator as a
//! whole: lists answer what a test put in them (empty otherwise), watches
//! stay open and quiet, the objects a test names can be read, Leases are
//! created and merge-patched as the API server does, and every other write
//! is accepted as sent. Every request is recorded.

use crate::Recorded;
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Every request so far, in order.
pub type Seen = Arc<Mutex<Vec<Recorded>>>;

#[derive(Default)]
pub struct FakeCluster {
    /// By plural resource name (the last path segment of a list).
    lists: BTreeMap<String, Value>,
    /// By the path that reads them (without a query).
    objects: BTreeMap<String, Value>,
    /// Writes whose path contains the key are answered with this error code.
    refused: Vec<(String, u16)>,
}

impl FakeCluster {
    /// A list answers `list` (a `…List` object) for every GET of `plural`.
    pub fn with_list(mut self, plural: &str, list: Value) -> FakeCluster {
        self.lists.insert(plural.to_owned(), list);
        self
    }

    /// A GET of `path` answers `object`.
    pub fn with_object(mut self, path: &str, object: Value) -> FakeCluster {
        self.objects.insert(path.to_owned(), object);
        self
    }

    /// Every write whose path contains `path_part` fails with `code`.
    pub fn refusing(mut self, path_part: &str, code: u16) -> FakeCluster {
        self.refused.push((path_part.to_owned(), code));
        self
    }

    /// Serves the cluster; the client's default namespace is `namespace`.
    pub fn serve(self, namespace: &str) -> (Client, Seen) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let seen = Seen::default();
        let record = seen.clone();
        tokio::spawn(async move {
            let mut open_watches = Vec::new();
            let mut leases: BTreeMap<String, Value> = BTreeMap::new();
            while let Some((request, send)) = handle.next_request().await {
                let method = request.method().to_string();
                let path = request.uri().to_string();
                let bytes = request.into_body().collect_bytes().await.unwrap();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                record.lock().unwrap().push(Recorded {
                    method: method.clone(),
                    path: path.clone(),
                    body: body.clone(),
                });
                let (resource, query) = path.split_once('?').unwrap_or((&path, ""));
                if method == "GET" && query.split('&').any(|p| p == "watch=true") {
                    open_watches.push(send);
                    continue;
                }
                let refusal = self
                    .refused
                    .iter()
                    .find(|(part, _)| method != "GET" && resource.contains(part.as_str()));
                let (code, answer) = match method.as_str() {
                    _ if refusal.is_some() => {
                        let code = refusal.unwrap().1;
                        (
                            code,
                            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "code": code, "message": "refused by the test"}),
                        )
                    }
                    "GET" if resource.contains("/leases/") => leases
                        .get(resource)
                        .map_or((404, not_found()), |l| (200, l.clone())),
                    "GET" => match self.objects.get(resource) {
                        Some(o) => (200, o.clone()),
                        None => {
                            let plural = resource.rsplit('/').next().unwrap();
                            (
                                200,
                                self.lists.get(plural).cloned().unwrap_or_else(empty_list),
                            )
                        }
                    },
                    "POST" | "PATCH" if resource.contains("/leases") => {
                        let key = match method.as_str() {
                            "POST" => {
                                format!("{resource}/{}", body["metadata"]["name"].as_str().unwrap())
                            }
                            _ => resource.to_owned(),
                        };
                        let lease = leases.entry(key).or_insert_with(|| json!({}));
                        // A Lease has no lists: its strategic merge is a JSON merge.
                        json_merge(lease, &body);
                        bump_version(lease);
                        (200, lease.clone())
                    }
                    "POST" | "PATCH" | "PUT" | "DELETE" => {
                        let mut answer = body;
                        if answer.is_object() {
                            bump_version(&mut answer);
                        }
                        (200, answer)
                    }
                    _ => (
                        405,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 405}),
                    ),
                };
                let answer = if answer.is_null() {
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200})
                } else {
                    answer
                };
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                        .unwrap(),
                );
            }
        });
        (Client::new(service, namespace), seen)
    }
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
           "reason": "NotFound", "code": 404, "message": "not found"})
}

fn empty_list() -> Value {
    json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []})
}

fn bump_version(o: &mut Value) {
    let v = o["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1);
    o["metadata"]["resourceVersion"] = json!((v + 1).to_string());
}

/// RFC 7386 JSON merge patch: null removes a key, objects merge, anything
/// else replaces.
pub fn json_merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    json_merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::json_merge;
    use serde_json::json;

    #[test]
    fn merge_patch_as_rfc_7386() {
        let mut t = json!({"a": 1, "spec": {"holder": "x", "keep": true}});
        json_merge(
            &mut t,
            &json!({"spec": {"holder": null, "renew": "now"}, "b": [1]}),
        );
        assert_eq!(
            t,
            json!({"a": 1, "b": [1], "spec": {"keep": true, "renew": "now"}})
        );
    }
}
