//! The published table (docs/design.md, "The published table"): round trip, verification, sharding.

use routing::fixtures::*;
use routing::table::{EncodedTable, LoadError, MANIFEST_KEY, SHARD_LIMIT, encode, load};
use routing::{CompileOptions, Table, compile};
use std::collections::BTreeMap;

fn table_of(contacts: usize) -> Table {
    compile(&organisation(contacts, 10, 20), &CompileOptions::default())
        .routing
        .into_table()
}

fn load_files(files: &BTreeMap<String, Vec<u8>>) -> Result<Table, LoadError> {
    load(|k| files.get(k).map(Vec::as_slice)).map(|(_, t)| t)
}

#[test]
fn round_trip_is_exact() {
    let mut o = organisation(500, 10, 20);
    o.address_spaces
        .push(internal_relay("shared", "shared.example"));
    o.connectors.push(connector(
        "shared",
        &[("shared.example", 3)],
        &["[IPv6:2001:db8::1]:2525", "mx.shared.example"],
    ));
    let t = compile(
        &o,
        &CompileOptions {
            self_addresses: vec!["10.0.0.3".into()],
        },
    )
    .routing
    .into_table();
    assert!(
        t.connectors.iter().any(|c| c.loops),
        "fixture should include a looping connector"
    );
    let e = encode(&t);
    assert_eq!(
        load_files(&e.files).unwrap().canonical(),
        t.clone().canonical()
    );
    assert_eq!(e.manifest.counts.addresses, t.addresses.len() as u64);
}

#[test]
fn keys_are_valid_configmap_keys_and_shards_fit() {
    let e = encode(&table_of(20_000));
    for (k, v) in &e.files {
        assert!(
            k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)),
            "{k}"
        );
        assert!(v.len() <= SHARD_LIMIT, "{k} is {} bytes", v.len());
    }
    assert!(e.files.contains_key(MANIFEST_KEY));
}

#[test]
fn encoding_is_deterministic() {
    assert_eq!(encode(&table_of(2000)), encode(&table_of(2000)));
}

#[test]
fn large_tables_are_split_into_stable_shards() {
    let t = table_of(60_000);
    let e = encode(&t);
    assert!(
        e.manifest.counts.address_shards > 1,
        "expected several shards, got {}",
        e.manifest.counts.address_shards
    );
    assert_eq!(
        load_files(&e.files).unwrap().canonical(),
        t.clone().canonical()
    );

    // Changing one contact rewrites one address shard and the manifest only.
    let mut o = organisation(60_000, 10, 20);
    o.contacts[1234].spec.target_address = Some("moved@mbx3.example.com".into());
    let changed = encode(&compile(&o, &CompileOptions::default()).routing.into_table());
    assert_eq!(
        changed.manifest.counts.address_shards,
        e.manifest.counts.address_shards
    );
    let differing: Vec<&String> = e
        .files
        .keys()
        .filter(|k| e.files[*k] != changed.files[*k])
        .collect();
    assert_eq!(differing.len(), 2, "{differing:?}");
    assert!(differing.iter().any(|k| *k == MANIFEST_KEY));
    assert_ne!(e.manifest.version, changed.manifest.version);
}

fn tampered(
    e: &EncodedTable,
    f: impl FnOnce(&mut BTreeMap<String, Vec<u8>>),
) -> Result<Table, LoadError> {
    let mut files = e.files.clone();
    f(&mut files);
    load_files(&files)
}

#[test]
fn half_updated_or_damaged_tables_are_refused() {
    let e = encode(&table_of(300));
    let shard = e.manifest.shards[1].key.clone();
    assert!(matches!(
        tampered(&e, |f| {
            f.remove(MANIFEST_KEY);
        }),
        Err(LoadError::MissingFile(_))
    ));
    assert!(
        matches!(tampered(&e, |f| { f.remove(&shard); }), Err(LoadError::MissingFile(k)) if k == shard)
    );
    assert!(
        matches!(tampered(&e, |f| { f.get_mut(&shard).unwrap()[10] ^= 1; }), Err(LoadError::Hash { key }) if key == shard)
    );
    // A shard from another table version (a half-updated mount).
    let other = encode(&table_of(301));
    let s = other.manifest.shards[1].key.clone();
    assert!(matches!(
        tampered(&e, |f| {
            f.insert(s.clone(), other.files[&s].clone());
        }),
        Err(LoadError::Hash { .. })
    ));
    // A manifest whose version does not match its shard list.
    let mut m = e.manifest.clone();
    m.version = "0".repeat(64);
    let bad = serde_json::to_vec(&m).unwrap();
    assert!(matches!(
        tampered(&e, |f| {
            f.insert(MANIFEST_KEY.into(), bad);
        }),
        Err(LoadError::Version { .. })
    ));
    // A manifest that is not JSON, or of another schema.
    assert!(matches!(
        tampered(&e, |f| {
            f.insert(MANIFEST_KEY.into(), b"{".to_vec());
        }),
        Err(LoadError::Manifest(_))
    ));
    let mut m = e.manifest.clone();
    m.schema = "mailroute.io/table/v9".into();
    let bad = serde_json::to_vec(&m).unwrap();
    assert!(matches!(
        tampered(&e, |f| {
            f.insert(MANIFEST_KEY.into(), bad);
        }),
        Err(LoadError::Schema(_))
    ));
}

#[test]
fn load_errors_name_the_file() {
    let e = encode(&table_of(10));
    let key = e.manifest.shards[0].key.clone();
    let err = tampered(&e, |f| {
        f.get_mut(&key).unwrap()[0] ^= 0xff;
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{key}: SHA-256 differs from the manifest's (half-updated or damaged)")
    );
}

#[test]
fn a_table_holding_an_address_twice_is_refused() {
    let mut t = table_of(10);
    let mut twin = t.addresses[0].clone();
    twin.contact = "someone-else".into();
    t.addresses.push(twin);
    let e = encode(&t);
    let expected = format!(
        "manifest.json: address {} appears twice",
        t.addresses[0].address
    );
    assert_eq!(load_files(&e.files).unwrap_err().to_string(), expected);
    let err = routing::table::load_routing(|k| e.files.get(k).map(Vec::as_slice)).unwrap_err();
    assert_eq!(err.to_string(), expected);
}

#[test]
fn load_routing_resolves_like_the_compiled_table() {
    let o = organisation(500, 10, 20);
    let compiled = compile(&o, &CompileOptions::default());
    let e = encode(compiled.table());
    let (_, loaded) = routing::table::load_routing(|k| e.files.get(k).map(Vec::as_slice)).unwrap();
    for r in [
        "u7@example.com",
        "Given8.Surname8@example.com",
        "g9surname9@example.net",
        "nobody@example.com",
        "x@elsewhere.org",
    ] {
        for relay in [false, true] {
            let a = compiled.routing.resolve(r, relay);
            let b = loaded.resolve(r, relay);
            // Connector positions agree because connectors are sorted by name in both.
            assert_eq!(a, b, "{r}");
        }
    }
}
