//! SendingGrants → [`Grant`]s: validate each, give every principal to its
//! oldest grant (a newer grant naming it again is a conflict, and that
//! principal is left out of it), check what the grant refers to.

use super::cidr::Cidr;
use super::password::{HTPASSWD_KEY, Htpasswd, SECRET_TYPE};
use super::{Grant, SenderRule, Who};
use crate::address::normalize_domain;
use crate::compile::{age_order, name_of};
use crate::crd::{Kind, SendingGrant, SendingGrantSpec};
use crate::pattern::DomainPattern;
use crate::report::{Problems, Reason};
use std::collections::{BTreeMap, BTreeSet};

/// What the cluster holds that grants refer to. `None` in
/// [`crate::Objects`] (offline `check`): references are not checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterFacts {
    /// `(namespace, name)` of every ServiceAccount.
    pub service_accounts: BTreeSet<(String, String)>,
    /// The grants' namespace's Secrets by name: the `htpasswd` key's text,
    /// or `None` when the Secret has no such key.
    pub password_secrets: BTreeMap<String, Option<String>>,
}

/// Validates one spec into a grant named `name`.
pub fn validate(name: &str, spec: &SendingGrantSpec) -> Result<Grant, String> {
    if spec.principals.is_empty() {
        return Err("spec.principals: at least one is required".into());
    }
    let mut principals = Vec::with_capacity(spec.principals.len());
    for (i, p) in spec.principals.iter().enumerate() {
        let at = format!("spec.principals[{i}]");
        let set = [
            p.service_account.is_some(),
            p.password_secret.is_some(),
            p.client_certificate.is_some(),
            p.network.is_some(),
        ];
        if set.iter().filter(|&&x| x).count() != 1 {
            return Err(format!(
                "{at}: exactly one of serviceAccount, passwordSecret, clientCertificate and network"
            ));
        }
        let who = if let Some(sa) = &p.service_account {
            if sa.namespace.is_empty() || sa.name.as_deref() == Some("") {
                return Err(format!(
                    "{at}.serviceAccount: namespace and name must not be empty"
                ));
            }
            Who::ServiceAccount {
                namespace: sa.namespace.clone(),
                name: sa.name.clone(),
            }
        } else if let Some(s) = &p.password_secret {
            if s.name.is_empty() {
                return Err(format!("{at}.passwordSecret.name: empty"));
            }
            Who::PasswordSecret(s.name.clone())
        } else if let Some(c) = &p.client_certificate {
            match (&c.subject, &c.dns_name) {
                (Some(s), None) => Who::CertificateSubject(
                    super::normalize_subject(s)
                        .map_err(|e| format!("{at}.clientCertificate.subject: {e}"))?,
                ),
                (None, Some(d)) => Who::CertificateDnsName(
                    normalize_domain(d)
                        .map_err(|e| format!("{at}.clientCertificate.dnsName {d:?}: {e}"))?,
                ),
                _ => {
                    return Err(format!(
                        "{at}.clientCertificate: exactly one of subject and dnsName"
                    ));
                }
            }
        } else {
            let n = p.network.as_deref().unwrap_or_default();
            Who::Network(
                n.parse::<Cidr>()
                    .map_err(|e| format!("{at}.network: {e}"))?,
            )
        };
        principals.push(who);
    }
    principals.sort();
    if let Some(w) = principals.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("spec.principals: {} is listed twice", w[0]));
    }
    let mut relay_domains = spec
        .relay_domains
        .iter()
        .enumerate()
        .map(|(i, d)| {
            DomainPattern::parse(d, true).map_err(|e| format!("spec.relayDomains[{i}] {d:?}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    relay_domains.sort();
    relay_domains.dedup();
    let mut senders = spec
        .senders
        .iter()
        .enumerate()
        .map(|(i, s)| SenderRule::parse(s).map_err(|e| format!("spec.senders[{i}] {s:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    senders.sort();
    senders.dedup();
    if spec.messages_per_minute == Some(0) {
        return Err("spec.messagesPerMinute: must be at least 1".into());
    }
    if spec.max_recipients_per_message == Some(0) {
        return Err("spec.maxRecipientsPerMessage: must be at least 1".into());
    }
    Ok(Grant {
        name: name.to_owned(),
        principals,
        relay_domains,
        senders,
        messages_per_minute: spec.messages_per_minute,
        max_recipients: spec.max_recipients_per_message,
    })
}

/// Compiles the grants of one namespace, oldest first: sorted by name.
pub(crate) fn compile_all(
    objects: &[SendingGrant],
    facts: Option<&ClusterFacts>,
    problems: &mut Problems,
) -> Vec<Grant> {
    let mut ordered: Vec<&SendingGrant> = objects.iter().collect();
    age_order(&mut ordered, |g| &g.metadata);
    let mut owner: BTreeMap<Who, &str> = BTreeMap::new();
    let mut grants = Vec::with_capacity(ordered.len());
    for g in ordered {
        let name = name_of(&g.metadata);
        let mut grant = match validate(name, &g.spec) {
            Ok(grant) => grant,
            Err(e) => {
                problems.add(Kind::SendingGrant, name, Reason::InvalidSpec, e);
                continue;
            }
        };
        grant.principals.retain(|who| match owner.get(who) {
            Some(older) => {
                problems.add(
                    Kind::SendingGrant,
                    name,
                    Reason::DuplicateGrant,
                    format!("{who} is already granted by the older SendingGrant/{older}; it is left out of this one"),
                );
                false
            }
            None => {
                owner.insert(who.clone(), name);
                true
            }
        });
        if let Some(facts) = facts {
            check_references(&grant, facts, problems);
        }
        if !grant.principals.is_empty() {
            grants.push(grant);
        }
    }
    grants.sort_by(|a, b| a.name.cmp(&b.name));
    grants
}

/// A missing ServiceAccount or Secret, or a Secret whose `htpasswd` does
/// not parse, makes the grant not Ready; what does work keeps working.
fn check_references(grant: &Grant, facts: &ClusterFacts, problems: &mut Problems) {
    for who in &grant.principals {
        let problem = match who {
            Who::ServiceAccount {
                namespace,
                name: Some(n),
            } if !facts
                .service_accounts
                .contains(&(namespace.clone(), n.clone())) =>
            {
                Some((
                    Reason::MissingReference,
                    format!("ServiceAccount {namespace}/{n} does not exist"),
                ))
            }
            Who::ServiceAccount {
                namespace,
                name: None,
            } if !facts.service_accounts.iter().any(|(ns, _)| ns == namespace) => Some((
                Reason::MissingReference,
                format!("namespace {namespace} has no ServiceAccount"),
            )),
            Who::PasswordSecret(s) => match facts.password_secrets.get(s) {
                None => Some((
                    Reason::MissingReference,
                    format!("Secret {s} does not exist (or is not of type {SECRET_TYPE})"),
                )),
                Some(None) => Some((
                    Reason::InvalidSecret,
                    format!("Secret {s} has no key {HTPASSWD_KEY}"),
                )),
                Some(Some(text)) => Htpasswd::parse(text).errors.first().map(|e| {
                    (
                        Reason::InvalidSecret,
                        format!("Secret {s} key htpasswd: {e}; that user cannot authenticate"),
                    )
                }),
            },
            _ => None,
        };
        if let Some((reason, message)) = problem {
            problems.add(Kind::SendingGrant, &grant.name, reason, message);
        }
    }
}
