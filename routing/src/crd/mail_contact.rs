use super::patterns;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A recipient: the addresses that resolve to it and where its mail goes.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "mailroute.io",
    version = "v1alpha1",
    kind = "MailContact",
    namespaced,
    status = "MailContactStatus",
    derive = "PartialEq",
    shortname = "mct",
    category = "mailroute",
    doc = "A recipient (Exchange contact, sendmail alias): its addresses resolve to targetAddress; without one, a recipient known here whose mail is forwarded as addressed.",
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.targetAddress"}"#,
    printcolumn = r#"{"name":"Primary","type":"string","jsonPath":".status.primaryAddress","priority":1}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"LoopRisk","type":"string","jsonPath":".status.conditions[?(@.type==\"LoopRisk\")].status"}"#,
    printcolumn = r#"{"name":"Conflict","type":"string","jsonPath":".status.conditions[?(@.type==\"AuthoritativenessConflict\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MailContactSpec {
    /// Where this contact's mail goes: the envelope recipient is rewritten to
    /// it and resolved again. Absent: the contact is a recipient known here
    /// whose mail is forwarded as addressed, through the SmtpConnector that
    /// covers its domain (a gateway's valid recipient, Postfix's
    /// `relay_recipient_maps`): in an Authoritative space it is accepted and
    /// forwarded, where an unknown recipient is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 320), regex(pattern = patterns::ADDRESS))]
    pub target_address: Option<String>,

    /// Extra addresses that resolve to this contact.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), inner(length(min = 3, max = 320), regex(pattern = patterns::ADDRESS)))]
    pub proxy_addresses: Vec<String>,

    /// Mail nickname, `%m` in recipient policy templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub alias: Option<String>,
    /// `%g` in templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub given_name: Option<String>,
    /// `%s` in templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub surname: Option<String>,
    /// `%d` in templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub display_name: Option<String>,
    /// `%i` in templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub initials: Option<String>,

    /// Whether recipient policies stamp addresses onto this contact (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_recipient_policies: Option<bool>,
}

impl MailContactSpec {
    /// Whether its mail is forwarded as addressed (no `targetAddress`).
    pub fn delivers_as_addressed(&self) -> bool {
        self.target_address.is_none()
    }

    pub fn applies_recipient_policies(&self) -> bool {
        self.apply_recipient_policies.unwrap_or(true)
    }
}

/// A contact's status: conditions plus the addresses that resolve to it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MailContactStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The reply address: the primary policy template's, else the first proxy address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_address: Option<String>,
    /// Every address in the published table that resolves to this contact.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}
