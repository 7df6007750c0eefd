//! Resolving one recipient (docs/design.md, "Resolving one recipient"): a pure function from
//! (recipient, may-relay, table) to a decision, optionally with the steps.

use crate::address::Address;
use crate::table::index::Next;
use crate::table::{RoutingTable, SpaceAction};

/// Rewrites allowed at run time before 554 5.4.6 (docs/design.md, "Resolving one recipient" step 5).
pub const MAX_REWRITES: u32 = 8;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send to `connector` with the envelope recipient `recipient`.
    Forward {
        recipient: String,
        connector: u32,
    },
    Reply(Reply),
}

impl Decision {
    /// `forward`, `reject` (5xx) or `defer` (4xx).
    pub fn action(&self) -> &'static str {
        match self {
            Decision::Forward { .. } => "forward",
            Decision::Reply(r) if r.code >= 500 => "reject",
            Decision::Reply(_) => "defer",
        }
    }

    /// A short machine-readable reason, for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Decision::Forward { .. } => "Routed",
            Decision::Reply(r) => r.reason.as_str(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: &'static str,
    pub text: String,
    pub reason: ReplyReason,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyReason {
    Malformed,
    RelayDenied,
    UnknownRecipient,
    NoRoute,
    RewriteCycle,
    ForwardsToSelf,
    TooManyRewrites,
}

impl ReplyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyReason::Malformed => "Malformed",
            ReplyReason::RelayDenied => "RelayDenied",
            ReplyReason::UnknownRecipient => "UnknownRecipient",
            ReplyReason::NoRoute => "NoRoute",
            ReplyReason::RewriteCycle => "RewriteCycle",
            ReplyReason::ForwardsToSelf => "ForwardsToSelf",
            ReplyReason::TooManyRewrites => "TooManyRewrites",
        }
    }

    fn reply(self, text: impl Into<String>) -> Decision {
        let (code, enhanced) = match self {
            ReplyReason::Malformed => (501, "5.1.3"),
            ReplyReason::RelayDenied => (554, "5.7.1"),
            ReplyReason::UnknownRecipient => (550, "5.1.1"),
            ReplyReason::NoRoute => (451, "4.4.0"),
            ReplyReason::RewriteCycle | ReplyReason::ForwardsToSelf => (451, "4.4.6"),
            ReplyReason::TooManyRewrites => (554, "5.4.6"),
        };
        Decision::Reply(Reply {
            code,
            enhanced,
            text: text.into(),
            reason: self,
        })
    }
}

/// Collects the human-readable steps of a resolution, or nothing.
pub trait Trace {
    fn note(&mut self, step: impl FnOnce() -> String);
}

impl Trace for () {
    fn note(&mut self, _: impl FnOnce() -> String) {}
}

impl Trace for Vec<String> {
    fn note(&mut self, step: impl FnOnce() -> String) {
        self.push(step());
    }
}

impl RoutingTable {
    /// The decision for one envelope recipient. `may_relay`: the client's
    /// address is in the relay networks or it authenticated.
    pub fn resolve(&self, recipient: &str, may_relay: bool) -> Decision {
        self.resolve_traced(recipient, may_relay, &mut ())
    }

    /// The decision plus the steps that led to it, for `mailroute trace`.
    pub fn trace(&self, recipient: &str, may_relay: bool) -> (Decision, Vec<String>) {
        let mut steps = Vec::new();
        let decision = self.resolve_traced(recipient, may_relay, &mut steps);
        (decision, steps)
    }

    pub fn resolve_traced(&self, recipient: &str, may_relay: bool, t: &mut impl Trace) -> Decision {
        let bare = recipient
            .strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .unwrap_or(recipient);
        match Address::parse(bare) {
            Ok(addr) => self.resolve_address(addr, bare, may_relay, 0, t),
            Err(e) => {
                t.note(|| format!("{recipient:?} is not a valid address: {e}"));
                ReplyReason::Malformed.reply("Bad recipient address syntax")
            }
        }
    }

    /// Resolution from an already parsed address. `rewrites` counts rewrites
    /// already made (a contact's target starts at 1). `original` is what is
    /// forwarded when nothing is rewritten.
    pub(crate) fn resolve_address(
        &self,
        mut addr: Address,
        original: &str,
        may_relay: bool,
        mut rewrites: u32,
        t: &mut impl Trace,
    ) -> Decision {
        let mut accepted = false;
        let mut rewritten = rewrites > 0;
        loop {
            let space = match self.next(&addr) {
                Next::NotOurs => {
                    t.note(|| format!("{} is not a domain of ours", addr.domain()));
                    if !(accepted || may_relay || rewritten) {
                        t.note(|| "the client may not relay: refused".to_owned());
                        return ReplyReason::RelayDenied.reply("Relay access denied");
                    }
                    if accepted || rewritten {
                        t.note(|| "the recipient was accepted before it was rewritten, so it is routed onward".to_owned());
                    } else {
                        t.note(|| "the client may relay".to_owned());
                    }
                    return self.route(addr, original, rewritten, t);
                }
                Next::Contact(space, contact) if contact.as_addressed() => {
                    t.note(|| accepted_by(&addr, space));
                    t.note(|| {
                        format!(
                            "{} is an address of MailContact/{}, a recipient known here: forwarded as addressed",
                            addr.key(),
                            contact.contact
                        )
                    });
                    return self.route(addr, original, rewritten, t);
                }
                Next::Contact(space, contact) => {
                    accepted = true;
                    t.note(|| accepted_by(&addr, space));
                    t.note(|| {
                        format!(
                            "{} is an address of MailContact/{}: rewritten to {}",
                            addr.key(),
                            contact.contact,
                            contact.target
                        )
                    });
                    if contact.loops {
                        t.note(|| {
                            format!(
                                "MailContact/{} is part of a rewrite cycle: deferred",
                                contact.contact
                            )
                        });
                        return ReplyReason::RewriteCycle
                            .reply("Routing loop detected; try again later");
                    }
                    match Address::parse(&contact.target) {
                        Ok(next) => next,
                        Err(_) => {
                            // The compiler validates targets; a table that fails here is damaged.
                            return ReplyReason::NoRoute
                                .reply("Invalid contact target in the routing table");
                        }
                    }
                }
                Next::Alias(space, to) => {
                    accepted = true;
                    t.note(|| accepted_by(&addr, space));
                    if space.loops {
                        t.note(|| {
                            format!(
                                "AddressSpace/{} is part of a rewrite cycle: deferred",
                                space.name
                            )
                        });
                        return ReplyReason::RewriteCycle
                            .reply("Routing loop detected; try again later");
                    }
                    let next = addr.with_domain(to);
                    t.note(|| format!("no contact has {}: rewritten to {next}", addr.key()));
                    next
                }
                Next::Space(space) => {
                    t.note(|| accepted_by(&addr, space));
                    return match space.action {
                        SpaceAction::Authoritative => {
                            t.note(|| {
                                format!(
                                    "no contact has {}: unknown in an authoritative space, refused",
                                    addr.key()
                                )
                            });
                            ReplyReason::UnknownRecipient
                                .reply("Recipient address rejected: User unknown")
                        }
                        _ => {
                            t.note(|| format!("no contact has {}: forwarded unchanged to the system that shares the space", addr.key()));
                            self.route(addr, original, rewritten, t)
                        }
                    };
                }
            };
            rewrites += 1;
            rewritten = true;
            if rewrites > MAX_REWRITES {
                t.note(|| format!("more than {MAX_REWRITES} rewrites: refused"));
                return ReplyReason::TooManyRewrites
                    .reply("Too many address rewrites (routing loop?)");
            }
            addr = space;
        }
    }

    fn route(
        &self,
        addr: Address,
        original: &str,
        rewritten: bool,
        t: &mut impl Trace,
    ) -> Decision {
        let Some(choice) = self.connector_for(addr.domain()) else {
            t.note(|| {
                format!(
                    "no enabled SmtpConnector covers {}: deferred",
                    addr.domain()
                )
            });
            return ReplyReason::NoRoute
                .reply(format!("No route to {}; try again later", addr.domain()));
        };
        let connector = self.connector(choice.connector);
        t.note(|| {
            format!(
                "SmtpConnector/{} covers {} (address space {}, cost {}): next hop {}",
                connector.name,
                addr.domain(),
                choice.pattern,
                choice.cost,
                connector.hosts_display().join(", ")
            )
        });
        if connector.loops {
            t.note(|| {
                format!(
                    "SmtpConnector/{} delivers to this relay itself: deferred",
                    connector.name
                )
            });
            return ReplyReason::ForwardsToSelf.reply("Routing loop detected; try again later");
        }
        let recipient = if rewritten {
            addr.to_string()
        } else {
            original.to_owned()
        };
        Decision::Forward {
            recipient,
            connector: choice.connector,
        }
    }
}

fn accepted_by(addr: &Address, space: &crate::table::SpaceRoute) -> String {
    format!(
        "{} is accepted by AddressSpace/{} ({}, {})",
        addr.domain(),
        space.name,
        space.pattern,
        space.action.describe()
    )
}
