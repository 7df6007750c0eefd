//! Helpers for the in-cluster half of the suite (`e2e/run.sh cluster`): the
//! chart's release, sink Deployments, pods and their logs, the relay's
//! NodePort, the leader, and a routing set that sends mail to the sinks.

use crate::{FIELD_MANAGER, apply, objects_from_yaml};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What `e2e/run.sh cluster` installed, from its environment.
pub struct Release {
    pub client: Client,
    /// Without kube's retries: a pod's 503 is an answer here, not a
    /// transient failure to retry for minutes.
    pub plain: Client,
    /// The release namespace: the relay serves this namespace's table.
    pub namespace: String,
    pub relay: String,
    pub operator: String,
    pub sink_image: String,
}

pub fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: run e2e/run.sh cluster"))
}

impl Release {
    pub async fn from_env() -> Release {
        let mut config = kube::Config::infer().await.expect("a kubeconfig");
        config.default_retry = false;
        Release {
            client: Client::try_default().await.expect("a cluster"),
            plain: Client::try_from(config).expect("a client"),
            namespace: env("E2E_RELEASE_NAMESPACE"),
            relay: env("E2E_RELAY_SERVICE"),
            operator: env("E2E_OPERATOR_DEPLOYMENT"),
            sink_image: env("E2E_SINK_IMAGE"),
        }
    }

    /// The relay Service's NodePort on the node's address: reachable from
    /// the machine running the suite, balanced over the relay pods by the
    /// cluster's Service proxy like any client's traffic.
    pub async fn relay_node_port(&self) -> SocketAddr {
        let service = Api::<Service>::namespaced(self.client.clone(), &self.namespace)
            .get(&self.relay)
            .await
            .unwrap();
        let port = service
            .spec
            .and_then(|s| s.ports)
            .and_then(|p| p.into_iter().find(|p| p.name.as_deref() == Some("smtp")))
            .and_then(|p| p.node_port)
            .expect("the relay Service has a NodePort (relay.service.type=NodePort)");
        let node = Api::<Node>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .next()
            .expect("a node");
        let ip = node
            .status
            .and_then(|s| s.addresses)
            .and_then(|a| a.into_iter().find(|a| a.type_ == "InternalIP"))
            .expect("an InternalIP")
            .address;
        SocketAddr::new(ip.parse().unwrap(), port as u16)
    }

    /// Applies the chart again as it is installed (`helm upgrade
    /// --reuse-values --force-conflicts`): how an operator of the cluster
    /// puts back an RBAC rule someone removed by hand.
    pub fn reapply_chart(&self) {
        let helm = std::process::Command::new(env("E2E_HELM"))
            .args([
                "upgrade",
                &env("E2E_RELEASE"),
                &crate::repo().join("charts/mailroute").display().to_string(),
            ])
            .args(["-n", &self.namespace, "--reuse-values", "--force-conflicts"])
            .output()
            .unwrap();
        assert!(
            helm.status.success(),
            "helm upgrade: {}",
            String::from_utf8_lossy(&helm.stderr)
        );
    }

    /// The last 200 lines of a pod's log in the release namespace.
    pub async fn pod_log(&self, pod: &str) -> String {
        let params = LogParams {
            tail_lines: Some(200),
            ..Default::default()
        };
        Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .logs(pod, &params)
            .await
            .unwrap()
    }

    pub async fn relay_pods(&self) -> Vec<Pod> {
        pods(
            &self.client,
            &self.namespace,
            "app.kubernetes.io/component=relay",
        )
        .await
    }

    /// The names of the Ready relay pods.
    pub async fn ready_relays(&self) -> Vec<String> {
        let pods = self.relay_pods().await;
        pods.iter()
            .filter(|p| is_ready(p))
            .map(|p| p.name_any())
            .collect()
    }

    pub async fn operator_pods(&self) -> Vec<Pod> {
        pods(
            &self.client,
            &self.namespace,
            "app.kubernetes.io/component=operator",
        )
        .await
    }

    /// The Lease holder's identity (the leader pod's name).
    pub async fn leader(&self) -> Option<String> {
        Api::<Lease>::namespaced(self.client.clone(), &self.namespace)
            .get_opt("mailroute-operator")
            .await
            .unwrap()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
    }

    /// GET on a pod's port through the API server's proxy: (status, body).
    pub async fn pod_get(&self, pod: &str, port: u16, path: &str) -> (u16, String) {
        pod_get(&self.plain, &self.namespace, pod, port, path).await
    }
}

/// Pods of `ns` with the label selector, sorted by name.
pub async fn pods(client: &Client, ns: &str, selector: &str) -> Vec<Pod> {
    let mut pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items;
    pods.sort_by_key(|p| p.name_any());
    pods
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// GET on a pod's port through the API server's proxy: (status, body).
/// `client` must not retry (Release::plain).
pub async fn pod_get(client: &Client, ns: &str, pod: &str, port: u16, path: &str) -> (u16, String) {
    let request = http::Request::get(format!(
        "/api/v1/namespaces/{ns}/pods/{pod}:{port}/proxy{path}"
    ))
    .body(Vec::new())
    .unwrap();
    match client.request_text(request).await {
        Ok(body) => (200, body),
        Err(kube::Error::Api(e)) => (e.code, e.message),
        Err(e) => (0, e.to_string()),
    }
}

/// A sink Deployment and Service named `sink-NAME` in `ns` (replicas 1),
/// ready when this returns.
pub async fn start_sink(client: &Client, ns: &str, name: &str, image: &str) {
    let app = format!("sink-{name}");
    let body = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": app},
        "spec": {
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "sink",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "args": [name, "0.0.0.0:2525"],
                        "ports": [{"containerPort": 2525, "name": "smtp"}],
                        "readinessProbe": {"tcpSocket": {"port": "smtp"}, "periodSeconds": 1},
                        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}}
                    }]
                }
            }
        }
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Api::<Deployment>::namespaced(client.clone(), ns)
        .patch(&app, &params, &Patch::Apply(body))
        .await
        .unwrap();
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": app},
        "spec": {"selector": {"app": app}, "ports": [{"name": "smtp", "port": 2525, "targetPort": "smtp"}]}
    });
    Api::<Service>::namespaced(client.clone(), ns)
        .patch(&app, &params, &Patch::Apply(service))
        .await
        .unwrap();
    wait_deployment_ready(client, ns, &app, Duration::from_secs(120)).await;
}

/// Waits until every replica of the Deployment is updated and ready.
pub async fn wait_deployment_ready(client: &Client, ns: &str, name: &str, within: Duration) {
    let api = Api::<Deployment>::namespaced(client.clone(), ns);
    let start = Instant::now();
    loop {
        let d = api.get(name).await.unwrap();
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = d.status.clone().unwrap_or_default();
        let ready = status.ready_replicas.unwrap_or(0);
        let updated = status.updated_replicas.unwrap_or(0);
        let total = status.replicas.unwrap_or(0);
        let observed = status.observed_generation >= d.metadata.generation;
        if observed && ready >= want && updated >= want && total == want {
            return;
        }
        assert!(
            start.elapsed() < within,
            "{ns}/{name}: {ready}/{want} ready, {updated} updated, {total} in all after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The subjects a sink logged (one line per message it accepted).
pub async fn sink_subjects(client: &Client, ns: &str, name: &str) -> Vec<String> {
    sink_deliveries(client, ns, name)
        .await
        .into_iter()
        .map(|(subject, _)| subject)
        .collect()
}

/// Every message sink `name` logged: its subject and recipients.
pub async fn sink_deliveries(client: &Client, ns: &str, name: &str) -> Vec<(String, Vec<String>)> {
    let pods_api = Api::<Pod>::namespaced(client.clone(), ns);
    let mut out = Vec::new();
    for pod in pods(client, ns, &format!("app=sink-{name}")).await {
        let log = pods_api
            .logs(&pod.name_any(), &LogParams::default())
            .await
            .unwrap_or_default();
        out.extend(
            log.lines()
                .filter_map(|l| Some((subject_of(l)?, recipients_of(l)?))),
        );
    }
    out
}

/// `sink a: from <x> to ["y", "z"] (plain, "SUBJECT")` → [y, z].
fn recipients_of(line: &str) -> Option<Vec<String>> {
    let (_, rest) = line.split_once(" to [")?;
    let (list, _) = rest.split_once("] (")?;
    Some(
        list.split(", ")
            .map(|r| r.trim_matches('"').to_owned())
            .collect(),
    )
}

/// `sink a: from <x> to ["y"] (plain, "SUBJECT")` → SUBJECT.
fn subject_of(line: &str) -> Option<String> {
    let (_, rest) = line.split_once(": from <")?;
    let start = rest.rfind(", \"")? + 3;
    rest[start..].strip_suffix("\")").map(str::to_owned)
}

/// The routing set the in-cluster tests share, in the release namespace:
/// example.test is authoritative; ann routes to sink a, bob to sink b (in
/// `sinks_ns`), everything else at example.test is unknown.
pub async fn apply_routing(release: &Release, sinks_ns: &str) {
    let sink = |name: &str| format!("[sink-{name}.{sinks_ns}.svc.cluster.local]:2525");
    let objects = objects_from_yaml(&format!(
        r#"
apiVersion: mailroute.io/v1alpha1
kind: AddressSpace
metadata: {{name: e2e-example-test}}
spec: {{domain: example.test, type: Authoritative}}
---
apiVersion: mailroute.io/v1alpha1
kind: SmtpConnector
metadata: {{name: e2e-sink-a}}
spec:
  addressSpaces: [{{domain: a.example.test}}]
  smartHosts: ["{a}"]
---
apiVersion: mailroute.io/v1alpha1
kind: SmtpConnector
metadata: {{name: e2e-sink-b}}
spec:
  addressSpaces: [{{domain: b.example.test}}]
  smartHosts: ["{b}"]
---
apiVersion: mailroute.io/v1alpha1
kind: MailContact
metadata: {{name: e2e-ann}}
spec: {{targetAddress: ann@a.example.test, proxyAddresses: [ann@example.test]}}
---
apiVersion: mailroute.io/v1alpha1
kind: MailContact
metadata: {{name: e2e-bob}}
spec: {{targetAddress: bob@b.example.test, proxyAddresses: [bob@example.test]}}
"#,
        a = sink("a"),
        b = sink("b")
    ));
    apply(&release.client, &release.namespace, &objects)
        .await
        .unwrap();
    settle(release).await;
}

/// Sinks a and b in a throw-away namespace, the routing set to them, and
/// the relays Ready and serving it.
pub async fn sinks_and_routing(release: &Release) -> crate::TestNamespace {
    let sinks = crate::TestNamespace::create("e2e-sinks").await.unwrap();
    for name in ["a", "b"] {
        start_sink(&sinks.client, &sinks.name, name, &release.sink_image).await;
    }
    apply_routing(release, &sinks.name).await;
    // A relay turns Ready only once its namespace has a table.
    wait_deployment_ready(
        &release.client,
        &release.namespace,
        &release.relay,
        Duration::from_secs(120),
    )
    .await;
    settle(release).await;
    sinks
}

/// Points e2e-ann at sink b (the routing set points it at sink a).
pub async fn move_ann_to_b(release: &Release) {
    crate::retarget_contact(
        &release.client,
        &release.namespace,
        "e2e-ann",
        "ann@b.example.test",
        &["ann@example.test"],
    )
    .await
    .unwrap();
}

/// The published table's version (its manifest's content hash).
pub async fn published_version(release: &Release) -> String {
    crate::table_version(&release.client, &release.namespace)
        .await
        .unwrap()
}

/// Waits until the operator has compiled the release namespace as it is
/// (every object's status is current, so the table is published) and every
/// Ready relay pod serves that table.
pub async fn settle(release: &Release) {
    crate::wait_for_status(&release.client, &release.namespace, Duration::from_secs(60))
        .await
        .unwrap();
    let version = published_version(release).await;
    let start = Instant::now();
    loop {
        let mut behind = Vec::new();
        for pod in release.relay_pods().await.iter().filter(|p| is_ready(p)) {
            let (_, body) = release.pod_get(&pod.name_any(), 9090, "/readyz").await;
            if !body.contains(&version) {
                behind.push(pod.name_any());
            }
        }
        if behind.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "relay pods {behind:?} never served {version}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until mail for both sinks goes through the relay's NodePort ten
/// times in a row for each. A sink's Service is new in every test: until
/// the cluster's DNS and kube-proxy know it, a relay pod answers 451 (a
/// correct, temporary refusal) — setup, not what a load test measures.
/// The NodePort picks a relay pod per connection, so twenty in a row
/// reach every one of two pods but for a chance of 2^-19.
pub async fn wait_until_routed(relay: SocketAddr) {
    let relay = relay.to_string();
    let start = Instant::now();
    let mut in_a_row = 0;
    let mut n = 0;
    while in_a_row < 20 {
        n += 1;
        let to = ["ann@example.test", "bob@example.test"][n % 2];
        let subject = format!("warm-up-{n}");
        match crate::send(&relay, "sender@example.org", to, &subject).await {
            Ok((_, Some(done))) if done.starts_with("250") => in_a_row += 1,
            other => {
                in_a_row = 0;
                assert!(
                    start.elapsed() < Duration::from_secs(90),
                    "mail for the sinks never went through the relay: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Removes the first rule naming `resource` from a Role or ClusterRole, as
/// someone editing RBAC by hand would ([`Release::reapply_chart`] puts it
/// back).
pub async fn cut_rule<K>(
    api: &Api<K>,
    name: &str,
    rules: &[k8s_openapi::api::rbac::v1::PolicyRule],
    resource: &str,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let index = rules
        .iter()
        .position(|r| {
            r.resources
                .as_ref()
                .is_some_and(|res| res.iter().any(|x| x == resource))
        })
        .unwrap_or_else(|| panic!("no rule for {resource} in {name}"));
    let ops = json!([{"op": "remove", "path": format!("/rules/{index}")}]);
    let patch = Patch::<()>::Json(serde_json::from_value(ops).unwrap());
    api.patch(name, &PatchParams::default(), &patch)
        .await
        .unwrap();
}

/// Waits (10 s at most) until sink `sink` in `sinks_ns` logged a message
/// with `subject`.
pub async fn wait_for_subject(client: &Client, sinks_ns: &str, sink: &str, subject: &str) {
    let start = Instant::now();
    while !sink_subjects(client, sinks_ns, sink)
        .await
        .iter()
        .any(|s| s == subject)
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "sink {sink} never logged {subject:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn recipients_from_sink_lines() {
        assert_eq!(
            super::recipients_of(
                r#"sink a: from <x@y> to ["ann@a.example.test", "carl@a.example.test"] (plain, "s")"#
            ),
            Some(vec![
                "ann@a.example.test".to_owned(),
                "carl@a.example.test".to_owned()
            ])
        );
    }

    #[test]
    fn subjects_from_sink_lines() {
        assert_eq!(
            super::subject_of(
                r#"sink a: from <x@y> to ["ann@a.example.test"] (plain, "load-1-2")"#
            )
            .as_deref(),
            Some("load-1-2")
        );
        assert_eq!(super::subject_of("sink a listening on 0.0.0.0:2525"), None);
    }
}
