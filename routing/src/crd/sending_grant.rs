use super::{MailrouteStatus, patterns};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Who may send through the relay, and what they may do (Exchange: a
/// receive connector's permissions; Postfix: `smtpd_sender_login_maps`
/// with SASL and `mynetworks`).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "mailroute.io",
    version = "v1alpha1",
    kind = "SendingGrant",
    namespaced,
    status = "MailrouteStatus",
    derive = "PartialEq",
    shortname = "msg",
    category = "mailroute",
    doc = "Sending rights: the principals (ServiceAccounts, users of a password Secret, TLS client certificates, networks) and what they may do: relay to which domains, as which senders, how fast.",
    printcolumn = r#"{"name":"Relay","type":"string","jsonPath":".spec.relayDomains","priority":1}"#,
    printcolumn = r#"{"name":"Senders","type":"string","jsonPath":".spec.senders"}"#,
    printcolumn = r#"{"name":"PerMinute","type":"integer","jsonPath":".spec.messagesPerMinute"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"LoopRisk","type":"string","jsonPath":".status.conditions[?(@.type==\"LoopRisk\")].status","priority":1}"#,
    printcolumn = r#"{"name":"Conflict","type":"string","jsonPath":".status.conditions[?(@.type==\"AuthoritativenessConflict\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SendingGrantSpec {
    /// Who this grant is for. A client is judged by one grant: the one of
    /// the principal it authenticated as (AUTH, else its TLS client
    /// certificate), else the most specific network containing its address.
    #[schemars(length(min = 1, max = 256))]
    pub principals: Vec<Principal>,

    /// Domains outside the accepted ones this principal may send to: `*`,
    /// `example.net` or `*.example.net`. Empty: accepted domains only (the
    /// relay's own recipients, as for anybody).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), inner(length(min = 1, max = 253), regex(pattern = patterns::CONNECTOR_DOMAIN)))]
    pub relay_domains: Vec<String>,

    /// The envelope senders and header `From` addresses it may use:
    /// `user@example.com`, `example.com` (any address of that domain) or
    /// `*.example.com`. Empty: any. The null sender `<>` is always allowed
    /// (it cannot impersonate anybody); the header `From` is still checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), inner(length(min = 1, max = 320), regex(pattern = patterns::SENDER)))]
    pub senders: Vec<String>,

    /// Messages per minute per relay replica (a sliding minute). Absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub messages_per_minute: Option<u32>,

    /// Recipients per message (RCPT beyond it: 452 4.5.3). Absent: the
    /// relay's `--max-recipients`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_recipients_per_message: Option<u32>,
}

/// Exactly one of the fields.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[x_kube(validation = Rule::new("[has(self.serviceAccount), has(self.passwordSecret), has(self.clientCertificate), has(self.network)].exists_one(x, x)").message("a principal is exactly one of serviceAccount, passwordSecret, clientCertificate and network"))]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    /// A pod authenticating with a projected token of its ServiceAccount
    /// (audience `mailroute`) as the AUTH password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ServiceAccountRef>,
    /// Every user of this Secret (in the grant's namespace): each key is a
    /// user name, its value the password's bcrypt (`$2b$`, `htpasswd -B`)
    /// or Argon2 (`$argon2id$`) hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<PasswordSecretRef>,
    /// A client presenting a TLS certificate that the relay's `--client-ca`
    /// verifies, with this subject or DNS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<ClientCertificate>,
    /// Clients whose address is in this CIDR (`10.12.0.0/16`, `2001:db8::/32`),
    /// without authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 2, max = 64),
        regex(pattern = r"^[0-9a-fA-F.:]+(/[0-9]{1,3})?$")
    )]
    pub network: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountRef {
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: String,
    /// Absent: every ServiceAccount of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
pub struct PasswordSecretRef {
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

/// Exactly one of `subject` and `dnsName`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.subject) != has(self.dnsName)").message("exactly one of subject and dnsName must be set"))]
#[serde(rename_all = "camelCase")]
pub struct ClientCertificate {
    /// The certificate's subject as RFC 4514 writes it, e.g. `CN=billing,O=Example`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub subject: Option<String>,
    /// A DNS name in the certificate's subjectAltName (cert-manager's `dnsNames`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = patterns::DOMAIN))]
    pub dns_name: Option<String>,
}
