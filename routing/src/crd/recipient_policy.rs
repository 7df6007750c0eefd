use super::{MailrouteStatus, patterns};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Stamps addresses onto the contacts it selects (Exchange e-mail address policy).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mailroute.io",
    version = "v1alpha1",
    kind = "RecipientPolicy",
    namespaced,
    status = "MailrouteStatus",
    derive = "PartialEq",
    shortname = "mrp",
    category = "mailroute",
    doc = "Stamps addresses built from templates onto the MailContacts it selects.",
    printcolumn = r#"{"name":"Priority","type":"integer","jsonPath":".spec.priority"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"LoopRisk","type":"string","jsonPath":".status.conditions[?(@.type==\"LoopRisk\")].status"}"#,
    printcolumn = r#"{"name":"Conflict","type":"string","jsonPath":".status.conditions[?(@.type==\"AuthoritativenessConflict\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RecipientPolicySpec {
    /// Label selector over the namespace's MailContacts; empty selects all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,

    /// Lower wins. A contact gets addresses from the single highest-priority
    /// policy that selects it (ties: older object, then name).
    #[serde(default)]
    pub priority: i32,

    /// `%g` given name, `%s` surname, `%i` initials, `%m` alias, `%d` display
    /// name, `%Ng`/`%Ns` first N characters, `%rXY` replace X by Y, `%%` a
    /// percent sign. Exactly one template is primary.
    #[x_kube(validation = Rule::new("self.filter(t, has(t.primary) && t.primary).size() == 1").message("exactly one address template must be primary"))]
    #[schemars(length(min = 1, max = 32))]
    pub address_templates: Vec<AddressTemplate>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddressTemplate {
    /// `localpart-template@domain`, e.g. `%g.%s@example.com`.
    #[schemars(length(min = 3, max = 320), regex(pattern = patterns::TEMPLATE))]
    pub template: String,
    /// The reply address of the contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
}

impl AddressTemplate {
    pub fn is_primary(&self) -> bool {
        self.primary.unwrap_or(false)
    }
}
