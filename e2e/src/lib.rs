//! Helpers for the end-to-end suite: a throw-away namespace, server-side
//! apply of manifest objects, waiting for the operator's status, reading
//! the published table back, local processes (relay, sinks) and a tiny
//! SMTP client. Everything talks to the cluster `KUBECONFIG` points at.

pub mod cluster;
pub mod load;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::core::{DynamicObject, ObjectMeta};
use kube::{Client, Resource, ResourceExt};
use routing::Objects;
use routing::crd::{AddressSpace, MailContact, RecipientPolicy, RoutingTable, SmtpConnector};
use routing::table::configmaps::{files_of, table_selector};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub const FIELD_MANAGER: &str = "mailroute-e2e";
pub const TABLE: &str = "mailroute-table";

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A binary built by `e2e/run.sh`, named by an environment variable.
pub fn binary(var: &str) -> PathBuf {
    PathBuf::from(std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: run e2e/run.sh")))
}

/// A namespace created for one test and deleted when dropped.
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
}

impl TestNamespace {
    pub async fn create(prefix: &str) -> Result<TestNamespace> {
        let client = Client::try_default()
            .await
            .context("no cluster: is KUBECONFIG set?")?;
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([(
                    "mailroute.io/e2e".to_owned(),
                    "true".to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        Ok(TestNamespace { client, name })
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var("MAILROUTE_E2E_KEEP").is_ok() {
            eprintln!("keeping namespace {}", self.name);
            return;
        }
        // Best effort, in the background: the run script deletes leftovers by label.
        let _ = Command::new("kubectl")
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Applies every object (server-side apply) into `ns`.
pub async fn apply(client: &Client, ns: &str, objects: &Objects) -> Result<()> {
    async fn each<K>(client: &Client, ns: &str, items: &[K]) -> Result<()>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(client.clone(), ns);
        for item in items {
            let mut o = item.clone();
            let meta = o.meta_mut();
            meta.namespace = Some(ns.to_owned());
            meta.creation_timestamp = None;
            meta.generation = None;
            let name = o.name_any();
            let mut body = serde_json::to_value(&o)?;
            body["apiVersion"] = K::api_version(&()).into();
            body["kind"] = K::kind(&()).into();
            if let Some(m) = body.get_mut("metadata").and_then(Value::as_object_mut) {
                m.retain(|k, _| {
                    k == "name" || k == "namespace" || k == "labels" || k == "annotations"
                });
            }
            body.as_object_mut().map(|m| m.remove("status"));
            api.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
            .with_context(|| format!("applying {}/{name}", K::kind(&())))?;
        }
        Ok(())
    }
    each(client, ns, &objects.address_spaces).await?;
    each(client, ns, &objects.policies).await?;
    each(client, ns, &objects.connectors).await?;
    each(client, ns, &objects.contacts).await?;
    each(client, ns, &objects.grants).await?;
    Ok(())
}

/// Objects from YAML text (one namespace), read as `mailroute check` reads files.
pub fn objects_from_yaml(text: &str) -> Objects {
    // A directory per call (tests run side by side), removed after.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("mailroute-e2e-{}-{call}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("objects.yaml");
    std::fs::write(&path, text).unwrap();
    let read = manifests::read(&[path]);
    let _ = std::fs::remove_dir_all(&dir);
    read.unwrap().single(None).unwrap().1
}

/// Points a contact at a new target by server-side apply, as a user's
/// `kubectl apply` of the changed object would.
pub async fn retarget_contact(
    client: &Client,
    ns: &str,
    name: &str,
    target: &str,
    proxy_addresses: &[&str],
) -> Result<()> {
    Api::<MailContact>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(serde_json::json!({
                "apiVersion": "mailroute.io/v1alpha1",
                "kind": "MailContact",
                "metadata": {"name": name},
                "spec": {"targetAddress": target, "proxyAddresses": proxy_addresses}
            })),
        )
        .await?;
    Ok(())
}

/// Sends `probe-N` messages for ann@example.test through the relay until
/// `arrived` says one reached the new next hop; returns the time since
/// `since` (the change). Panics once `within` has passed.
pub async fn probe_until<F, Fut>(
    relay: &str,
    since: Instant,
    within: Duration,
    mut arrived: F,
) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut n = 0;
    loop {
        n += 1;
        let subject = format!("probe-{n}");
        let _ = send(relay, "sender@example.org", "ann@example.test", &subject).await;
        if arrived().await {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < within,
            "the relay never followed the change within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deletes every object (by name) from `ns`; missing ones are fine.
pub async fn delete(client: &Client, ns: &str, objects: &Objects) -> Result<()> {
    async fn each<K>(client: &Client, ns: &str, items: &[K]) -> Result<()>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(client.clone(), ns);
        for item in items {
            match api.delete(&item.name_any(), &Default::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
    each(client, ns, &objects.grants).await?;
    each(client, ns, &objects.contacts).await?;
    each(client, ns, &objects.connectors).await?;
    each(client, ns, &objects.policies).await?;
    each(client, ns, &objects.address_spaces).await?;
    Ok(())
}

/// The namespace's objects as the API server has them now.
pub async fn read_back(client: &Client, ns: &str) -> Result<Objects> {
    let lp = ListParams::default();
    Ok(Objects {
        address_spaces: Api::<AddressSpace>::namespaced(client.clone(), ns)
            .list(&lp)
            .await?
            .items,
        policies: Api::<RecipientPolicy>::namespaced(client.clone(), ns)
            .list(&lp)
            .await?
            .items,
        contacts: Api::<MailContact>::namespaced(client.clone(), ns)
            .list(&lp)
            .await?
            .items,
        connectors: Api::<SmtpConnector>::namespaced(client.clone(), ns)
            .list(&lp)
            .await?
            .items,
        ..Objects::default()
    })
}

/// One object's conditions as (type, status, reason), and whether they
/// describe its current generation.
pub fn conditions_of(object: &Value) -> (bool, Vec<(String, String, String)>) {
    let generation = &object["metadata"]["generation"];
    let status = &object["status"];
    let current = !generation.is_null() && status["observedGeneration"] == *generation;
    let list = status["conditions"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    let s = |k: &str| c[k].as_str().unwrap_or("").to_owned();
                    (s("type"), s("status"), s("reason"))
                })
                .collect()
        })
        .unwrap_or_default();
    (current, list)
}

/// Every mailroute object of the namespace, as JSON, by "Kind/name".
pub async fn statuses(client: &Client, ns: &str) -> Result<BTreeMap<String, Value>> {
    let objects = read_back(client, ns).await?;
    let mut out = BTreeMap::new();
    fn add<K: Resource<DynamicType = ()> + serde::Serialize>(
        out: &mut BTreeMap<String, Value>,
        items: &[K],
    ) {
        for o in items {
            let key = format!(
                "{}/{}",
                K::kind(&()),
                o.meta().name.clone().unwrap_or_default()
            );
            out.insert(key, serde_json::to_value(o).expect("serializable"));
        }
    }
    add(&mut out, &objects.address_spaces);
    add(&mut out, &objects.policies);
    add(&mut out, &objects.contacts);
    add(&mut out, &objects.connectors);
    Ok(out)
}

/// Waits until every object's status describes its current generation.
pub async fn wait_for_status(
    client: &Client,
    ns: &str,
    timeout: Duration,
) -> Result<BTreeMap<String, Value>> {
    let start = Instant::now();
    loop {
        let all = statuses(client, ns).await?;
        if !all.is_empty() && all.values().all(|o| conditions_of(o).0) {
            return Ok(all);
        }
        if start.elapsed() > timeout {
            let waiting: Vec<&String> = all
                .iter()
                .filter(|(_, o)| !conditions_of(o).0)
                .map(|(k, _)| k)
                .collect();
            bail!("no current status after {timeout:?} on {waiting:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The published table's files, read back from its ConfigMaps.
pub async fn published_files(client: &Client, ns: &str) -> Result<BTreeMap<String, Vec<u8>>> {
    let cms = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&table_selector(TABLE)))
        .await?
        .items;
    Ok(files_of(&cms))
}

/// The namespace's RoutingTable, if the operator made one.
pub async fn routing_table(client: &Client, ns: &str) -> Result<Option<RoutingTable>> {
    Ok(Api::<RoutingTable>::namespaced(client.clone(), ns)
        .get_opt(TABLE)
        .await?)
}

/// A RoutingTable condition's (status, reason, message).
pub fn table_condition(t: &RoutingTable, type_: &str) -> Option<(String, String, String)> {
    let c = t
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until the RoutingTable shows `generation` (any, if None) and
/// Propagated has `status`; the table as it then was.
pub async fn wait_for_propagation(
    client: &Client,
    ns: &str,
    generation: Option<&str>,
    status: &str,
    timeout: Duration,
) -> Result<RoutingTable> {
    let start = Instant::now();
    loop {
        let table = routing_table(client, ns).await?;
        if let Some(t) = &table {
            let shown = t.status.as_ref().and_then(|s| s.generation.as_deref());
            let propagated = table_condition(t, "Propagated");
            if generation.is_none_or(|g| shown == Some(g))
                && propagated.as_ref().is_some_and(|p| p.0 == status)
            {
                return Ok(t.clone());
            }
        }
        if start.elapsed() > timeout {
            bail!(
                "no Propagated={status} for generation {generation:?} after {timeout:?}: {:?}",
                table.and_then(|t| t.status)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The version (content hash) of the namespace's published table.
pub async fn table_version(client: &Client, ns: &str) -> Result<String> {
    let files = published_files(client, ns).await?;
    let manifest = files
        .get(routing::table::MANIFEST_KEY)
        .context("no table published")?;
    Ok(routing::table::Manifest::from_json(manifest)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .version)
}

/// Events of the namespace as (type, reason, regarding name).
pub async fn events(client: &Client, ns: &str) -> Result<Vec<(String, String, String)>> {
    let ar = kube::api::ApiResource::erase::<k8s_openapi::api::events::v1::Event>(&());
    let list = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar)
        .list(&ListParams::default())
        .await?;
    Ok(list
        .items
        .iter()
        .map(|e| {
            let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
            (
                s(&e.data["type"]),
                s(&e.data["reason"]),
                s(&e.data["regarding"]["name"]),
            )
        })
        .collect())
}

/// A local process killed when dropped.
pub struct Process(pub Child);

impl Process {
    pub fn start(program: &PathBuf, args: &[&str]) -> Result<Process> {
        let child = Command::new(program)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(Process(child))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A plain SMTP client: one command, one (last line of its) reply.
pub struct Smtp {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Smtp {
    /// Connects and reads the greeting.
    pub async fn connect(addr: &str) -> Result<(Smtp, String)> {
        let (r, w) = TcpStream::connect(addr).await?.into_split();
        let mut s = Smtp {
            r: BufReader::new(r),
            w,
        };
        let greeting = s.reply().await?;
        Ok((s, greeting))
    }

    /// Sends `line` (CRLF added) and reads the reply.
    pub async fn command(&mut self, line: &str) -> Result<String> {
        self.w.write_all(format!("{line}\r\n").as_bytes()).await?;
        self.reply().await
    }

    /// Sends raw bytes, no reply read (message data).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        Ok(self.w.write_all(bytes).await?)
    }

    pub async fn reply(&mut self) -> Result<String> {
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).await? == 0 {
                bail!("connection closed");
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(line.trim_end().to_owned());
            }
        }
    }
}

/// Sends one message; returns the reply to RCPT and, when accepted, to the final dot.
pub async fn send(
    relay: &str,
    from: &str,
    to: &str,
    subject: &str,
) -> Result<(String, Option<String>)> {
    let (mut replies, done) = send_to(relay, from, &[to], subject).await?;
    Ok((replies.remove(0), done))
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Runs kubectl (against `KUBECONFIG`); its stdout. Panics on failure.
pub fn kubectl(args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .args(args)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One message to several recipients in one transaction: each RCPT's
/// reply, and the reply after the data when any recipient was accepted.
pub async fn send_to(
    relay: &str,
    from: &str,
    to: &[&str],
    subject: &str,
) -> Result<(Vec<String>, Option<String>)> {
    let (mut smtp, _) = Smtp::connect(relay).await?;
    smtp.command("EHLO e2e.test").await?;
    smtp.command(&format!("MAIL FROM:<{from}>")).await?;
    let mut replies = Vec::new();
    for t in to {
        replies.push(smtp.command(&format!("RCPT TO:<{t}>")).await?);
    }
    if !replies.iter().any(|r| r.starts_with('2')) {
        smtp.command("QUIT").await?;
        return Ok((replies, None));
    }
    smtp.command("DATA").await?;
    let body = format!("Subject: {subject}\r\nFrom: <{from}>\r\n\r\nmailroute e2e\r\n.\r\n");
    smtp.send_raw(body.as_bytes()).await?;
    let done = smtp.reply().await?;
    smtp.command("QUIT").await?;
    Ok((replies, Some(done)))
}

/// Appends a measured figure to E2E_FIGURES (the run script prints them
/// all at the end, for the docs), and prints it.
pub fn record_figure(line: &str) {
    eprintln!("figure: {line}");
    if let Ok(path) = std::env::var("E2E_FIGURES") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("E2E_FIGURES");
        writeln!(f, "{line}").expect("E2E_FIGURES");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn objects_from_yaml_reads_them_and_leaves_no_file() {
        let objects = super::objects_from_yaml(
            "apiVersion: mailroute.io/v1alpha1\nkind: MailContact\nmetadata: {name: ann}\n\
             spec: {proxyAddresses: [ann@example.com], targetAddress: ann@mbx.example.com}\n",
        );
        assert_eq!(objects.contacts.len(), 1);
        let prefix = format!("mailroute-e2e-{}", std::process::id());
        let left = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .count();
        assert_eq!(left, 0, "objects_from_yaml left a directory behind");
    }
}
