use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The operator's report on one published table, and the relays' on what
/// they serve. Created and owned by the operator, one per namespace it
/// publishes a table in, named like the table's ConfigMap.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "mailroute.io",
    version = "v1alpha1",
    kind = "RoutingTable",
    namespaced,
    status = "RoutingTableStatus",
    derive = "PartialEq",
    shortname = "mrt",
    category = "mailroute",
    doc = "The table the operator published in this namespace and which relay pods serve it (written by the operator and the relays; not edited by hand).",
    printcolumn = r#"{"name":"Generation","type":"string","jsonPath":".status.shortGeneration"}"#,
    printcolumn = r#"{"name":"Relays","type":"string","jsonPath":".status.relaysServing"}"#,
    printcolumn = r#"{"name":"Problems","type":"integer","jsonPath":".status.objects.withProblems"}"#,
    printcolumn = r#"{"name":"Propagated","type":"string","jsonPath":".status.conditions[?(@.type==\"Propagated\")].status","priority":1}"#,
    printcolumn = r#"{"name":"Published","type":"date","jsonPath":".status.publishedAt","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RoutingTableSpec {
    /// The ConfigMap(s) the table is published as: `configMapName` (the
    /// manifest) and `configMapName-shard-NNN`.
    #[schemars(length(min = 1, max = 240))]
    pub config_map_name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutingTableStatus {
    /// The published table's content hash (its manifest's `version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<String>,
    /// Its first 12 hex digits, for columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_generation: Option<String>,
    /// When the operator published this generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at: Option<Time>,
    /// ConfigMaps the table takes (manifest and shards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_maps: Option<u32>,
    /// Bytes of table data across them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<ObjectCounts>,
    /// Ready relay pods serving the published generation, of all Ready relay
    /// pods of this namespace: `2/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relays_serving: Option<String>,
    /// One entry per relay pod, each written by that pod (its own field
    /// manager) when what it serves changes, and removed by the operator
    /// when the pod is gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["pod"]))]
    pub relays: Vec<RelayReport>,
    /// Published and Propagated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// How many objects of each kind the table was compiled from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectCounts {
    pub address_spaces: u64,
    pub recipient_policies: u64,
    pub mail_contacts: u64,
    pub smtp_connectors: u64,
    #[serde(default)]
    pub sending_grants: u64,
    /// Objects whose Ready condition is not True.
    pub with_problems: u64,
}

/// What one relay pod serves.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RelayReport {
    /// The pod's name (in the relay's namespace, `podNamespace`).
    pub pod: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    /// The generation it serves; absent while it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<String>,
    /// When it loaded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded_at: Option<Time>,
    /// Why the last table it tried was refused (it keeps serving the one
    /// before); absent after a load that succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}
