//! The operator's reconcile path at scale, without a network: N contacts
//! (default 100,000), 100 recipient policies and 1,000 connectors in one
//! namespace, held in reflector caches as the operator holds them; then
//! snapshot → compile + analyse → encode → ConfigMap bodies → plan →
//! every object's status body. Prints the time of each step and the peak
//! RSS. Run: `cargo run --release -p operator --example reconcile_scale [N]`.

use kube::Resource;
use kube::core::DeserializeGuard;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use operator::controller::caches::Caches;
use operator::controller::{publish, status};
use routing::CompileOptions;
use routing::fixtures::organisation;
use routing::table::encode;
use std::time::Instant;

fn rss_mib(field: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let n = routing::fixtures::smoke_size(
        std::env::args()
            .nth(1)
            .and_then(|a| a.parse().ok())
            .unwrap_or(100_000),
    );
    let objects = organisation(n, 100, 1000);
    let mut caches = Caches::default();
    macro_rules! fill {
        ($field:ident, $list:expr) => {{
            let (store, mut writer) = reflector::store();
            writer.apply_watcher_event(&Event::Init);
            for o in $list {
                let mut o = o.clone();
                o.meta_mut().namespace = Some("mail".into());
                writer.apply_watcher_event(&Event::InitApply(DeserializeGuard(Ok(o))));
            }
            writer.apply_watcher_event(&Event::InitDone);
            caches.$field = vec![store];
        }};
    }
    fill!(spaces, &objects.address_spaces);
    fill!(policies, &objects.policies);
    fill!(contacts, &objects.contacts);
    fill!(connectors, &objects.connectors);
    drop(objects);
    let cached = rss_mib("VmRSS:");
    // Reset the peak so that it measures the reconcile, not the fixture build.
    let _ = std::fs::write("/proc/self/clear_refs", "5");

    let t0 = Instant::now();
    let snapshot = caches.snapshot("mail");
    let t1 = Instant::now();
    let compiled = routing::compile(&snapshot.objects, &CompileOptions::default());
    let t2 = Instant::now();
    let encoded = encode(compiled.table());
    let configmaps = publish::table_configmaps("mailroute-table", "mail", &encoded);
    let plan = publish::plan(
        configmaps,
        &caches.table_configmaps("mail", "mailroute-table"),
    );
    let bodies: Vec<serde_json::Value> = plan.apply.iter().map(publish::apply_body).collect();
    let t3 = Instant::now();
    let now = operator::controller::reconcile::now();
    // As the reconciler does: every update computed, each body serialized
    // when its PATCH is sent.
    let none = status::Current::default();
    let mut updates = 0;
    let status_bytes: usize = compiled
        .reports
        .iter()
        .filter_map(|r| {
            let current = snapshot.current.get(&(r.kind, r.name.clone()));
            status::update(r, current.unwrap_or(&none), &now)
        })
        .map(|u| {
            updates += 1;
            serde_json::to_vec(&status::apply_body(&u)).map_or(0, |b| b.len())
        })
        .sum();
    let t4 = Instant::now();
    let secs = |a: Instant, b: Instant| (b - a).as_secs_f64();
    println!("contacts: {n}, connectors: {}, policies: 100", 1001);
    println!("snapshot from caches:      {:.3} s", secs(t0, t1));
    println!("compile + analyse:         {:.3} s", secs(t1, t2));
    println!(
        "encode + ConfigMap bodies: {:.3} s ({} ConfigMaps, {} bytes)",
        secs(t2, t3),
        bodies.len(),
        encoded.total_bytes()
    );
    println!(
        "status bodies:             {:.3} s ({} objects, {status_bytes} bytes)",
        secs(t3, t4),
        updates
    );
    println!("total:                     {:.3} s", secs(t0, t4));
    println!(
        "RSS with caches filled: {cached:.0} MiB; peak during the reconcile: {:.0} MiB",
        rss_mib("VmHWM:")
    );
}
