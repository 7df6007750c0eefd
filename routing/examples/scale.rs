//! One-shot scale run: `cargo run --release -p routing --example scale -- N [--yaml DIR]`.
//! Compiles, analyses, encodes and loads an organisation of N contacts (100
//! policies, 1,000 connectors) once, from a cold start, and prints the
//! phases' times, the table's size and the memory used. With `--yaml DIR`
//! it writes the same objects as block-style manifests instead, for timing
//! `mailroute compile`.

use routing::fixtures::organisation;
use routing::table::{encode, load_routing};
use routing::{CompileOptions, compile};
use std::time::Instant;

// As in the shipped binaries.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n =
        routing::fixtures::smoke_size(args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000));
    let objects = organisation(n, 100, 1000);
    let objects_rss = memory_kib("VmRSS");
    if let Some(i) = args.iter().position(|a| a == "--yaml") {
        let dir = std::path::Path::new(&args[i + 1]);
        write_yaml(&objects, dir);
        return;
    }
    // The first run pays for fresh memory (page faults); the second is the
    // steady state of an operator that recompiles.
    let t = Instant::now();
    drop(compile(&objects, &CompileOptions::default()));
    let t_first = t.elapsed();
    let t = Instant::now();
    let compiled = compile(&objects, &CompileOptions::default());
    let t_compile = t.elapsed();
    println!(
        "first (cold) compile+analyse={:.0}ms",
        t_first.as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let encoded = encode(compiled.table());
    let t_encode = t.elapsed();
    drop(compiled);
    let t = Instant::now();
    let (_, routing) = load_routing(|k| encoded.files.get(k).map(Vec::as_slice)).expect("loads");
    let t_load = t.elapsed();
    let bytes = encoded.total_bytes();
    println!(
        "contacts={n} compile+analyse={:.0}ms encode={:.0}ms total={:.0}ms load={:.0}ms table_bytes={bytes} bytes_per_contact={:.1} address_shards={} addresses={}",
        t_compile.as_secs_f64() * 1e3,
        t_encode.as_secs_f64() * 1e3,
        (t_compile + t_encode).as_secs_f64() * 1e3,
        t_load.as_secs_f64() * 1e3,
        bytes as f64 / n as f64,
        encoded.manifest.counts.address_shards,
        routing.table().addresses.len(),
    );
    let peak = memory_kib("VmHWM");
    println!(
        "memory: input objects {} MiB, peak {} MiB (compile, encode and load add {} MiB)",
        objects_rss / 1024,
        peak / 1024,
        peak.saturating_sub(objects_rss) / 1024
    );
}

/// A line of /proc/self/status, in KiB (0 where there is no /proc).
fn memory_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn write_yaml(objects: &routing::Objects, dir: &std::path::Path) {
    use std::io::Write;
    std::fs::create_dir_all(dir).expect("create dir");
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(dir.join("organisation.yaml")).expect("create file"),
    );
    // Block-style YAML, as people and `kubectl get -o yaml` write it.
    let mut doc = |v: serde_json::Value| {
        writeln!(out, "---").unwrap();
        write!(out, "{}", to_yaml(&v, 0)).unwrap();
    };
    for s in &objects.address_spaces {
        doc(serde_json::to_value(s).unwrap());
    }
    for p in &objects.policies {
        doc(serde_json::to_value(p).unwrap());
    }
    for c in &objects.connectors {
        doc(serde_json::to_value(c).unwrap());
    }
    for c in &objects.contacts {
        doc(serde_json::to_value(c).unwrap());
    }
}

/// A small block-style YAML writer for the scale input (strings quoted).
fn to_yaml(v: &serde_json::Value, indent: usize) -> String {
    use serde_json::Value;
    let pad = " ".repeat(indent);
    let mut out = String::new();
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match v {
                    Value::Object(o) if !o.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n{}", to_yaml(v, indent + 2)))
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n{}", to_yaml(v, indent + 2)))
                    }
                    _ => out.push_str(&format!("{pad}{k}: {}\n", scalar(v))),
                }
            }
        }
        Value::Array(a) => {
            for item in a {
                let inner = to_yaml(item, indent + 2);
                let inner = inner.trim_start();
                out.push_str(&format!("{pad}- {inner}"));
                if !matches!(item, Value::Object(_) | Value::Array(_)) {
                    out.push('\n');
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
    out
}

fn scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(_) => "{}".into(),
        serde_json::Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}
