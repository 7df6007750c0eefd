//! Hot reload through a kubelet-style ConfigMap mount: every key is a
//! symlink into `..data`, and `..data` is swapped atomically.

mod common;

use common::*;
use relay::table::Tables;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn objects(target: &str, sink: &Sink) -> routing::Objects {
    one_route(target, &sink.smart_host())
}

/// Publishes a table as kubelet does: a new timestamped directory, then an
/// atomic rename of the `..data` symlink onto it.
fn publish(dir: &Path, generation: u32, files: &std::collections::BTreeMap<String, Vec<u8>>) {
    let name = format!("..2026_11_21_00_00_0{generation}.000000001");
    let version_dir = dir.join(&name);
    std::fs::create_dir_all(&version_dir).unwrap();
    for (key, bytes) in files {
        std::fs::write(version_dir.join(key), bytes).unwrap();
        let link = dir.join(key);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(key), &link).unwrap();
        }
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&name, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}

async fn wait_for(tables: &Tables, what: impl Fn(&Tables) -> bool) -> Duration {
    let start = Instant::now();
    while !what(tables) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "reload did not happen"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

async fn route_of(relay: &Relay, rcpt: &str) -> String {
    let mut c = Client::connect(relay.addr).await;
    let r = c.envelope("s@outside.org", &[rcpt]).await.remove(0);
    let _ = c.cmd("QUIT").await;
    r
}

#[tokio::test]
async fn a_new_table_is_swapped_in_within_a_second_and_a_corrupt_one_is_refused() {
    let sink = Sink::start(SinkBehaviour {
        refuse: vec!["moved@mbx.example.com".into()],
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let v1 = routing::table::encode(
        common::table_of(&objects("ann@mbx.example.com", &sink))
            .routing
            .table(),
    );
    publish(dir.path(), 1, &v1.files);

    let tables = Arc::new(Tables::default());
    tokio::spawn(relay::table::watch_dir(
        dir.path().to_owned(),
        tables.clone(),
        Duration::from_millis(250),
    ));
    wait_for(&tables, |t| t.current().is_some()).await;
    assert_eq!(tables.current().unwrap().version, v1.manifest.version);
    let relay = Relay::start(config(), tables.clone()).await;
    assert_eq!(
        codes(&route_of(&relay, "ann@example.com").await),
        "250 2.1.5"
    );

    // A session that began on v1 keeps v1 for its transaction.
    let mut old = Client::connect(relay.addr).await;
    old.envelope("s@outside.org", &[]).await;

    let v2 = routing::table::encode(
        common::table_of(&objects("moved@mbx.example.com", &sink))
            .routing
            .table(),
    );
    publish(dir.path(), 2, &v2.files);
    let took = wait_for(&tables, |t| {
        t.current().unwrap().version == v2.manifest.version
    })
    .await;
    assert!(took < Duration::from_secs(1), "noticed after {took:?}");
    // The sink refuses the new target: proof the new route is used.
    assert_eq!(
        codes(&route_of(&relay, "ann@example.com").await),
        "550 5.1.1"
    );
    assert_eq!(
        codes(&old.cmd("RCPT TO:<ann@example.com>").await),
        "250 2.1.5"
    );

    // A damaged shard: refused, counted, and v2 stays.
    let failed_before = tables.reloads_failed.load(Ordering::Relaxed);
    let mut v3 = routing::table::encode(
        common::table_of(&objects("third@mbx.example.com", &sink))
            .routing
            .table(),
    );
    let shard = v3.manifest.shards[1].key.clone();
    let bytes = v3.files.get_mut(&shard).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    publish(dir.path(), 3, &v3.files);
    wait_for(&tables, |t| {
        t.reloads_failed.load(Ordering::Relaxed) > failed_before
    })
    .await;
    assert_eq!(tables.current().unwrap().version, v2.manifest.version);
    assert_eq!(tables.last_reload_ok.load(Ordering::Relaxed), 0);
    assert_eq!(
        codes(&route_of(&relay, "ann@example.com").await),
        "550 5.1.1"
    );
}
