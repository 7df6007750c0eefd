use super::{MailrouteStatus, patterns};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A way out: the domains it serves and the hosts it delivers to.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mailroute.io",
    version = "v1alpha1",
    kind = "SmtpConnector",
    namespaced,
    status = "MailrouteStatus",
    derive = "PartialEq",
    shortname = "msc",
    category = "mailroute",
    doc = "A way out (Exchange SMTP connector, Postfix transport): the address spaces it serves and its smart hosts.",
    printcolumn = r#"{"name":"SmartHosts","type":"string","jsonPath":".spec.smartHosts"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"LoopRisk","type":"string","jsonPath":".status.conditions[?(@.type==\"LoopRisk\")].status"}"#,
    printcolumn = r#"{"name":"Conflict","type":"string","jsonPath":".status.conditions[?(@.type==\"AuthoritativenessConflict\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SmtpConnectorSpec {
    /// The domains this connector serves: `*`, `example.com` or `*.example.com`,
    /// each with a cost (lower wins among equally specific matches).
    #[schemars(length(min = 1, max = 1000))]
    pub address_spaces: Vec<ConnectorAddressSpace>,

    /// `host[:port]` (MX lookup of host) or `[host-or-ip][:port]` (no MX
    /// lookup). Tried in order. Empty: deliver by the recipient domain's MX.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 261), regex(pattern = patterns::SMART_HOST)))]
    pub smart_hosts: Vec<String>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,

    /// Secret in this namespace with `username` and `password` for AUTH at the smart hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret_ref: Option<SecretRef>,

    /// Largest message this connector takes, in bytes or as a quantity (`25Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_size: Option<Quantity>,

    /// A disabled connector is never selected (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

impl SmtpConnectorSpec {
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorAddressSpace {
    #[schemars(length(min = 1, max = 253), regex(pattern = patterns::CONNECTOR_DOMAIN))]
    pub domain: String,
    /// 1–100, default 1. Among equally specific matches the lowest cost wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub cost: Option<u32>,
}

impl ConnectorAddressSpace {
    pub fn cost(&self) -> u32 {
        self.cost.unwrap_or(1)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSettings {
    /// `None`, `Opportunistic` (default: STARTTLS when offered, certificate not
    /// checked) or `Required`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<TlsMode>,
    /// With `Required`: check the certificate chain and host name (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<bool>,
}

#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum TlsMode {
    None,
    #[default]
    Opportunistic,
    Required,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub struct SecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}
