//! Who may send through the relay: SendingGrants compiled into [`Grant`]s,
//! the [`Grants`] index a relay looks principals up in, and the decisions
//! about a client's rights ([`Rights`]): may it relay to this domain, use
//! this sender, send one more message now.
//!
//! Data flow: SendingGrant objects → [`compile`] (validate, claim each
//! principal for its oldest grant, check references) → `Table::grants`
//! (published as `grants.json`: principals by reference, never a secret) →
//! [`Grants`] in the relay → [`Rights`] per session.

pub mod cidr;
mod compile;
pub mod header_from;
pub mod limits;
pub mod password;
pub mod sasl;

pub(crate) use compile::compile_all;
pub use compile::{ClusterFacts, validate};

use crate::address::Address;
use crate::crd::{
    ClientCertificate, PasswordSecretRef, Principal, SendingGrantSpec, ServiceAccountRef,
};
use crate::pattern::DomainPattern;
use cidr::Cidr;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// One principal of a grant, validated and normalised.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Who {
    /// `name: None`: every ServiceAccount of the namespace.
    ServiceAccount {
        namespace: String,
        name: Option<String>,
    },
    /// The users of this Secret's `htpasswd` key.
    PasswordSecret(String),
    CertificateSubject(String),
    CertificateDnsName(String),
    Network(Cidr),
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Who::ServiceAccount {
                namespace,
                name: Some(name),
            } => write!(f, "ServiceAccount {namespace}/{name}"),
            Who::ServiceAccount {
                namespace,
                name: None,
            } => write!(f, "every ServiceAccount of namespace {namespace}"),
            Who::PasswordSecret(s) => write!(f, "the users of Secret {s}"),
            Who::CertificateSubject(s) => write!(f, "certificate subject {s:?}"),
            Who::CertificateDnsName(d) => write!(f, "certificate DNS name {d}"),
            Who::Network(c) => write!(f, "network {c}"),
        }
    }
}

impl Who {
    fn to_principal(&self) -> Principal {
        let mut p = Principal::default();
        match self {
            Who::ServiceAccount { namespace, name } => {
                p.service_account = Some(ServiceAccountRef {
                    namespace: namespace.clone(),
                    name: name.clone(),
                })
            }
            Who::PasswordSecret(s) => {
                p.password_secret = Some(PasswordSecretRef { name: s.clone() })
            }
            Who::CertificateSubject(s) => {
                p.client_certificate = Some(ClientCertificate {
                    subject: Some(s.clone()),
                    dns_name: None,
                })
            }
            Who::CertificateDnsName(d) => {
                p.client_certificate = Some(ClientCertificate {
                    subject: None,
                    dns_name: Some(d.clone()),
                })
            }
            Who::Network(c) => p.network = Some(c.to_string()),
        }
        p
    }
}

/// A certificate subject in the one form grants and certificates are
/// compared in: its attributes `TYPE=value` (type upper-cased, both sides
/// trimmed, `+`-joined ones apart), sorted, joined by commas — so
/// `CN=billing,O=Example` (RFC 4514's order) and `O = Example, CN = billing`
/// (OpenSSL's) are the same subject. Escaped commas stay in their value.
pub fn normalize_subject(subject: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in subject.chars() {
        match c {
            _ if escaped => {
                current.push(c);
                escaped = false;
            }
            '\\' => {
                current.push(c);
                escaped = true;
            }
            ',' | '+' | ';' => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    parts.push(current);
    let mut attributes = Vec::with_capacity(parts.len());
    for part in parts {
        let Some((t, v)) = part.split_once('=') else {
            return Err(format!("{part:?} is not TYPE=value"));
        };
        let (t, v) = (t.trim(), v.trim());
        if t.is_empty() || v.is_empty() {
            return Err(format!("{part:?} is not TYPE=value"));
        }
        attributes.push(format!("{}={v}", t.to_ascii_uppercase()));
    }
    attributes.sort();
    Ok(attributes.join(","))
}

/// An envelope sender or header `From` a grant allows.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SenderRule {
    /// An address's lookup key (local part lower-cased).
    Address(String),
    /// `example.com` or `*.example.com`.
    Domain(DomainPattern),
}

impl SenderRule {
    pub fn parse(input: &str) -> Result<SenderRule, String> {
        if input.contains('@') {
            let a = Address::parse(input).map_err(|e| e.to_string())?;
            Ok(SenderRule::Address(a.into_key()))
        } else {
            DomainPattern::parse(input, false)
                .map(SenderRule::Domain)
                .map_err(|e| e.to_string())
        }
    }

    pub fn allows(&self, address: &Address) -> bool {
        match self {
            SenderRule::Address(key) => *key == address.key(),
            SenderRule::Domain(p) => p.matches(address.domain()),
        }
    }
}

impl fmt::Display for SenderRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SenderRule::Address(a) => f.write_str(a),
            SenderRule::Domain(p) => write!(f, "{p}"),
        }
    }
}

/// A compiled SendingGrant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The SendingGrant object's name.
    pub name: String,
    /// Sorted; a principal appears in one grant only.
    pub principals: Vec<Who>,
    /// Outside domains it may send to (sorted); empty: accepted domains only.
    pub relay_domains: Vec<DomainPattern>,
    /// Sorted; empty: any sender.
    pub senders: Vec<SenderRule>,
    pub messages_per_minute: Option<u32>,
    pub max_recipients: Option<u32>,
}

impl Grant {
    /// The spec this grant is published as (`grants.json`), which
    /// [`validate`] reads back into an equal grant.
    pub fn to_spec(&self) -> SendingGrantSpec {
        SendingGrantSpec {
            principals: self.principals.iter().map(Who::to_principal).collect(),
            relay_domains: self.relay_domains.iter().map(|p| p.to_string()).collect(),
            senders: self.senders.iter().map(|s| s.to_string()).collect(),
            messages_per_minute: self.messages_per_minute,
            max_recipients_per_message: self.max_recipients,
        }
    }

    pub fn may_relay_to(&self, domain: &str) -> bool {
        self.relay_domains.iter().any(|p| p.matches(domain))
    }

    /// Whether `address` may be used as the envelope sender or header
    /// `From`. `None` is the null sender, always allowed.
    pub fn may_send_as(&self, address: Option<&Address>) -> bool {
        match address {
            None => true,
            Some(a) => self.senders.is_empty() || self.senders.iter().any(|r| r.allows(a)),
        }
    }

    /// What the Ready condition says of a grant that works.
    pub fn describe(&self) -> String {
        let relay = if self.relay_domains.is_empty() {
            "accepted domains only".to_owned()
        } else {
            let d: Vec<String> = self.relay_domains.iter().map(|p| p.to_string()).collect();
            format!("relay to {}", d.join(", "))
        };
        let senders = if self.senders.is_empty() {
            "any sender".to_owned()
        } else {
            let s: Vec<String> = self.senders.iter().map(|s| s.to_string()).collect();
            format!("as {}", s.join(", "))
        };
        let rate = match self.messages_per_minute {
            Some(n) => format!(", {n} message(s) per minute"),
            None => String::new(),
        };
        format!(
            "{} principal(s) may send: {relay}, {senders}{rate}",
            self.principals.len()
        )
    }
}

/// The grants a relay loaded, indexed by principal.
#[derive(Clone, Debug, Default)]
pub struct Grants {
    grants: Vec<Arc<Grant>>,
    /// (principal, grant index), in principal order.
    principals: Vec<(Who, usize)>,
    /// Network principals, most specific first.
    networks: Vec<(Cidr, usize)>,
}

impl Grants {
    pub fn new(grants: &[Grant]) -> Grants {
        let grants: Vec<Arc<Grant>> = grants.iter().cloned().map(Arc::new).collect();
        let mut principals: Vec<(Who, usize)> = grants
            .iter()
            .enumerate()
            .flat_map(|(i, g)| g.principals.iter().map(move |w| (w.clone(), i)))
            .collect();
        principals.sort();
        let mut networks: Vec<(Cidr, usize)> = principals
            .iter()
            .filter_map(|(w, i)| match w {
                Who::Network(c) => Some((c.clone(), *i)),
                _ => None,
            })
            .collect();
        networks.sort_by(|a, b| b.0.prefix().cmp(&a.0.prefix()).then(a.0.cmp(&b.0)));
        Grants {
            grants,
            principals,
            networks,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    pub fn len(&self) -> usize {
        self.grants.len()
    }

    fn find(&self, who: &Who) -> Option<&Arc<Grant>> {
        self.principals
            .binary_search_by(|(w, _)| w.cmp(who))
            .ok()
            .map(|at| &self.grants[self.principals[at].1])
    }

    /// The grant of a ServiceAccount: the one naming it, else the one
    /// naming its whole namespace.
    pub fn for_service_account(&self, namespace: &str, name: &str) -> Option<&Arc<Grant>> {
        let one = Who::ServiceAccount {
            namespace: namespace.to_owned(),
            name: Some(name.to_owned()),
        };
        self.find(&one).or_else(|| {
            self.find(&Who::ServiceAccount {
                namespace: namespace.to_owned(),
                name: None,
            })
        })
    }

    /// Every password Secret with its grant, in Secret name order: where a
    /// user name is in several, the first whose password matches wins.
    pub fn password_secrets(&self) -> impl Iterator<Item = (&str, &Arc<Grant>)> {
        self.principals.iter().filter_map(|(w, i)| match w {
            Who::PasswordSecret(s) => Some((s.as_str(), &self.grants[*i])),
            _ => None,
        })
    }

    /// The grant of a verified client certificate: its subject first, then
    /// its DNS names in the order given.
    pub fn for_certificate(&self, subject: &str, dns_names: &[String]) -> Option<&Arc<Grant>> {
        normalize_subject(subject)
            .ok()
            .and_then(|s| self.find(&Who::CertificateSubject(s)))
            .or_else(|| {
                dns_names.iter().find_map(|d| {
                    let d = crate::address::normalize_domain(d).ok()?;
                    self.find(&Who::CertificateDnsName(d))
                })
            })
    }

    /// The most specific network principal containing `ip`.
    pub fn for_network(&self, ip: IpAddr) -> Option<(&Cidr, &Arc<Grant>)> {
        self.networks
            .iter()
            .find(|(c, _)| c.contains(ip))
            .map(|(c, i)| (c, &self.grants[*i]))
    }

    /// Whether any grant has certificate principals (the relay asks TLS
    /// clients for a certificate only then).
    pub fn wants_certificates(&self) -> bool {
        self.principals
            .iter()
            .any(|(w, _)| matches!(w, Who::CertificateSubject(_) | Who::CertificateDnsName(_)))
    }
}

/// What one client may do: decided once per session (and again after AUTH).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rights {
    /// No grant: accepted domains only, any sender, the relay's limits.
    Anonymous,
    /// In the relay's `--relay-networks`: relay anywhere as anybody, as
    /// before grants existed.
    RelayNetwork,
    /// Judged by a grant. `principal`: who, for logs, metrics and the
    /// `Received` header (`serviceaccount:ns/name`, `user:alice`,
    /// `certificate:CN=…`, `network:10.0.0.0/8`); `rate_key`: whose rate
    /// it is (per authenticated identity, per client address for networks).
    Granted {
        grant: Arc<Grant>,
        principal: String,
        rate_key: String,
    },
}

/// A refusal of a grant decision, with the reply it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 553 5.7.1: the principal may not use this envelope sender.
    SenderNotAllowed,
    /// 553 5.7.1 after the data: the header `From` is not the principal's.
    HeaderFromNotAllowed,
    /// 450 4.7.1: over the grant's messages per minute.
    RateExceeded,
    /// 452 4.5.3: over the grant's recipients per message.
    TooManyRecipients,
}

impl Refusal {
    pub fn code(self) -> u16 {
        match self {
            Refusal::SenderNotAllowed | Refusal::HeaderFromNotAllowed => 553,
            Refusal::RateExceeded => 450,
            Refusal::TooManyRecipients => 452,
        }
    }

    pub fn enhanced(self) -> &'static str {
        match self {
            Refusal::SenderNotAllowed | Refusal::HeaderFromNotAllowed => "5.7.1",
            Refusal::RateExceeded => "4.7.1",
            Refusal::TooManyRecipients => "4.5.3",
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Refusal::SenderNotAllowed => "Sender address not allowed for this principal",
            Refusal::HeaderFromNotAllowed => "From header not allowed for this principal",
            Refusal::RateExceeded => "Message rate limit exceeded; try again later",
            Refusal::TooManyRecipients => "Too many recipients for this principal",
        }
    }

    /// The reason name for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::SenderNotAllowed => "SenderNotAllowed",
            Refusal::HeaderFromNotAllowed => "HeaderFromNotAllowed",
            Refusal::RateExceeded => "RateExceeded",
            Refusal::TooManyRecipients => "TooManyRecipients",
        }
    }
}

impl Rights {
    /// The rights of a client that has not authenticated: a verified
    /// client certificate's grant, else the most specific network (a
    /// grant's or the relay networks'; on a tie the grant), else none.
    pub fn unauthenticated(
        grants: &Grants,
        relay_networks: &[Cidr],
        client: IpAddr,
        certificate: Option<(&str, &[String])>,
    ) -> Rights {
        if let Some((subject, names)) = certificate
            && let Some(g) = grants.for_certificate(subject, names)
        {
            return Rights::Granted {
                grant: g.clone(),
                principal: format!("certificate:{subject}"),
                rate_key: format!("certificate:{subject}"),
            };
        }
        let relay = relay_networks
            .iter()
            .filter(|c| c.contains(client))
            .map(Cidr::prefix)
            .max();
        if let Some((c, g)) = grants.for_network(client)
            && relay.is_none_or(|r| c.prefix() >= r)
        {
            return Rights::Granted {
                grant: g.clone(),
                principal: format!("network:{c}"),
                rate_key: format!("client:{client}"),
            };
        }
        if relay.is_some() {
            Rights::RelayNetwork
        } else {
            Rights::Anonymous
        }
    }

    /// The rights of a ServiceAccount that authenticated with its token;
    /// `None`: no grant names it (AUTH fails as if the token were wrong).
    pub fn service_account(grants: &Grants, namespace: &str, name: &str) -> Option<Rights> {
        grants
            .for_service_account(namespace, name)
            .map(|g| Rights::Granted {
                grant: g.clone(),
                principal: format!("serviceaccount:{namespace}/{name}"),
                rate_key: format!("serviceaccount:{namespace}/{name}"),
            })
    }

    /// The rights of a password user of `secret`'s grant.
    pub fn user(grant: &Arc<Grant>, secret: &str, user: &str) -> Rights {
        Rights::Granted {
            grant: grant.clone(),
            principal: format!("user:{user}"),
            rate_key: format!("user:{secret}/{user}"),
        }
    }

    pub fn principal(&self) -> &str {
        match self {
            Rights::Anonymous => "anonymous",
            Rights::RelayNetwork => "relay-networks",
            Rights::Granted { principal, .. } => principal,
        }
    }

    pub fn grant(&self) -> Option<&Arc<Grant>> {
        match self {
            Rights::Granted { grant, .. } => Some(grant),
            _ => None,
        }
    }

    /// Whether mail to `domain`, not an accepted one, may be relayed.
    pub fn may_relay_to(&self, domain: &str) -> bool {
        match self {
            Rights::Anonymous => false,
            Rights::RelayNetwork => true,
            Rights::Granted { grant, .. } => grant.may_relay_to(domain),
        }
    }

    /// [`Rights::may_relay_to`] for a recipient as given in RCPT TO (the
    /// domain is only looked at when a grant decides).
    pub fn may_relay_to_recipient(&self, recipient: &str) -> bool {
        match self {
            Rights::Anonymous => false,
            Rights::RelayNetwork => true,
            Rights::Granted { grant, .. } => {
                let bare = recipient.trim_start_matches('<').trim_end_matches('>');
                match bare.rsplit_once('@') {
                    Some((_, domain)) => crate::address::normalize_domain(domain)
                        .is_ok_and(|d| grant.may_relay_to(&d)),
                    None => false,
                }
            }
        }
    }

    /// Whether a notification may return the whole message (RET=FULL): to
    /// a client that may relay anywhere, as before grants.
    pub fn trusted(&self) -> bool {
        match self {
            Rights::Anonymous => false,
            Rights::RelayNetwork => true,
            Rights::Granted { grant, .. } => grant.relay_domains.contains(&DomainPattern::Any),
        }
    }

    /// MAIL FROM: `None` is the null sender.
    pub fn check_sender(&self, sender: Option<&Address>) -> Result<(), Refusal> {
        match self.grant() {
            Some(g) if !g.may_send_as(sender) => Err(Refusal::SenderNotAllowed),
            _ => Ok(()),
        }
    }

    /// The header `From` addresses of a message (RFC 5322 allows several).
    pub fn check_header_from(&self, from: &[Address]) -> Result<(), Refusal> {
        match self.grant() {
            Some(g) if !from.iter().all(|a| g.may_send_as(Some(a))) => {
                Err(Refusal::HeaderFromNotAllowed)
            }
            _ => Ok(()),
        }
    }

    /// RCPT number `count` (1-based) of a transaction; `default`: the
    /// relay's `--max-recipients`, which a grant can lower but not raise.
    pub fn check_recipient_count(&self, count: usize, default: usize) -> Result<(), Refusal> {
        let limit = match self.grant().and_then(|g| g.max_recipients) {
            Some(n) => default.min(n as usize),
            None => default,
        };
        if count > limit {
            Err(Refusal::TooManyRecipients)
        } else {
            Ok(())
        }
    }

    /// Whose rate this client's messages count against, and the limit.
    pub fn rate(&self) -> Option<(&str, u32)> {
        match self {
            Rights::Granted {
                grant, rate_key, ..
            } => grant.messages_per_minute.map(|n| (rate_key.as_str(), n)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_subject;

    #[test]
    fn subjects_compare_whatever_the_order_and_spacing() {
        let a = normalize_subject("CN=billing,O=Example,C=DE").unwrap();
        assert_eq!(a, "C=DE,CN=billing,O=Example");
        assert_eq!(
            normalize_subject("C = DE, O = Example, cn = billing").unwrap(),
            a
        );
        assert_eq!(
            normalize_subject(r"CN=Doe\, Jane+UID=7").unwrap(),
            r"CN=Doe\, Jane,UID=7"
        );
        for bad in ["", "CN", "=x", "CN=", "CN=a,,O=b"] {
            assert!(normalize_subject(bad).is_err(), "{bad}");
        }
    }
}
