//! Who may send, on the chart as installed (e2e/run.sh cluster installs it
//! with STARTTLS, the submission ports, an htpasswd Secret e2e-smtp-users
//! and relay.auth.cacheSeconds=10): the documented example application
//! (deploy/examples/app-sends-mail.yaml) sends as its ServiceAccount with
//! a projected token; a sender it is not granted gets 553; a pod without a
//! token reaches only accepted domains; AUTH before STARTTLS gets 538;
//! repeated bad passwords are throttled; deleting the ServiceAccount stops
//! it within the cache lifetime, and its grant says so.

use e2e::cluster::*;
use e2e::*;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, LogParams, PostParams};
use kube::{Client, ResourceExt};
use routing::crd::SendingGrant;
use serde_json::json;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The cache lifetime e2e/cluster.sh installs the chart with.
const CACHE_SECONDS: u64 = 10;

/// Runs a pod to completion and returns its log. `account`: run as this
/// ServiceAccount with its token for the audience mailroute at
/// /var/run/secrets/mailroute/token; None: no token at all.
async fn client_pod(
    client: &Client,
    ns: &str,
    name: &str,
    account: Option<&str>,
    script: &str,
) -> String {
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let mut spec = json!({
        "restartPolicy": "Never",
        "automountServiceAccountToken": false,
        "containers": [{
            "name": "client",
            "image": env("E2E_CLIENT_IMAGE"),
            "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", script]
        }]
    });
    if let Some(sa) = account {
        spec["serviceAccountName"] = sa.into();
        spec["volumes"] = json!([{"name": "mail-token", "projected": {"sources": [
            {"serviceAccountToken": {"audience": "mailroute", "expirationSeconds": 3600, "path": "token"}}]}}]);
        spec["containers"][0]["volumeMounts"] =
            json!([{"name": "mail-token", "mountPath": "/var/run/secrets/mailroute"}]);
    }
    let pod: Pod =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let start = Instant::now();
    loop {
        let phase = pods.get(name).await.unwrap().status.and_then(|s| s.phase);
        if matches!(phase.as_deref(), Some("Succeeded" | "Failed")) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "pod {name} did not finish"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    pods.logs(name, &LogParams::default()).await.unwrap()
}

/// deploy/examples/app-sends-mail.yaml as a user applies it, moved into the
/// test's namespaces, with the kit's image and a send every 2 seconds.
fn apply_example(apps_ns: &str, release_ns: &str, relay: &str) {
    let text = std::fs::read_to_string(repo().join("deploy/examples/app-sends-mail.yaml")).unwrap();
    let text = text
        .replace("namespace: billing", &format!("namespace: {apps_ns}"))
        .replace("namespace: mailroute", &format!("namespace: {release_ns}"))
        .replace(
            "image: curlimages/curl:8.11.1",
            &format!(
                "image: {}\n          imagePullPolicy: IfNotPresent",
                env("E2E_CLIENT_IMAGE")
            ),
        )
        .replace(
            "mailroute-relay.mailroute.svc.cluster.local:587",
            &format!("{relay}:587"),
        )
        .replace("value: \"300\"", "value: \"2\"");
    let mut kubectl = Command::new("kubectl")
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    kubectl
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    assert!(
        kubectl.wait().unwrap().success(),
        "kubectl apply of the example"
    );
}

async fn app_log(client: &Client, ns: &str) -> String {
    let mut all = String::new();
    for pod in pods(client, ns, "app=billing").await {
        let api = Api::<Pod>::namespaced(client.clone(), ns);
        all.push_str(
            &api.logs(&pod.name_any(), &LogParams::default())
                .await
                .unwrap_or_default(),
        );
    }
    all
}

#[tokio::test]
#[cfg_attr(
    not(e2e_cluster),
    ignore = "needs the chart installed on a cluster: e2e/run.sh cluster"
)]
async fn applications_send_as_their_service_account_and_only_as_granted() {
    let release = Release::from_env().await;
    let sinks = sinks_and_routing(&release).await;
    let apps = TestNamespace::create("e2e-apps").await.unwrap();
    let relay = format!("{}.{}.svc.cluster.local", release.relay, release.namespace);
    // partner.example is outside: a connector to sink b, reachable only by grant.
    let outside = objects_from_yaml(&format!(
        r#"
apiVersion: mailroute.io/v1alpha1
kind: SmtpConnector
metadata: {{name: e2e-partner}}
spec:
  addressSpaces: [{{domain: partner.example}}]
  smartHosts: ["[sink-b.{sinks}.svc.cluster.local]:2525"]
---
apiVersion: mailroute.io/v1alpha1
kind: SendingGrant
metadata: {{name: e2e-users}}
spec:
  principals: [{{passwordSecret: {{name: e2e-smtp-users}}}}]
  relayDomains: [partner.example]
"#,
        sinks = sinks.name
    ));
    apply(&release.client, &release.namespace, &outside)
        .await
        .unwrap();
    apply_example(&apps.name, &release.namespace, &relay);
    settle(&release).await;

    // The example application: invoices reach sink b through its grant.
    wait_deployment_ready(
        &apps.client,
        &apps.name,
        "billing",
        Duration::from_secs(120),
    )
    .await;
    let start = Instant::now();
    while !sink_subjects(&sinks.client, &sinks.name, "b")
        .await
        .iter()
        .any(|s| s.starts_with("invoice"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no invoice arrived: {}",
            app_log(&apps.client, &apps.name).await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The same ServiceAccount, as a sender it is not granted: 553.
    let auth = format!(
        "curl -sS --ssl-reqd --insecure smtp://{relay}:587 --user \"billing:$(cat /var/run/secrets/mailroute/token)\" \
         --login-options AUTH=PLAIN --mail-rcpt customer@partner.example -T /tmp/m"
    );
    let script = format!(
        "printf 'Subject: as-ceo\\r\\n\\r\\nx\\r\\n' > /tmp/m; {auth} --mail-from ceo@example.com 2>&1; echo exit=$?"
    );
    let log = client_pod(&apps.client, &apps.name, "as-ceo", Some("billing"), &script).await;
    assert!(log.contains("553") && log.contains("exit=55"), "{log}");

    // Without a token: accepted domains only; AUTH in cleartext: 538.
    let script = format!(
        "printf 'Subject: no-token\\r\\n\\r\\nx\\r\\n' > /tmp/m; \
         curl -sS smtp://{relay}:25 --mail-from app@example.com --mail-rcpt customer@partner.example -T /tmp/m 2>&1; echo outside-exit=$?; \
         curl -sS smtp://{relay}:25 --mail-from app@example.com --mail-rcpt ann@example.test -T /tmp/m && echo inside-sent; \
         printf 'EHLO pod\\r\\nAUTH PLAIN AGJpbGxpbmcAeA==\\r\\nQUIT\\r\\n' | nc -w 5 {relay} 25"
    );
    let log = client_pod(&apps.client, &apps.name, "no-token", None, &script).await;
    assert!(
        log.contains("554") && log.contains("outside-exit=55"),
        "{log}"
    );
    assert!(log.contains("inside-sent"), "{log}");
    assert!(log.contains("538 5.7.11 "), "{log}");
    wait_for_subject(&sinks.client, &sinks.name, "a", "no-token").await;

    // Bad passwords, again and again: 535, then 421 from each relay pod
    // that saw more than relay.auth.failureLimit (5) of them.
    let script = format!(
        "printf 'Subject: guess\\r\\n\\r\\nx\\r\\n' > /tmp/m; for i in 1 2 3 4 5 6 7 8 9 10 11 12; do \
         curl -v --ssl-reqd --insecure smtp://{relay}:587 --user alice:guess$i --mail-from a@example.com \
         --mail-rcpt customer@partner.example -T /tmp/m 2>&1 | grep -E '^< (235|535|421)'; done"
    );
    let log = client_pod(&apps.client, &apps.name, "guesses", None, &script).await;
    assert!(log.contains("535"), "{log}");
    assert!(log.contains("421"), "throttled: {log}");

    // The ServiceAccount deleted: its token stops working within the cache
    // lifetime, and its grant is no longer Ready.
    let accounts = Api::<ServiceAccount>::namespaced(apps.client.clone(), &apps.name);
    let sent_before = app_log(&apps.client, &apps.name)
        .await
        .matches(": sent")
        .count();
    accounts
        .delete("billing", &DeleteParams::default())
        .await
        .unwrap();
    let deleted = Instant::now();
    loop {
        let log = app_log(&apps.client, &apps.name).await;
        let after: Vec<&str> = log.lines().filter(|l| l.contains("invoice")).collect();
        if after.last().is_some_and(|l| l.contains("not sent")) {
            break;
        }
        assert!(
            deleted.elapsed() < Duration::from_secs(CACHE_SECONDS + 20),
            "still sending {}s after the ServiceAccount was deleted (sent before: {sent_before}): {log}",
            deleted.elapsed().as_secs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    record_figure(&format!(
        "ServiceAccount deleted -> its token refused: {:.1} s (cache lifetime {CACHE_SECONDS} s)",
        deleted.elapsed().as_secs_f64()
    ));
    let grants = Api::<SendingGrant>::namespaced(release.client.clone(), &release.namespace);
    let start = Instant::now();
    loop {
        let g = grants.get("billing").await.unwrap();
        let (_, conditions) = conditions_of(&serde_json::to_value(&g).unwrap());
        if conditions
            .iter()
            .any(|(t, s, r)| t == "Ready" && s == "False" && r == "MissingReference")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "grant conditions: {conditions:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    grants
        .delete("billing", &DeleteParams::default())
        .await
        .unwrap();
    delete(&release.client, &release.namespace, &outside)
        .await
        .unwrap();
}
