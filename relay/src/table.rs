//! Where the routing table comes from, and hot reload.
//!
//! `--table DIR` reads the files `mailroute compile` writes, or a mounted
//! ConfigMap: there every key is a symlink into `..data`, which kubelet swaps
//! atomically, so all files are read through the resolved `..data` target in
//! one go and a half-updated mount is never mixed. The directory is polled;
//! a changed table is verified in full (manifest, every shard's hash) and
//! swapped in atomically; sessions keep the table they started with; an
//! invalid table is refused, logged and counted, and the last good one stays.
//! `--manifests PATH…` compiles CRD YAML in-process once, at start: a file
//! that cannot be read or compiled stops the relay there.

use arc_swap::ArcSwapOption;
use routing::RoutingTable;
use routing::table::{MANIFEST_KEY, load_routing};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// A table ready for sessions.
pub struct Loaded {
    pub routing: RoutingTable,
    /// The manifest's content hash.
    pub version: String,
}

/// What this relay serves, for whoever reports it (`--report-to`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Served {
    /// The version of the table in use, and when it was loaded.
    pub version: Option<String>,
    pub loaded_at: Option<SystemTime>,
    /// Why the last table tried was refused; None after a good load.
    pub refused: Option<String>,
}

/// The current table and what happened to the reloads.
pub struct Tables {
    current: ArcSwapOption<Loaded>,
    served: tokio::sync::watch::Sender<Served>,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Unix seconds of the last reload attempt, and whether it succeeded.
    pub last_reload_unix: AtomicU64,
    pub last_reload_ok: AtomicU64,
}

impl Default for Tables {
    fn default() -> Self {
        Tables {
            current: ArcSwapOption::empty(),
            served: tokio::sync::watch::Sender::new(Served::default()),
            reloads_ok: AtomicU64::default(),
            reloads_failed: AtomicU64::default(),
            last_reload_unix: AtomicU64::default(),
            last_reload_ok: AtomicU64::default(),
        }
    }
}

impl Tables {
    /// Follows what this relay serves: a new value on each load or refusal
    /// that changes it.
    pub fn served(&self) -> tokio::sync::watch::Receiver<Served> {
        self.served.subscribe()
    }

    pub fn current(&self) -> Option<Arc<Loaded>> {
        self.current.load_full()
    }

    /// Installs a table directly (in-process use and tests).
    pub fn set(&self, table: Loaded) {
        self.serve(&table.version);
        self.current.store(Some(Arc::new(table)));
    }

    fn serve(&self, version: &str) {
        self.served.send_if_modified(|s| {
            let same = s.version.as_deref() == Some(version) && s.refused.is_none();
            if !same {
                *s = Served {
                    version: Some(version.to_owned()),
                    loaded_at: Some(SystemTime::now()),
                    refused: None,
                };
            }
            !same
        });
    }

    pub fn record(&self, result: &Result<Arc<Loaded>, String>) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.last_reload_unix.store(now, Ordering::Relaxed);
        match result {
            Ok(t) => {
                self.serve(&t.version);
                drop(self.current.swap(Some(t.clone())));
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                self.last_reload_ok.store(1, Ordering::Relaxed);
            }
            Err(why) => {
                self.served.send_if_modified(|s| {
                    let changed = s.refused.as_ref() != Some(why);
                    s.refused = Some(why.clone());
                    changed
                });
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                self.last_reload_ok.store(0, Ordering::Relaxed);
            }
        }
        crate::memory::release_freed();
    }
}

/// The files of a table directory, read through `..data` when there is one.
/// The `..data` link's target, if any, and the directory the files are read from.
fn data_dir(dir: &Path) -> (Option<PathBuf>, PathBuf) {
    let link = std::fs::read_link(dir.join("..data")).ok();
    let base = link
        .as_ref()
        .map_or_else(|| dir.to_owned(), |l| dir.join(l));
    (link, base)
}

fn read_dir_files(dir: &Path) -> Result<(PathBuf, BTreeMap<String, Vec<u8>>), String> {
    let (_, base) = data_dir(dir);
    let manifest = std::fs::read(base.join(MANIFEST_KEY))
        .map_err(|e| format!("{}: {e}", base.join(MANIFEST_KEY).display()))?;
    let parsed = routing::table::Manifest::from_json(&manifest)
        .map_err(|e| format!("{}: {e}", base.join(MANIFEST_KEY).display()))?;
    let mut files = BTreeMap::new();
    for shard in &parsed.shards {
        let path = base.join(&shard.key);
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        files.insert(shard.key.clone(), bytes);
    }
    files.insert(MANIFEST_KEY.to_owned(), manifest);
    Ok((base, files))
}

/// Loads and verifies a table directory.
pub fn load_dir(dir: &Path) -> Result<Loaded, String> {
    let (base, files) = read_dir_files(dir)?;
    load_files(&base.display().to_string(), &files)
}

/// Verifies and loads a table's files; `origin` names where they came from
/// in the error.
pub fn load_files(origin: &str, files: &BTreeMap<String, Vec<u8>>) -> Result<Loaded, String> {
    let (manifest, routing) =
        load_routing(|k| files.get(k).map(Vec::as_slice)).map_err(|e| format!("{origin}: {e}"))?;
    Ok(Loaded {
        routing,
        version: manifest.version,
    })
}

/// Compiles manifests in-process (one namespace: `namespace`, or the only one).
pub fn load_manifests(
    paths: &[PathBuf],
    namespace: Option<&str>,
    self_addresses: &[String],
) -> Result<Loaded, String> {
    let (_, objects) = manifests::read(paths)
        .map_err(|e| e.to_string())?
        .single(namespace)
        .map_err(|e| e.to_string())?;
    let compiled = routing::compile(
        &objects,
        &routing::CompileOptions {
            self_addresses: self_addresses.to_vec(),
        },
    );
    let encoded = routing::table::encode(compiled.table());
    Ok(Loaded {
        routing: compiled.routing,
        version: encoded.manifest.version,
    })
}

/// What decides whether the directory changed: the `..data` target and the
/// manifest's bytes.
fn change_token(dir: &Path) -> Option<(Option<PathBuf>, Vec<u8>)> {
    let (link, base) = data_dir(dir);
    let manifest = std::fs::read(base.join(MANIFEST_KEY)).ok()?;
    Some((link, manifest))
}

/// How often a relay still waiting for its table directory says so: the
/// first look is logged at once, then at this slow pace (a Kubernetes
/// volume can appear late, and a relay without a table takes no traffic).
pub const WAITING_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Watches a table directory: loads each new version, verified in full,
/// until the process ends. A directory without a table is waited for.
pub async fn watch_dir(dir: PathBuf, tables: Arc<Tables>, poll: Duration) {
    let mut seen: Option<(Option<PathBuf>, Vec<u8>)> = None;
    let mut failed_at: Option<std::time::Instant> = None;
    let mut waiting_logged: Option<std::time::Instant> = None;
    loop {
        let token = change_token(&dir);
        let waiting = token.is_none() && tables.current().is_none();
        if waiting && waiting_logged.is_none_or(|t| t.elapsed() >= WAITING_LOG_INTERVAL) {
            tracing::warn!(
                table = %dir.display(),
                "waiting for the routing table: {} is not there yet; refusing mail until it is",
                dir.join(MANIFEST_KEY).display()
            );
            waiting_logged = Some(std::time::Instant::now());
        }
        // Retry a failed table now and then even when nothing changed:
        // a plain directory may be mid-rewrite.
        let retry = failed_at.is_some_and(|t| t.elapsed() >= Duration::from_secs(2));
        if token.is_some() && (token != seen || retry) {
            let d = dir.clone();
            let result = tokio::task::spawn_blocking(move || load_dir(&d).map(Arc::new))
                .await
                .unwrap_or_else(|e| Err(format!("table loader panicked: {e}")));
            report(&result);
            failed_at = result.is_err().then(std::time::Instant::now);
            tables.record(&result);
            seen = token;
        }
        tokio::time::sleep(poll).await;
    }
}

pub fn report(result: &Result<Arc<Loaded>, String>) {
    match result {
        Ok(t) => {
            tracing::info!(version = %t.version, addresses = t.routing.table().addresses.len(), "routing table loaded")
        }
        Err(e) => tracing::error!(error = %e, "routing table refused; keeping the last good one"),
    }
}
