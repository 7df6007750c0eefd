//! Checks every field the schema cannot fully check (or that plain files
//! never passed through an API server for) and turns valid specs into
//! table entries. Errors name the field: `spec.smartHosts[1]: …`.

use crate::address::{Address, normalize_domain};
use crate::crd::{AddressSpace, AddressSpaceType, SmtpConnector, TlsMode};
use crate::crd::{MailContact, RecipientPolicy};
use crate::pattern::DomainPattern;
use crate::selector;
use crate::table::{ConnectorRoute, SmartHost, SpaceAction, SpaceRoute};
use crate::template::Template;
use hashbrown::HashSet;

pub(crate) fn address_space(s: &AddressSpace) -> Result<SpaceRoute, String> {
    let pattern = DomainPattern::parse(&s.spec.domain, false)
        .map_err(|e| format!("spec.domain {:?}: {e}", s.spec.domain))?;
    let action = match (&s.spec.r#type, &s.spec.rewrite_to) {
        (Some(_), Some(_)) | (None, None) => {
            return Err("exactly one of spec.type and spec.rewriteTo must be set".into());
        }
        (Some(AddressSpaceType::Authoritative), None) => SpaceAction::Authoritative,
        (Some(AddressSpaceType::InternalRelay), None) => SpaceAction::InternalRelay,
        (Some(AddressSpaceType::ExternalRelay), None) => SpaceAction::ExternalRelay,
        (None, Some(to)) => {
            let d = normalize_domain(to)
                .ok()
                .filter(|d| !d.starts_with('['))
                .ok_or_else(|| format!("spec.rewriteTo {to:?}: not a domain name"))?;
            SpaceAction::RewriteTo(d)
        }
    };
    Ok(SpaceRoute {
        pattern,
        name: super::name_of(&s.metadata).to_owned(),
        action,
        loops: false,
    })
}

/// `Ok(None)` for a valid but disabled connector.
pub(crate) fn connector(c: &SmtpConnector) -> Result<Option<ConnectorRoute>, String> {
    let spec = &c.spec;
    if spec.address_spaces.is_empty() {
        return Err("spec.addressSpaces: at least one is required".into());
    }
    let mut address_spaces = Vec::with_capacity(spec.address_spaces.len());
    let mut seen = HashSet::new();
    for (i, a) in spec.address_spaces.iter().enumerate() {
        let p = DomainPattern::parse(&a.domain, true)
            .map_err(|e| format!("spec.addressSpaces[{i}].domain {:?}: {e}", a.domain))?;
        if !(1..=100).contains(&a.cost()) {
            return Err(format!("spec.addressSpaces[{i}].cost: must be 1 to 100"));
        }
        if !seen.insert(p.clone()) {
            return Err(format!(
                "spec.addressSpaces[{i}].domain: {p} is listed twice"
            ));
        }
        address_spaces.push((p, a.cost()));
    }
    let smart_hosts = spec
        .smart_hosts
        .iter()
        .enumerate()
        .map(|(i, h)| SmartHost::parse(h).map_err(|e| format!("spec.smartHosts[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let max_message_size = match &spec.max_message_size {
        None => None,
        Some(q) => Some(
            parse_quantity(&q.0)
                .ok_or_else(|| format!("spec.maxMessageSize {:?}: not a size", q.0))?,
        ),
    };
    let auth_secret = match &spec.auth_secret_ref {
        Some(r) if r.name.is_empty() => return Err("spec.authSecretRef.name: empty".into()),
        r => r.as_ref().map(|r| r.name.clone()),
    };
    if !spec.is_enabled() {
        return Ok(None);
    }
    let tls = spec.tls.clone().unwrap_or_default();
    let tls_mode = tls.mode.unwrap_or(TlsMode::Opportunistic);
    Ok(Some(ConnectorRoute {
        name: super::name_of(&c.metadata).to_owned(),
        address_spaces,
        smart_hosts,
        tls_mode,
        tls_verify: tls_mode == TlsMode::Required && tls.verify.unwrap_or(true),
        auth_secret,
        max_message_size,
        loops: false,
    }))
}

/// A Kubernetes quantity as bytes: `1048576`, `25Mi`, `10M`, `1Gi`.
pub fn parse_quantity(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (digits, suffix) = q.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let mult: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A valid policy: its templates parsed, the primary one's position.
pub(crate) struct ValidPolicy {
    pub templates: Vec<Template>,
    pub primary: usize,
}

pub(crate) fn policy(p: &RecipientPolicy) -> Result<ValidPolicy, String> {
    if let Some(sel) = &p.spec.selector {
        selector::validate(sel).map_err(|e| format!("spec.{e}"))?;
    }
    if p.spec.address_templates.is_empty() {
        return Err("spec.addressTemplates: at least one is required".into());
    }
    let primaries: Vec<usize> = p
        .spec
        .address_templates
        .iter()
        .enumerate()
        .filter(|(_, t)| t.is_primary())
        .map(|(i, _)| i)
        .collect();
    if primaries.len() != 1 {
        return Err(format!(
            "spec.addressTemplates: exactly one template must be primary, found {}",
            primaries.len()
        ));
    }
    let templates = p
        .spec
        .address_templates
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Template::parse(&t.template)
                .map_err(|e| format!("spec.addressTemplates[{i}].template {:?}: {e}", t.template))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ValidPolicy {
        templates,
        primary: primaries[0],
    })
}

/// A valid contact: its target and proxy addresses parsed.
pub(crate) struct ValidContact {
    /// None: delivered as addressed.
    pub target: Option<Address>,
    pub proxies: Vec<Address>,
}

pub(crate) fn contact(c: &MailContact) -> Result<ValidContact, String> {
    let target = match &c.spec.target_address {
        None => None,
        Some(t) => Some(Address::parse(t).map_err(|e| format!("spec.targetAddress {t:?}: {e}"))?),
    };
    // Room for the addresses a policy adds, too.
    let mut proxies = Vec::with_capacity(c.spec.proxy_addresses.len() + 4);
    for (i, a) in c.spec.proxy_addresses.iter().enumerate() {
        let parsed =
            Address::parse(a).map_err(|e| format!("spec.proxyAddresses[{i}] {a:?}: {e}"))?;
        proxies.push(parsed);
    }
    Ok(ValidContact { target, proxies })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("1048576"), Some(1048576));
        assert_eq!(parse_quantity("25Mi"), Some(25 << 20));
        assert_eq!(parse_quantity("10M"), Some(10_000_000));
        assert_eq!(parse_quantity("1Gi"), Some(1 << 30));
        assert_eq!(parse_quantity("1.5Mi"), None);
        assert_eq!(parse_quantity("Mi"), None);
        assert_eq!(parse_quantity("-1"), None);
    }
}
