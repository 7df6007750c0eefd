//! The routing table: what the compiler produces, the operator publishes,
//! and the relay loads (docs/design.md, "The published table").
//!
//! [`Table`] is the plain model; [`RoutingTable`] indexes it for lookups;
//! [`encode`] and [`load`] turn it into published files and back.

mod codec;
pub mod configmaps;
pub(crate) mod index;
mod shard;

pub use index::{ConnectorChoice, RoutingTable};
pub use shard::{
    EncodedTable, LoadError, MANIFEST_KEY, Manifest, ManifestCounts, ManifestShard, SCHEMA,
    SHARD_LIMIT, encode, load, load_routing,
};

use crate::address::{DomainError, normalize_domain};
use crate::crd::TlsMode;
use crate::grants::Grant;
use crate::pattern::DomainPattern;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// A compiled namespace. Spaces are sorted by pattern and connectors by
/// name; addresses come in a deterministic order (the compiler's claim
/// order, or shard by shard when loaded), so equal inputs give equal bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub spaces: Vec<SpaceRoute>,
    pub connectors: Vec<ConnectorRoute>,
    pub addresses: Vec<AddressRoute>,
    /// Who may send, sorted by grant name (published as `grants.json`).
    pub grants: Vec<Grant>,
}

impl Table {
    /// The same table with its addresses sorted by key, for comparing a
    /// compiled table with a loaded one.
    pub fn canonical(mut self) -> Table {
        self.addresses
            .sort_unstable_by(|a, b| a.address.cmp(&b.address));
        self
    }
}

/// An accepted domain pattern (a winning AddressSpace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpaceRoute {
    pub pattern: DomainPattern,
    /// The AddressSpace object's name.
    pub name: String,
    pub action: SpaceAction,
    /// The analyser proved that this alias domain rewrites in a circle.
    pub loops: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpaceAction {
    Authoritative,
    InternalRelay,
    ExternalRelay,
    RewriteTo(String),
}

impl SpaceAction {
    pub fn describe(&self) -> String {
        match self {
            SpaceAction::Authoritative => "Authoritative".into(),
            SpaceAction::InternalRelay => "InternalRelay".into(),
            SpaceAction::ExternalRelay => "ExternalRelay".into(),
            SpaceAction::RewriteTo(d) => format!("alias domain of {d}"),
        }
    }

    pub fn is_relay(&self) -> bool {
        matches!(
            self,
            SpaceAction::InternalRelay | SpaceAction::ExternalRelay
        )
    }
}

/// An enabled SmtpConnector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectorRoute {
    pub name: String,
    pub address_spaces: Vec<(DomainPattern, u32)>,
    /// Empty: deliver by the recipient domain's MX.
    pub smart_hosts: Vec<SmartHost>,
    pub tls_mode: TlsMode,
    pub tls_verify: bool,
    /// Name of the Secret with `username` / `password`.
    pub auth_secret: Option<String>,
    pub max_message_size: Option<u64>,
    /// The analyser proved that this connector delivers to the relay itself.
    pub loops: bool,
}

impl ConnectorRoute {
    pub fn hosts_display(&self) -> Vec<String> {
        if self.smart_hosts.is_empty() {
            return vec!["MX".to_owned()];
        }
        self.smart_hosts.iter().map(SmartHost::to_string).collect()
    }
}

/// One smart host: `host[:port]` (MX lookup of host) or `[host-or-ip][:port]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmartHost {
    /// Host name (canonical) or IP address, without brackets.
    pub host: String,
    pub port: u16,
    pub mx_lookup: bool,
}

impl SmartHost {
    pub fn parse(input: &str) -> Result<SmartHost, String> {
        let (host, port, mx_lookup) = if let Some(rest) = input.strip_prefix('[') {
            let (inner, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("{input:?}: missing ]"))?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| format!("{input:?}: unexpected {after:?} after ]"))?,
                ),
            };
            (strip_ipv6_tag(inner), port, false)
        } else {
            match input.split_once(':') {
                Some((h, p)) => (h, Some(p), true),
                None => (input, None, true),
            }
        };
        let port = match port {
            None => 25,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("{input:?}: invalid port {p:?}")),
            },
        };
        let host = match host.parse::<IpAddr>() {
            Ok(ip) if !mx_lookup => ip.to_string(),
            Ok(_) => {
                return Err(format!(
                    "{input:?}: an IP address must be written in brackets"
                ));
            }
            Err(_) => normalize_domain(host).map_err(|e: DomainError| format!("{input:?}: {e}"))?,
        };
        Ok(SmartHost {
            host,
            port,
            mx_lookup,
        })
    }

    /// Whether this host names one of the relay's own addresses.
    pub fn is_one_of(&self, names: &[String]) -> bool {
        names.contains(&self.host)
    }
}

fn strip_ipv6_tag(s: &str) -> &str {
    match s.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("ipv6:") => &s[5..],
        _ => s,
    }
}

/// Canonical form of a relay self address given with `--self`: a host name
/// or IP, with or without brackets and port.
pub fn normalize_self_address(input: &str) -> String {
    let s = input.trim().trim_end_matches('.');
    let host = if let Some(rest) = s.strip_prefix('[') {
        strip_ipv6_tag(rest.split(']').next().unwrap_or(rest))
    } else if s.matches(':').count() == 1 {
        s.split(':').next().unwrap_or(s)
    } else {
        s
    };
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => normalize_domain(host).unwrap_or_else(|_| host.to_ascii_lowercase()),
    }
}

impl fmt::Display for SmartHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.mx_lookup, self.host.contains(':')) {
            (true, _) => f.write_str(&self.host)?,
            (false, true) => write!(f, "[IPv6:{}]", self.host)?,
            (false, false) => write!(f, "[{}]", self.host)?,
        }
        if self.port != 25 {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

/// One address that resolves to a contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressRoute {
    /// Lookup key: lower-cased local part, `@`, canonical domain.
    pub address: String,
    /// The MailContact object's name (shared by the contact's addresses).
    pub contact: Arc<str>,
    /// Where the mail goes (validated; local part as written, canonical
    /// domain); empty: the contact has no target, and its mail is
    /// forwarded as addressed.
    pub target: Arc<str>,
    /// The analyser proved that this contact's route comes back to it.
    pub loops: bool,
}

impl AddressRoute {
    /// A known recipient forwarded unchanged (a MailContact without
    /// `targetAddress`), rather than rewritten to a target.
    pub fn as_addressed(&self) -> bool {
        self.target.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_hosts() {
        let h = SmartHost::parse("[10.0.0.11]").unwrap();
        assert_eq!(
            (h.host.as_str(), h.port, h.mx_lookup),
            ("10.0.0.11", 25, false)
        );
        assert_eq!(h.to_string(), "[10.0.0.11]");
        let h = SmartHost::parse("Mail.Example.com:2525").unwrap();
        assert_eq!(
            (h.host.as_str(), h.port, h.mx_lookup),
            ("mail.example.com", 2525, true)
        );
        assert_eq!(h.to_string(), "mail.example.com:2525");
        let h = SmartHost::parse("[IPv6:2001:DB8::1]:587").unwrap();
        assert_eq!((h.host.as_str(), h.port), ("2001:db8::1", 587));
        assert_eq!(h.to_string(), "[IPv6:2001:db8::1]:587");
        let h = SmartHost::parse("[relay.internal]").unwrap();
        assert!(!h.mx_lookup);
        for bad in [
            "10.0.0.1",
            "[10.0.0.1",
            "[10.0.0.1]x",
            "host:0",
            "host:99999",
            "bad host",
            "",
        ] {
            assert!(SmartHost::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn self_addresses() {
        assert_eq!(
            normalize_self_address("Relay.Mail.svc.cluster.local."),
            "relay.mail.svc.cluster.local"
        );
        assert_eq!(normalize_self_address("[10.96.0.20]:25"), "10.96.0.20");
        assert_eq!(normalize_self_address("relay:25"), "relay");
        assert_eq!(normalize_self_address("2001:db8:0::1"), "2001:db8::1");
    }
}
