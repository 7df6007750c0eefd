//! One mail transaction (MAIL … DATA): its recipients, each resolved with
//! the routing core on the table the transaction started with and checked
//! with its own next hop, and after the data the answer the outcome policy
//! (routing::outcome) gives for what the next hops said — with the
//! notification it may call for sent first, and one log line naming every
//! recipient, its next hop and that hop's reply.

use crate::Shared;
use crate::data::Kept;
use crate::downstream::{Envelope, HopId, MailParams, RcptParams};
use crate::dsn::{self, Failed, Returned};
use crate::fanout::{Hops, Rcpt};
use crate::reply::{Reply, display, from_answer, from_routing, queue_id, reply, to_answer};
use crate::table::Loaded;
use routing::Decision;
use routing::grants::Rights;
use routing::outcome::{self, Answer, Outcome, Verdict};
use smtp_proto::{
    RCPT_NOTIFY_DELAY, RCPT_NOTIFY_FAILURE, RCPT_NOTIFY_NEVER, RCPT_NOTIFY_SUCCESS, RcptTo,
};
use std::fmt::Write;
use std::sync::Arc;
use std::time::SystemTime;

pub struct Transaction {
    pub table: Arc<Loaded>,
    pub from: String,
    pub params: MailParams,
    /// The client asked for a reply per recipient (MAIL FROM … PRDR).
    pub prdr: bool,
    /// What the client may do, as of MAIL.
    pub rights: Rights,
    pub hops: Hops,
    pub recipients: Vec<Accepted>,
    pub arrival: SystemTime,
}

/// A recipient the client was told 250.
pub struct Accepted {
    /// As sent to the next hop, and as the client gave it.
    pub routed: String,
    pub given: String,
    pub hop: usize,
    pub dsn: RcptParams,
}

impl Accepted {
    /// RFC 3461 §4.1: a failure is reported unless NOTIFY was given without
    /// FAILURE (NEVER, or only SUCCESS or DELAY).
    fn notify_failure(&self) -> bool {
        self.dsn.notify == 0 || self.dsn.notify & RCPT_NOTIFY_FAILURE != 0
    }
}

/// What the client hears after its final dot.
pub enum Conclusion {
    One(Reply),
    /// PRDR: 353, a reply per recipient, then the last one.
    PerRecipient(Vec<Reply>, Reply),
}

impl Transaction {
    pub fn new(
        table: Arc<Loaded>,
        from: String,
        params: MailParams,
        prdr: bool,
        rights: Rights,
    ) -> Transaction {
        Transaction {
            table,
            rights,
            from,
            params,
            prdr,
            hops: Hops::default(),
            recipients: Vec::new(),
            arrival: SystemTime::now(),
        }
    }

    /// The reply for one RCPT, and the reason for metrics.
    pub async fn rcpt(&mut self, shared: &Shared, to: RcptTo<String>) -> (Reply, &'static str) {
        let config = &shared.config;
        if self.recipients.len() >= config.max_recipients {
            return (
                reply(452, "4.5.3", "Too many recipients"),
                "TooManyRecipients",
            );
        }
        if let Err(r) = self
            .rights
            .check_recipient_count(self.recipients.len() + 1, config.max_recipients)
        {
            return (reply(r.code(), r.enhanced(), r.text()), r.as_str());
        }
        let may_relay = self.rights.may_relay_to_recipient(&to.address);
        let (recipient, connector) = match self.table.routing.resolve(&to.address, may_relay) {
            Decision::Reply(r) => return (from_routing(&r), r.reason.as_str()),
            Decision::Forward {
                recipient,
                connector,
            } => (recipient, connector),
        };
        let table = self.table.clone();
        let route = table.routing.connector(connector);
        let too_big = matches!((route.max_message_size, self.params.size), (Some(max), Some(size)) if size as u64 > max);
        if too_big {
            return (
                reply(552, "5.3.4", "Message too big for this recipient's route"),
                "TooBig",
            );
        }
        let dsn = RcptParams {
            notify: to.flags
                & (RCPT_NOTIFY_NEVER
                    | RCPT_NOTIFY_SUCCESS
                    | RCPT_NOTIFY_FAILURE
                    | RCPT_NOTIFY_DELAY),
            orcpt: to.orcpt,
        };
        let envelope = Envelope {
            from: &self.from,
            params: &self.params,
            to: &recipient,
            original: &to.address,
            dsn: &dsn,
        };
        let id = HopId::of(connector, route, &recipient);
        let (hop, answer) = self
            .hops
            .rcpt(&shared.outbound, config.max_next_hops, id, route, &envelope)
            .await;
        match (hop, answer) {
            (Some(hop), Rcpt::Replied(r)) if r.is_positive_completion() => {
                self.hops.accepted(hop);
                self.recipients.push(Accepted {
                    routed: recipient,
                    given: to.address,
                    hop,
                    dsn,
                });
                (reply(250, "2.1.5", "Ok"), "Routed")
            }
            (_, Rcpt::Replied(r)) => (r, "NextHop"),
            (_, Rcpt::Failed(r, reason)) => (r, reason),
            (_, Rcpt::TooManyNextHops) => (
                // The sender retries this one in a transaction of its own
                // (RFC 5321 §4.5.3.1.10).
                reply(
                    452,
                    "4.5.3",
                    format!(
                        "Too many next hops for one transaction (at most {}); try this recipient in a new one",
                        config.max_next_hops
                    ),
                ),
                "TooManyNextHops",
            ),
        }
    }

    /// DATA at every next hop with recipients. Some(reply) when the
    /// transaction ends here: no recipients, no next hop took DATA, or one
    /// failed and without PRDR the whole message must be retried.
    pub async fn start_data(&mut self, shared: &Shared, session: &str) -> Option<Reply> {
        if self.recipients.is_empty() {
            return Some(reply(554, "5.5.1", "No valid recipients"));
        }
        self.hops.start_data(&shared.outbound).await;
        if let Some(r) = self.hops.abandon_reply(self.prdr) {
            self.hops.abandon();
            self.record(shared, session, &r, Outcome::Failed);
            return Some(r);
        }
        if self.hops.streaming() == 0 {
            // Every next hop refused DATA: one reply, as without PRDR (a
            // reply per recipient comes only after the data).
            let Verdict::Reply(answer, outcome) = self.with_outcome(false, outcome::decide) else {
                unreachable!("no next hop accepted, so one reply")
            };
            let r = from_answer(&answer);
            self.record(shared, session, &r, outcome);
            return Some(r);
        }
        None
    }

    /// Whether a notification may have to return the message, so it must
    /// be kept while it streams (routing::outcome::may_notify).
    pub fn may_notify(&self) -> bool {
        let wishes: Vec<bool> = self
            .recipients
            .iter()
            .map(Accepted::notify_failure)
            .collect();
        outcome::may_notify(self.prdr, self.from.is_empty(), self.hops.len(), &wishes)
    }

    /// After the final dot, with every next hop's verdict: the answer, the
    /// notification it needs sent first, the metrics and the log line.
    /// `trusted`: the client may relay, so RET=FULL returns the message.
    pub async fn conclude(
        &self,
        shared: &Shared,
        session: &str,
        trusted: bool,
        kept: Option<&Kept>,
    ) -> Conclusion {
        let verdict = self.with_outcome(self.prdr, outcome::decide);
        let (conclusion, last, outcome) = match verdict {
            Verdict::Reply(a, o) => (None, from_answer(&a), o),
            Verdict::PerRecipient { replies, last } => {
                let replies = replies.iter().map(from_answer).collect();
                (Some(replies), from_answer(&last), Outcome::PartialPrdr)
            }
            Verdict::NotifyFirst(notify) => {
                let sent = self
                    .notify(shared, session, &notify.failed, trusted, kept)
                    .await;
                let (a, o) = notify.answer(&to_answer(&sent));
                (None, from_answer(&a), o)
            }
        };
        if self.prdr && self.recipients.len() > 1 {
            shared.metrics.prdr(if conclusion.is_some() {
                "per_recipient"
            } else {
                "one"
            });
        }
        // Only a message not acknowledged as a whole can come again.
        if !last.is_positive_completion() {
            let answered = to_answer(&last);
            let risked =
                self.with_outcome(self.prdr, |tx| outcome::duplicates_risked(tx, &answered));
            shared.metrics.duplicate_risk.inc_by(risked as u64);
        }
        self.record(shared, session, &last, outcome);
        match conclusion {
            Some(replies) => Conclusion::PerRecipient(replies, last),
            None => Conclusion::One(last),
        }
    }

    /// The notification for `failed` (indices into the recipients), sent
    /// from `<>` to the sender through the table like any message; its next
    /// hop's reply, or ours. A sender the table cannot route counts as
    /// refused: retrying would fail the same way (routing::outcome::Notify).
    async fn notify(
        &self,
        shared: &Shared,
        session: &str,
        failed: &[usize],
        trusted: bool,
        kept: Option<&Kept>,
    ) -> Reply {
        let verdicts: Vec<Reply> = failed
            .iter()
            .map(|&i| {
                self.hops
                    .verdict(self.recipients[i].hop)
                    .cloned()
                    .unwrap_or_else(crate::fanout::not_sent)
            })
            .collect();
        let reports: Vec<Failed> = failed
            .iter()
            .zip(&verdicts)
            .map(|(&i, verdict)| {
                let r = &self.recipients[i];
                Failed {
                    recipient: &r.routed,
                    original: r
                        .dsn
                        .orcpt
                        .as_deref()
                        .or((r.given != r.routed).then_some(r.given.as_str())),
                    hop: &self.hops.get(r.hop).name,
                    reply: verdict,
                }
            })
            .collect();
        let empty = Kept::new(0, true);
        let kept = kept.unwrap_or(&empty);
        let full = trusted && kept.complete && self.params.ret & smtp_proto::MAIL_RET_FULL != 0;
        let report = dsn::Report {
            hostname: &shared.config.hostname,
            id: session,
            sender: &self.from,
            envid: self.params.envid.as_deref(),
            arrival: self.arrival,
            failed: &reports,
            returned: if full {
                Returned::Message(&kept.bytes)
            } else {
                Returned::Headers(kept.headers())
            },
        };
        let wire = report.compose(SystemTime::now());
        let (smtputf8, eight_bit) = report.needs(&wire);
        let sent = match self.table.routing.resolve(&self.from, true) {
            Decision::Reply(r) => reply(
                550,
                "5.4.4",
                format!(
                    "The notification to <{}> cannot be routed: {}",
                    self.from, r.text
                ),
            ),
            Decision::Forward {
                recipient,
                connector,
            } => {
                let route = self.table.routing.connector(connector);
                let params = MailParams {
                    size: Some(wire.len()),
                    eight_bit,
                    smtputf8,
                    ..MailParams::default()
                };
                let envelope = Envelope {
                    from: "",
                    params: &params,
                    to: &recipient,
                    original: &self.from,
                    dsn: &RcptParams::default(),
                };
                let id = HopId::of(connector, route, &recipient);
                shared.outbound.deliver(id, route, &envelope, &wire).await
            }
        };
        let result = match sent.code {
            200..=299 => "sent",
            500..=599 => "refused",
            _ => "deferred",
        };
        shared.metrics.notification(result);
        tracing::info!(
            session,
            to = %self.from,
            recipients = failed.len(),
            result,
            reply = %crate::reply::display(&sent),
            "delivery status notification"
        );
        sent
    }

    /// `f` of the transaction as the outcome policy sees it: each next
    /// hop's name and verdict, each recipient's next hop and NOTIFY wish.
    fn with_outcome<T>(&self, prdr: bool, f: impl FnOnce(&outcome::Transaction) -> T) -> T {
        let answers: Vec<Answer> = (0..self.hops.len())
            .map(|i| {
                let verdict = self.hops.verdict(i).cloned();
                to_answer(&verdict.unwrap_or_else(crate::fanout::not_sent))
            })
            .collect();
        let hops: Vec<outcome::Hop> = self
            .hops
            .iter()
            .zip(&answers)
            .map(|(hop, answer)| outcome::Hop {
                name: &hop.name,
                answer,
            })
            .collect();
        let recipients: Vec<outcome::Recipient> = self
            .recipients
            .iter()
            .map(|r| outcome::Recipient {
                address: &r.given,
                hop: r.hop,
                notify_failure: r.notify_failure(),
            })
            .collect();
        f(&outcome::Transaction {
            hops: &hops,
            recipients: &recipients,
            prdr,
            null_sender: self.from.is_empty(),
        })
    }

    /// Metrics, and the one log line that answers "where did this message
    /// go": every recipient, its next hop, that hop's reply.
    pub fn record(&self, shared: &Shared, session: &str, last: &Reply, outcome: Outcome) {
        let metrics = &shared.metrics;
        metrics.transaction(outcome.as_str());
        let used = self.hops.iter().filter(|h| h.recipients > 0).count();
        metrics.next_hops.observe(used as f64);
        if !tracing::enabled!(tracing::Level::INFO) {
            return;
        }
        // Each recipient's next hop, and each next hop's reply once: short,
        // because every byte of a log line is escaped and written.
        let mut recipients = String::new();
        for (n, r) in self.recipients.iter().enumerate() {
            let hop = &self.hops.get(r.hop).name;
            let sep = if n == 0 { "" } else { "; " };
            let _ = write!(recipients, "{sep}<{}>", r.given);
            if r.routed != r.given {
                let _ = write!(recipients, " as <{}>", r.routed);
            }
            let _ = write!(recipients, " via {hop}");
        }
        let mut replies = String::new();
        for (i, hop) in self
            .hops
            .iter()
            .enumerate()
            .filter(|(_, h)| h.recipients > 0)
        {
            let verdict = self.hops.verdict(i).map(display).unwrap_or_default();
            let sep = if replies.is_empty() { "" } else { "; " };
            let _ = write!(replies, "{sep}{}: {verdict}", hop.name);
            if let Some(id) = queue_id(&verdict) {
                let _ = write!(replies, " [queue id {id}]");
            }
        }
        // Delivered: the replies say it all.
        let reply = (outcome != Outcome::Delivered).then(|| display(last));
        // Strings as they are (record_str), not through Display.
        tracing::info!(
            session,
            from = self.from.as_str(),
            next_hops = used,
            prdr = self.prdr,
            outcome = outcome.as_str(),
            recipients = recipients.as_str(),
            replies = replies.as_str(),
            reply = reply.as_deref(),
            "transaction"
        );
    }
}
