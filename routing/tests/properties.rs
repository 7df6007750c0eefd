//! Property tests: order independence, total resolution, exact cycle
//! detection, and a loader that never panics.

use proptest::prelude::*;
use routing::crd::Kind;
use routing::fixtures::*;
use routing::table::{Manifest, encode, load};
use routing::{CompileOptions, Objects, compile};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// A small random organisation: a few domains, contacts whose addresses and
/// targets are drawn from a small pool (so duplicates, cycles and misses
/// happen), connectors and policies.
fn arb_objects() -> impl Strategy<Value = Objects> {
    let domains = ["a.example", "b.example", "c.example", "out.example"];
    let spaces = prop::collection::vec((0usize..3, 0u8..4), 0..4);
    let contacts = prop::collection::vec(
        (
            prop::collection::vec((0usize..8, 0usize..4), 0..3),
            (0usize..8, 0usize..4),
            0u8..3,
            any::<bool>(),
        ),
        0..12,
    );
    let connectors = prop::collection::vec((0usize..5, 1u32..4, any::<bool>()), 0..4);
    (spaces, contacts, connectors).prop_map(move |(spaces, contacts, connectors)| {
        let mut o = Objects::default();
        for (i, (d, t)) in spaces.into_iter().enumerate() {
            let name = format!("s{i}");
            let mut s = match t {
                0 => authoritative(&name, domains[d]),
                1 => internal_relay(&name, domains[d]),
                2 => alias_domain(&name, domains[d], domains[(d + 1) % 3]),
                _ => authoritative(&name, &format!("*.{}", domains[d])),
            };
            created(&mut s.metadata, (i % 2) as i64);
            o.address_spaces.push(s);
        }
        for (i, (proxies, (tl, td), age, given)) in contacts.into_iter().enumerate() {
            let proxies: Vec<String> = proxies
                .iter()
                .map(|(l, d)| format!("u{l}@{}", domains[*d]))
                .collect();
            let refs: Vec<&str> = proxies.iter().map(String::as_str).collect();
            let mut c = contact(&format!("c{i}"), &refs, &format!("u{tl}@{}", domains[td]));
            created(&mut c.metadata, age as i64);
            if given {
                c.spec.given_name = Some(format!("G{i}"));
            }
            o.contacts.push(c);
        }
        for (i, (d, cost, mx)) in connectors.into_iter().enumerate() {
            let domain = if d == 4 { "*" } else { domains[d] };
            let hosts: &[&str] = if mx { &[] } else { &["[192.0.2.1]"] };
            o.connectors
                .push(connector(&format!("k{i}"), &[(domain, cost)], hosts));
        }
        o.policies.push(policy("p", 1, &["%g@a.example"], None));
        o
    })
}

fn shuffled(o: &Objects, seed: u64) -> Objects {
    // A deterministic permutation per seed: rotate and reverse.
    fn perm<T: Clone>(v: &[T], seed: u64) -> Vec<T> {
        let mut v = v.to_vec();
        if !v.is_empty() {
            let k = (seed as usize) % v.len();
            v.rotate_left(k);
        }
        if seed % 2 == 1 {
            v.reverse();
        }
        v
    }
    Objects {
        address_spaces: perm(&o.address_spaces, seed),
        policies: perm(&o.policies, seed / 3),
        contacts: perm(&o.contacts, seed / 5),
        connectors: perm(&o.connectors, seed / 7),
        grants: perm(&o.grants, seed / 11),
        cluster: o.cluster.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn compile_output_is_independent_of_input_order(o in arb_objects(), seed in any::<u64>()) {
        let opts = CompileOptions::default();
        let a = compile(&o, &opts);
        let b = compile(&shuffled(&o, seed), &opts);
        prop_assert_eq!(&a.reports, &b.reports);
        prop_assert_eq!(encode(a.table()), encode(b.table()));
    }

    #[test]
    fn resolving_any_address_yields_a_decision(o in arb_objects(), rcpt in ".{0,80}", relay in any::<bool>()) {
        let c = compile(&o, &CompileOptions::default());
        let d = c.routing.resolve(&rcpt, relay);
        prop_assert!(["forward", "reject", "defer"].contains(&d.action()));
        if let routing::Decision::Reply(r) = &d {
            prop_assert!((400..600).contains(&r.code));
        }
    }

    #[test]
    fn resolving_pool_addresses_yields_a_decision(o in arb_objects(), l in 0usize..8, d in 0usize..4, relay in any::<bool>()) {
        let c = compile(&o, &CompileOptions::default());
        let domain = ["a.example", "b.example", "c.example", "out.example"][d];
        let (dec, steps) = c.routing.trace(&format!("U{l}@{domain}"), relay);
        prop_assert!(!steps.is_empty());
        prop_assert!(["forward", "reject", "defer"].contains(&dec.action()));
    }

    #[test]
    fn tables_round_trip(o in arb_objects()) {
        let t = compile(&o, &CompileOptions::default()).routing.into_table();
        let e = encode(&t);
        let (_, loaded) = load(|k| e.files.get(k).map(Vec::as_slice)).unwrap();
        prop_assert_eq!(loaded.canonical(), t.canonical());
    }

    /// Corrupt a shard and re-sign the manifest so the hash check passes:
    /// the decoder itself must refuse (or accept) without panicking.
    #[test]
    fn loader_never_panics_on_corrupt_shards(o in arb_objects(), pos in any::<usize>(), byte in any::<u8>(), which in 0usize..2) {
        let t = compile(&o, &CompileOptions::default()).routing.into_table();
        let e = encode(&t);
        let key = e.manifest.shards[which % e.manifest.shards.len()].key.clone();
        let raw = zstd::bulk::decompress(&e.files[&key], 1 << 24).unwrap();
        let mut raw = raw.clone();
        if !raw.is_empty() {
            let p = pos % raw.len();
            raw[p] = byte;
            raw.truncate(raw.len() - (pos % 3).min(raw.len()));
        }
        let files = resigned(&e.files, &e.manifest, &key, zstd::bulk::compress(&raw, 1).unwrap());
        let _ = load(|k| files.get(k).map(Vec::as_slice));
    }
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn resigned(
    files: &BTreeMap<String, Vec<u8>>,
    manifest: &Manifest,
    key: &str,
    bytes: Vec<u8>,
) -> BTreeMap<String, Vec<u8>> {
    let mut m = manifest.clone();
    for s in &mut m.shards {
        if s.key == key {
            s.sha256 = hex(&bytes);
            s.bytes = bytes.len() as u64;
        }
    }
    let lines: String = m
        .shards
        .iter()
        .map(|s| format!("{} {}\n", s.key, s.sha256))
        .collect();
    m.version = hex(lines.as_bytes());
    let mut files = files.clone();
    files.insert(key.to_owned(), bytes);
    files.insert("manifest.json".into(), serde_json::to_vec(&m).unwrap());
    files
}

/// Contacts c0..cn-1 with addresses u{i}@x.example; each targets another
/// contact's address, an address in the alias domain y.example (rewritten
/// to x.example), or an outside address.
fn arb_contact_graph() -> impl Strategy<Value = Vec<(usize, u8)>> {
    prop::collection::vec((0usize..10, 0u8..3), 1..10)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn rewrite_cycle_is_reported_exactly_when_a_route_comes_back(graph in arb_contact_graph()) {
        let n = graph.len();
        let mut o = Objects::default();
        o.address_spaces.push(authoritative("x", "x.example"));
        o.address_spaces.push(alias_domain("y", "y.example", "x.example"));
        o.connectors.push(connector("out", &[("out.example", 1)], &["[192.0.2.1]"]));
        // Where contact i's target leads: Some(j) = contact j, None = out of the graph.
        let mut next: Vec<Option<usize>> = Vec::new();
        for (i, (t, how)) in graph.iter().enumerate() {
            let (target, leads) = match how {
                0 if *t < n => (format!("u{t}@x.example"), Some(*t)),
                1 if *t < n => (format!("u{t}@y.example"), Some(*t)),
                _ => (format!("u{t}@out.example"), None),
            };
            next.push(leads);
            o.contacts.push(contact(&format!("c{i}"), &[&format!("u{i}@x.example")], &target));
        }
        let c = compile(&o, &CompileOptions::default());
        for i in 0..n {
            // Brute force: follow the targets; coming back to any visited contact is a loop.
            let mut seen = vec![false; n];
            let mut cur = Some(i);
            let mut loops = false;
            while let Some(k) = cur {
                if seen[k] { loops = true; break; }
                seen[k] = true;
                cur = next[k];
            }
            let r = c.report(Kind::MailContact, &format!("c{i}")).unwrap();
            prop_assert_eq!(r.conditions[1].reason == "RewriteCycle", loops, "c{}: {:?}", i, r.conditions[1]);
            // The relay defers a looping route (451 4.4.6) unless the chain
            // into the loop is already longer than the rewrite limit (554 5.4.6).
            let d = c.routing.resolve(&format!("u{i}@x.example"), false);
            let stopped = matches!(d.reason(), "RewriteCycle" | "TooManyRewrites");
            prop_assert_eq!(d.reason() == "RewriteCycle" || (loops && stopped), loops, "{:?}", d);
        }
    }
}
