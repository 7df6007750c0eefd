//! The published table as ConfigMaps (docs/design.md, "The published table"): how the operator lays
//! the files out and how a relay watching the API puts them together again.
//!
//! - `<table>` holds `manifest.json` (in `data`) and `base.zst` (the spaces
//!   and connectors, in `binaryData`);
//! - `<table>-shard-NNN` holds one address shard each, so one changed contact
//!   rewrites one shard ConfigMap and the manifest, and each stays far below
//!   the 1 MiB object limit. The names depend only on the shard's index, so a
//!   relay can mount them all as one projected volume (optional sources).
//!
//! Every ConfigMap carries `app.kubernetes.io/managed-by: mailroute` and
//! `mailroute.io/table: <table>`.

use super::{EncodedTable, MANIFEST_KEY};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "mailroute";
pub const TABLE_LABEL: &str = "mailroute.io/table";
/// The base shard travels with the manifest.
const BASE_KEY: &str = "base.zst";

/// The label selector for every ConfigMap the operator manages.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY}")
}

/// The label selector for the ConfigMaps of one table.
pub fn table_selector(table: &str) -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY},{TABLE_LABEL}={table}")
}

/// The ConfigMaps of one published table: shards first, the manifest's
/// ConfigMap last, which is the order they must be written in.
pub fn table_configmaps(table: &str, namespace: &str, encoded: &EncodedTable) -> Vec<ConfigMap> {
    let mut shards = Vec::new();
    let mut main_binary = BTreeMap::new();
    for (key, bytes) in &encoded.files {
        if key == MANIFEST_KEY {
            continue;
        }
        let value = ByteString(bytes.clone());
        if key == BASE_KEY {
            main_binary.insert(key.clone(), value);
        } else {
            let name = format!("{table}-shard-{:03}", shards.len());
            shards.push(configmap(
                table,
                namespace,
                name,
                None,
                BTreeMap::from([(key.clone(), value)]),
            ));
        }
    }
    let manifest =
        String::from_utf8(encoded.files[MANIFEST_KEY].clone()).expect("the manifest is JSON text");
    shards.push(configmap(
        table,
        namespace,
        table.to_owned(),
        Some(BTreeMap::from([(MANIFEST_KEY.to_owned(), manifest)])),
        main_binary,
    ));
    shards
}

fn configmap(
    table: &str,
    namespace: &str,
    name: String,
    data: Option<BTreeMap<String, String>>,
    binary: BTreeMap<String, ByteString>,
) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
                (TABLE_LABEL.to_owned(), table.to_owned()),
            ])),
            ..ObjectMeta::default()
        },
        data,
        binary_data: (!binary.is_empty()).then_some(binary),
        ..ConfigMap::default()
    }
}

/// The table's files from its ConfigMaps (the inverse of
/// [`table_configmaps`]). Whether they form a whole table is for the loader
/// to say: it checks the manifest and every shard's hash.
pub fn files_of<'a>(
    configmaps: impl IntoIterator<Item = &'a ConfigMap>,
) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for cm in configmaps {
        for (k, v) in cm.data.iter().flatten() {
            files.insert(k.clone(), v.clone().into_bytes());
        }
        for (k, v) in cm.binary_data.iter().flatten() {
            files.insert(k.clone(), v.0.clone());
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{authoritative, contact, published as encoded};
    use crate::table::encode;
    use crate::{CompileOptions, Objects, compile};

    fn names(cms: &[ConfigMap]) -> Vec<&str> {
        cms.iter()
            .map(|c| c.metadata.name.as_deref().unwrap())
            .collect()
    }

    #[test]
    fn a_small_table_is_a_manifest_configmap_and_one_shard() {
        let mut objects = Objects::default();
        objects
            .address_spaces
            .push(authoritative("a", "example.com"));
        objects
            .contacts
            .push(contact("ann", &["ann@example.com"], "ann@mbx.example.com"));
        let enc = encode(compile(&objects, &CompileOptions::default()).table());
        let cms = table_configmaps("mailroute-table", "mail", &enc);
        assert_eq!(
            names(&cms),
            ["mailroute-table-shard-000", "mailroute-table"]
        );
        let main = &cms[1];
        assert_eq!(main.metadata.namespace.as_deref(), Some("mail"));
        let labels = main.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[MANAGED_BY_LABEL], "mailroute");
        assert_eq!(labels[TABLE_LABEL], "mailroute-table");
        let data = main.data.as_ref().unwrap();
        assert_eq!(data[MANIFEST_KEY].as_bytes(), enc.files[MANIFEST_KEY]);
        assert_eq!(
            main.binary_data.as_ref().unwrap()[BASE_KEY].0,
            enc.files[BASE_KEY]
        );
        let shard = cms[0].binary_data.as_ref().unwrap();
        assert_eq!(
            shard.keys().collect::<Vec<_>>(),
            ["addresses-000-of-001.zst"]
        );
    }

    #[test]
    fn every_file_comes_back_and_each_configmap_stays_below_the_object_limit() {
        let enc = encoded(60_000);
        let cms = table_configmaps("t", "ns", &enc);
        assert!(cms.len() >= 3, "a 60k table has several shards");
        for cm in &cms {
            let size: usize = cm
                .data
                .iter()
                .flatten()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
                + cm.binary_data
                    .iter()
                    .flatten()
                    .map(|(k, v)| k.len() + v.0.len())
                    .sum::<usize>();
            assert!(size < 1024 * 1024, "{size} bytes");
        }
        assert_eq!(files_of(&cms), enc.files);
    }

    #[test]
    fn selectors() {
        assert_eq!(managed_selector(), "app.kubernetes.io/managed-by=mailroute");
        assert_eq!(
            table_selector("t"),
            "app.kubernetes.io/managed-by=mailroute,mailroute.io/table=t"
        );
    }
}
