//! `cargo bench -p routing`: compile + analyse + encode, load, and resolve
//! at 10k, 100k and 1M contacts (100 policies, 1,000 connectors). Table
//! size and shard count are printed once per size. Figures go in the
//! README's performance section, with the date.

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use routing::fixtures::organisation;
use routing::table::{encode, load_routing};
use routing::{CompileOptions, compile};
use std::hint::black_box;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn sizes() -> Vec<usize> {
    // MAILROUTE_BENCH_SIZES=10000,100000 to run fewer.
    let sizes: Vec<usize> = std::env::var("MAILROUTE_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000, 1_000_000]);
    let mut smoke: Vec<usize> = sizes
        .into_iter()
        .map(routing::fixtures::smoke_size)
        .collect();
    smoke.dedup();
    smoke
}

/// Criterion's defaults, or seconds in all under `MAILROUTE_SMOKE=1`.
fn criterion() -> Criterion {
    let c = Criterion::default();
    if std::env::var_os("MAILROUTE_SMOKE").is_some_and(|v| v == "1") {
        c.warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(500))
            .sample_size(10)
    } else {
        c
    }
}

fn bench(c: &mut Criterion) {
    for n in sizes() {
        let objects = organisation(n, 100, 1000);
        let options = CompileOptions::default();
        let compiled = compile(&objects, &options);
        let encoded = encode(compiled.table());
        eprintln!(
            "{n} contacts: {} table bytes ({:.1} per contact), {} address shards, {} addresses",
            encoded.total_bytes(),
            encoded.total_bytes() as f64 / n as f64,
            encoded.manifest.counts.address_shards,
            encoded.manifest.counts.addresses
        );

        let mut g = c.benchmark_group("routing");
        if n >= 1_000_000 {
            g.sample_size(10).measurement_time(Duration::from_secs(40));
        } else if n >= 100_000 {
            g.sample_size(10).measurement_time(Duration::from_secs(10));
        }
        // The operator keeps what it compiled; freeing it is not part of the work.
        g.bench_function(BenchmarkId::new("compile_analyse_encode", n), |b| {
            b.iter_batched(
                || (),
                |()| {
                    let compiled = compile(black_box(&objects), &options);
                    let encoded = encode(compiled.table());
                    (compiled, encoded)
                },
                BatchSize::PerIteration,
            )
        });
        g.bench_function(BenchmarkId::new("load", n), |b| {
            b.iter_batched(
                || (),
                |()| load_routing(|k| encoded.files.get(k).map(Vec::as_slice)).unwrap(),
                BatchSize::PerIteration,
            )
        });
        g.finish();

        // Resolve: a mix of known contacts (both address kinds), alias-domain
        // addresses and unknown recipients.
        let routing = compiled.routing;
        let recipients: Vec<String> = (0..1024)
            .map(|i| {
                let k = (i * 7919) % n;
                match i % 4 {
                    0 => format!("u{k}@example.com"),
                    1 => format!("Given{k}.Surname{k}@example.com"),
                    2 => format!("g{k}surname{k}@example.net"),
                    _ => format!("nobody{k}@example.com"),
                }
            })
            .collect();
        let mut g = c.benchmark_group("resolve");
        g.throughput(Throughput::Elements(recipients.len() as u64));
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                for r in &recipients {
                    black_box(routing.resolve(black_box(r), false));
                }
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = bench
}
criterion_main!(benches);
