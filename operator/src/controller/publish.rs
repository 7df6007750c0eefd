//! What must change in the cluster to publish a table: the ConfigMaps (laid
//! out by [`routing::table::configmaps`]) whose content differs are applied,
//! shards first and the manifest last, and those no longer wanted are
//! deleted. Pure: the reconciler does the writing.

use k8s_openapi::api::core::v1::ConfigMap;
use std::collections::BTreeMap;
use std::sync::Arc;

pub use routing::table::configmaps::{
    MANAGED_BY, MANAGED_BY_LABEL, TABLE_LABEL, managed_selector, table_configmaps,
};

pub const FIELD_MANAGER: &str = "mailroute-operator";

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
    labels_kept
        && same_map(&wanted.data, &existing.data)
        && same_map(&wanted.binary_data, &existing.binary_data)
}

/// Equal maps, an absent map counting as empty (the API server drops empty ones).
fn same_map<V: PartialEq>(
    a: &Option<BTreeMap<String, V>>,
    b: &Option<BTreeMap<String, V>>,
) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        (Some(m), None) | (None, Some(m)) => m.is_empty(),
        (None, None) => true,
    }
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
    use routing::fixtures::published as encoded;
    use routing::table::MANIFEST_KEY;

    fn names(cms: &[ConfigMap]) -> Vec<&str> {
        cms.iter()
            .map(|c| c.metadata.name.as_deref().unwrap())
            .collect()
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
