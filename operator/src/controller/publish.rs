//! The published table as ConfigMaps (DESIGN.md §5), and what must change
//! in the cluster to get there. Pure: the reconciler does the writing.
//!
//! - `<table>` holds `manifest.json` (in `data`) and `base.zst` (the spaces
//!   and connectors, in `binaryData`);
//! - `<table>-shard-NNN` holds one address shard each, so one changed contact
//!   rewrites one shard ConfigMap and the manifest, and each stays far below
//!   the 1 MiB object limit. The names depend only on the shard's index, so a
//!   relay can mount them all as one projected volume (optional sources).
//!
//! Every ConfigMap carries `app.kubernetes.io/managed-by: mailroute` and
//! `mailroute.io/table: <table>`; the operator only ever reads, writes and
//! deletes ConfigMaps with both.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use routing::table::{EncodedTable, MANIFEST_KEY};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const FIELD_MANAGER: &str = "mailroute-operator";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "mailroute";
pub const TABLE_LABEL: &str = "mailroute.io/table";
/// The base shard travels with the manifest.
const BASE_KEY: &str = "base.zst";

/// The label selector for every ConfigMap the operator manages.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY}")
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

/// What to write: ConfigMaps to apply in order, then names to delete.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub apply: Vec<ConfigMap>,
    pub delete: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.apply.is_empty() && self.delete.is_empty()
    }
}

/// Compares the wanted ConfigMaps with those of the same table in the
/// cluster: only what differs in content or labels is applied, and
/// ConfigMaps of the table that are no longer wanted are deleted.
pub fn plan(wanted: Vec<ConfigMap>, existing: &[Arc<ConfigMap>]) -> Plan {
    let by_name: BTreeMap<&str, &ConfigMap> = existing
        .iter()
        .filter_map(|c| Some((c.metadata.name.as_deref()?, c.as_ref())))
        .collect();
    let delete = by_name
        .keys()
        .filter(|name| {
            !wanted
                .iter()
                .any(|w| w.metadata.name.as_deref() == Some(**name))
        })
        .map(|name| (*name).to_owned())
        .collect();
    let apply = wanted
        .into_iter()
        .filter(|w| {
            let name = w.metadata.name.as_deref().unwrap_or("");
            by_name.get(name).is_none_or(|e| !same_content(w, e))
        })
        .collect();
    Plan { apply, delete }
}

fn same_content(wanted: &ConfigMap, existing: &ConfigMap) -> bool {
    let labels_kept = wanted
        .metadata
        .labels
        .iter()
        .flatten()
        .all(|(k, v)| existing.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v));
    let empty_as_none = |d: &Option<BTreeMap<String, String>>| d.clone().filter(|m| !m.is_empty());
    let binary_as_none =
        |d: &Option<BTreeMap<String, ByteString>>| d.clone().filter(|m| !m.is_empty());
    labels_kept
        && empty_as_none(&wanted.data) == empty_as_none(&existing.data)
        && binary_as_none(&wanted.binary_data) == binary_as_none(&existing.binary_data)
}

/// The server-side apply body: apiVersion and kind are required.
pub fn apply_body(cm: &ConfigMap) -> serde_json::Value {
    let mut body = serde_json::to_value(cm).expect("a ConfigMap serializes");
    body["apiVersion"] = "v1".into();
    body["kind"] = "ConfigMap".into();
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use routing::fixtures::{authoritative, contact, organisation};
    use routing::table::encode;
    use routing::{CompileOptions, compile};

    fn encoded(contacts: usize) -> EncodedTable {
        let objects = organisation(contacts, 0, 2);
        encode(compile(&objects, &CompileOptions::default()).table())
    }

    fn names(cms: &[ConfigMap]) -> Vec<&str> {
        cms.iter()
            .map(|c| c.metadata.name.as_deref().unwrap())
            .collect()
    }

    #[test]
    fn a_small_table_is_one_configmap_with_manifest_and_base() {
        let mut objects = routing::Objects::default();
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
    fn every_file_is_in_exactly_one_configmap_below_the_object_limit() {
        let enc = encoded(60_000);
        let cms = table_configmaps("t", "ns", &enc);
        assert!(cms.len() > 2, "a 60k table has several shards");
        let mut seen = BTreeMap::new();
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
            for (k, v) in cm.binary_data.iter().flatten() {
                assert!(seen.insert(k.clone(), v.0.clone()).is_none());
            }
        }
        seen.insert(MANIFEST_KEY.into(), enc.files[MANIFEST_KEY].clone());
        assert_eq!(seen, enc.files);
    }

    #[test]
    fn nothing_to_do_when_the_cluster_holds_the_same_content() {
        let cms = table_configmaps("t", "ns", &encoded(100));
        let existing: Vec<Arc<ConfigMap>> = cms.iter().cloned().map(Arc::new).collect();
        assert!(plan(cms, &existing).is_empty());
    }

    #[test]
    fn only_changed_configmaps_are_applied_and_unwanted_ones_deleted() {
        let old = table_configmaps("t", "ns", &encoded(60_000));
        let new = table_configmaps("t", "ns", &encoded(100));
        let existing: Vec<Arc<ConfigMap>> = old.iter().cloned().map(Arc::new).collect();
        let p = plan(new.clone(), &existing);
        // shard 000 changed content, the main ConfigMap changed; the rest go.
        assert_eq!(names(&p.apply), ["t-shard-000", "t"]);
        let expected: Vec<String> = names(&old)[1..old.len() - 1]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(p.delete, expected);
    }

    #[test]
    fn a_missing_label_or_edited_value_is_repaired() {
        let cms = table_configmaps("t", "ns", &encoded(10));
        let mut edited = cms[1].clone();
        edited
            .data
            .as_mut()
            .unwrap()
            .insert(MANIFEST_KEY.into(), "{}".into());
        let mut unlabelled = cms[0].clone();
        unlabelled
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(TABLE_LABEL);
        let p = plan(cms.clone(), &[Arc::new(unlabelled), Arc::new(edited)]);
        assert_eq!(names(&p.apply), ["t-shard-000", "t"]);
        assert!(p.delete.is_empty());
    }

    #[test]
    fn the_apply_body_names_its_type() {
        let cms = table_configmaps("t", "ns", &encoded(1));
        let body = apply_body(&cms[1]);
        assert_eq!(body["apiVersion"], "v1");
        assert_eq!(body["kind"], "ConfigMap");
        assert_eq!(body["metadata"]["name"], "t");
        assert!(body["binaryData"]["base.zst"].is_string(), "base64 in JSON");
    }
}
