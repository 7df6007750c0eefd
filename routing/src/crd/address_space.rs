use super::{MailrouteStatus, patterns};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A domain this organisation accepts mail for (Exchange "accepted domain").
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mailroute.io",
    version = "v1alpha1",
    kind = "AddressSpace",
    namespaced,
    status = "MailrouteStatus",
    derive = "PartialEq",
    shortname = "mas",
    category = "mailroute",
    doc = "A domain this mail organisation accepts: authoritative, shared with another mail system, or an alias of another domain.",
    printcolumn = r#"{"name":"Domain","type":"string","jsonPath":".spec.domain"}"#,
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"RewriteTo","type":"string","jsonPath":".spec.rewriteTo","priority":1}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"LoopRisk","type":"string","jsonPath":".status.conditions[?(@.type==\"LoopRisk\")].status"}"#,
    printcolumn = r#"{"name":"Conflict","type":"string","jsonPath":".status.conditions[?(@.type==\"AuthoritativenessConflict\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("has(self.type) != has(self.rewriteTo)").message("exactly one of type and rewriteTo must be set"))]
#[serde(rename_all = "camelCase")]
pub struct AddressSpaceSpec {
    /// `example.com` (that domain only) or `*.example.com` (every subdomain at
    /// any depth, not the apex). Matched on whole labels, case-insensitively;
    /// internationalised names are converted to A-labels.
    #[schemars(length(min = 1, max = 253), regex(pattern = patterns::SPACE_DOMAIN))]
    pub domain: String,

    /// How recipients in this space are treated. Exactly one of `type` and
    /// `rewriteTo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<AddressSpaceType>,

    /// Makes this an alias domain: `user@<domain>` becomes `user@<rewriteTo>`
    /// and is resolved again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = patterns::DOMAIN))]
    pub rewrite_to: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum AddressSpaceType {
    /// Every valid recipient is known here; unknown recipients are refused (550 5.1.1).
    Authoritative,
    /// Shared with another mail system: unknown recipients go to the connector covering the domain.
    InternalRelay,
    /// Accepted and relayed as a whole to the connector covering the domain.
    ExternalRelay,
}

impl AddressSpaceType {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressSpaceType::Authoritative => "Authoritative",
            AddressSpaceType::InternalRelay => "InternalRelay",
            AddressSpaceType::ExternalRelay => "ExternalRelay",
        }
    }
}
