//! The custom resources of `mailroute.io/v1alpha1` (docs/design.md): the
//! five kinds users write, and RoutingTable, which the operator and the
//! relays write.
//!
//! Field names follow docs/design.md, "The API". The schema refuses what it can
//! (patterns, enums, CEL rules); the compiler checks everything again so that
//! `mailroute check` on plain files reports the same problems as `InvalidSpec`.

mod address_space;
mod mail_contact;
mod recipient_policy;
mod routing_table;
mod sending_grant;
mod smtp_connector;

pub use address_space::{AddressSpace, AddressSpaceSpec, AddressSpaceType};
pub use mail_contact::{MailContact, MailContactSpec, MailContactStatus};
pub use recipient_policy::{AddressTemplate, RecipientPolicy, RecipientPolicySpec};
pub use routing_table::{
    ObjectCounts, RelayReport, RoutingTable, RoutingTableSpec, RoutingTableStatus,
};
pub use sending_grant::{
    ClientCertificate, PasswordSecretRef, Principal, SendingGrant, SendingGrantSpec,
    ServiceAccountRef,
};
pub use smtp_connector::{
    ConnectorAddressSpace, SecretRef, SmtpConnector, SmtpConnectorSpec, TlsMode, TlsSettings,
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "mailroute.io";
pub const VERSION: &str = "v1alpha1";
pub const API_VERSION: &str = "mailroute.io/v1alpha1";

/// Schema patterns. Deliberately lenient about letters (upper case and
/// Unicode are allowed: the compiler lower-cases and converts to A-labels),
/// strict about structure.
pub(crate) mod patterns {
    pub const DOMAIN: &str = r"^[^.*@\s\[\]]+(\.[^.*@\s\[\]]+)*$";
    pub const SPACE_DOMAIN: &str = r"^(\*\.)?[^.*@\s\[\]]+(\.[^.*@\s\[\]]+)*$";
    pub const CONNECTOR_DOMAIN: &str = r"^(\*|(\*\.)?[^.*@\s\[\]]+(\.[^.*@\s\[\]]+)*)$";
    pub const ADDRESS: &str = r#"^([^@\s"]+|"([^"\\]|\\.)+")@[^@\s]+$"#;
    pub const SMART_HOST: &str = r"^(\[[^\]\s]+\]|[^\[\]:\s]+)(:[0-9]{1,5})?$";
    pub const TEMPLATE: &str = r"^[^@\s]+@[^.*@\s%]+(\.[^.*@\s%]+)*$";
    /// An address, a domain or `*.domain`: what a SendingGrant's sender may be.
    pub const SENDER: &str =
        r#"^(([^@\s"]+|"([^"\\]|\\.)+")@[^@\s*]+|(\*\.)?[^.*@\s\[\]]+(\.[^.*@\s\[\]]+)*)$"#;
}

/// What the operator found: the Ready, LoopRisk, AuthoritativenessConflict
/// and Stalled conditions, and the generation they describe.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MailrouteStatus {
    /// The `metadata.generation` these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, LoopRisk, AuthoritativenessConflict and Stalled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The five kinds in the order reports list them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    AddressSpace,
    RecipientPolicy,
    MailContact,
    SmtpConnector,
    SendingGrant,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::AddressSpace,
        Kind::RecipientPolicy,
        Kind::MailContact,
        Kind::SmtpConnector,
        Kind::SendingGrant,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::AddressSpace => "AddressSpace",
            Kind::RecipientPolicy => "RecipientPolicy",
            Kind::MailContact => "MailContact",
            Kind::SmtpConnector => "SmtpConnector",
            Kind::SendingGrant => "SendingGrant",
        }
    }

    pub fn from_kind(kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == kind)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The generated CustomResourceDefinitions: `Kind::ALL`'s, then RoutingTable.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    vec![
        AddressSpace::crd(),
        RecipientPolicy::crd(),
        MailContact::crd(),
        SmtpConnector::crd(),
        SendingGrant::crd(),
        RoutingTable::crd(),
    ]
}
