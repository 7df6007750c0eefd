//! What the relay answers its client after the final dot, as a pure
//! function of what each next hop said about the message: one reply, a
//! reply per recipient (PRDR), or a delivery status notification to send
//! first and the replies that depend on how that went.
//!
//! The guarantees (docs/relay.md, "One message, several next hops"):
//! - 250 only when every recipient is accounted for: its next hop accepted
//!   the message, or its sender was notified of the refusal (or asked not to
//!   be, or is `<>`, which is never notified);
//! - a permanent refusal never becomes a 4xx by itself: a 4xx makes the
//!   client send the whole message again, duplicating it at every next hop
//!   that accepted, so it is said only when something is temporarily wrong;
//! - with PRDR every recipient gets its own next hop's verdict: no
//!   notification, no duplicate.

use std::fmt::Write;

/// An SMTP reply: code, enhanced status code (RFC 3463) and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub code: u16,
    pub enhanced: [u8; 3],
    pub text: String,
}

impl Answer {
    pub fn new(code: u16, enhanced: [u8; 3], text: impl Into<String>) -> Answer {
        Answer {
            code,
            enhanced,
            text: text.into(),
        }
    }

    pub fn class(&self) -> Class {
        match self.code / 100 {
            2 => Class::Accepted,
            5 => Class::Refused,
            // 4xx, and anything a next hop should not have said.
            _ => Class::Deferred,
        }
    }

    /// The same reply with other text.
    fn retext(&self, text: String) -> Answer {
        Answer::new(self.code, self.enhanced, text)
    }

    /// `550 5.7.1 text`, for texts and logs.
    pub fn display(&self) -> String {
        let [a, b, c] = self.enhanced;
        format!("{} {a}.{b}.{c} {}", self.code, self.text)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Accepted,
    /// 4xx, or no verdict (the connection lost or timed out).
    Deferred,
    /// 5xx.
    Refused,
}

/// One next hop of a transaction and its verdict on the message.
#[derive(Clone, Copy, Debug)]
pub struct Hop<'a> {
    /// How it is named to the client and in logs (`SmtpConnector/mbx`).
    pub name: &'a str,
    /// Its reply to DATA or to the final dot; for a connection lost or
    /// timed out, the relay's own 4xx.
    pub answer: &'a Answer,
}

/// A recipient the client was told 250 at RCPT, in RCPT order.
#[derive(Clone, Copy, Debug)]
pub struct Recipient<'a> {
    /// As the client gave it.
    pub address: &'a str,
    /// Its next hop: an index into [`Transaction::hops`].
    pub hop: usize,
    /// Whether its sender wants to hear of a failure (RFC 3461: no NOTIFY,
    /// or NOTIFY with FAILURE).
    pub notify_failure: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct Transaction<'a> {
    pub hops: &'a [Hop<'a>],
    pub recipients: &'a [Recipient<'a>],
    /// The client asked for a reply per recipient (MAIL FROM … PRDR).
    pub prdr: bool,
    /// The envelope sender is `<>`: a notification itself, never notified of.
    pub null_sender: bool,
}

/// How a transaction ended, for metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Every next hop accepted.
    Delivered,
    /// Every next hop refused permanently.
    Refused,
    /// No next hop accepted and one failed temporarily: the client retries.
    Failed,
    /// Some accepted, some refused: a reply per recipient (PRDR).
    PartialPrdr,
    /// Some accepted, the refused ones' sender notified (or not to be): 250.
    PartialNotified,
    /// Some accepted, and a 4xx: the client retries, and the recipients
    /// that accepted may get the message twice.
    PartialDeferred,
    /// Some accepted, and a 5xx because the refusal could not be notified:
    /// the client's own bounce names every recipient, the delivered ones too.
    PartialRefused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
            Outcome::PartialPrdr => "partial_prdr",
            Outcome::PartialNotified => "partial_notified",
            Outcome::PartialDeferred => "partial_deferred",
            Outcome::PartialRefused => "partial_refused",
        }
    }
}

/// What to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// One reply for the whole message.
    Reply(Answer, Outcome),
    /// PRDR: `353`, then one reply per recipient in RCPT order, then `last`.
    PerRecipient { replies: Vec<Answer>, last: Answer },
    /// Notify the sender of refused recipients first; the reply depends on
    /// how that went.
    NotifyFirst(Notify),
}

/// A notification to send before answering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notify {
    /// The recipients it reports as failed (indices into the transaction's
    /// recipients).
    pub failed: Vec<usize>,
    /// The reply when its next hop accepted it.
    pub sent: Answer,
    /// The reply when it could not be delivered now (4xx): the client
    /// retries, and the recipients that accepted may get it twice.
    pub deferred: Answer,
    /// The reply when it was refused or cannot be routed: a retry would
    /// fail the same way and duplicate the delivered copies each time.
    pub refused: Answer,
}

impl Notify {
    /// The reply to the client, given the notification's own fate (its
    /// next hop's reply, or the relay's when it could not be sent).
    pub fn answer(&self, notification: &Answer) -> (Answer, Outcome) {
        match notification.class() {
            Class::Accepted => (self.sent.clone(), Outcome::PartialNotified),
            Class::Deferred => (self.deferred.clone(), Outcome::PartialDeferred),
            Class::Refused => (self.refused.clone(), Outcome::PartialRefused),
        }
    }
}

/// The longest next-hop text quoted in one of our replies, and the longest
/// passed back whole (in characters): a reply line stays under RFC 5321's
/// 512 octets.
const QUOTE: usize = 160;
const PASSED_BACK: usize = 400;

/// The reply to the client after the final dot.
pub fn decide(tx: &Transaction) -> Verdict {
    let Some(first) = tx.recipients.first() else {
        return Verdict::Reply(
            Answer::new(554, [5, 5, 1], "No valid recipients"),
            Outcome::Refused,
        );
    };
    let used = used_hops(tx);
    let class = |h: usize| tx.hops[h].answer.class();
    let first_of = |c: Class| used.iter().copied().find(|&h| class(h) == c);
    let uniform = used.iter().all(|&h| class(h) == class(first.hop));
    if uniform {
        return uniform_reply(tx, &used);
    }
    if tx.prdr {
        return per_recipient(tx);
    }
    let accepted = accepted_recipients(tx);
    if let Some(h) = first_of(Class::Deferred) {
        // Something to retry: the client sends the whole message again.
        let hop = &tx.hops[h];
        let text = format!(
            "{} ({}; {accepted} recipient(s) already accepted by another next hop may get this message twice)",
            clip(&hop.answer.text),
            hop.name,
        );
        return Verdict::Reply(hop.answer.retext(text), partial_or_failed(accepted));
    }
    // Accepted and refused, nothing temporary: the refused recipients'
    // sender must hear of them.
    let refused_hop = first_of(Class::Refused).expect("not uniform, nothing deferred");
    let refused: Vec<usize> = (0..tx.recipients.len())
        .filter(|&i| class(tx.recipients[i].hop) == Class::Refused)
        .collect();
    let failed: Vec<usize> = refused
        .iter()
        .copied()
        .filter(|&i| !tx.null_sender && tx.recipients[i].notify_failure)
        .collect();
    let hop = &tx.hops[refused_hop];
    let why = format!("{}: {}", hop.name, clip(&hop.answer.display()));
    if failed.is_empty() {
        let reason = if tx.null_sender {
            "the sender is <>"
        } else {
            "NOTIFY asked for none"
        };
        let text = format!(
            "Ok: accepted for {accepted} recipient(s); {} refused ({why}); no notification: {reason}",
            refused.len()
        );
        return Verdict::Reply(Answer::new(250, [2, 0, 0], text), Outcome::PartialNotified);
    }
    let named = named(tx, &refused);
    Verdict::NotifyFirst(Notify {
        sent: Answer::new(
            250,
            [2, 0, 0],
            format!(
                "Ok: accepted for {accepted} recipient(s); {} refused ({why}); the sender is notified",
                refused.len()
            ),
        ),
        deferred: Answer::new(
            451,
            [4, 3, 0],
            format!(
                "{named} refused ({why}) and the sender cannot be notified now; try again later ({accepted} recipient(s) already accepted may get this message twice)"
            ),
        ),
        refused: hop.answer.retext(format!(
            "{named} refused ({why}); delivered to {accepted} other recipient(s); the notification to the sender was refused"
        )),
        failed,
    })
}

/// The reply when it is already certain to be a 4xx, so every next hop
/// should be dropped now, before the final dot, and nothing delivered
/// anywhere: without PRDR, one next hop failing temporarily (at DATA, or
/// while the message is streamed) makes the client retry the whole
/// message, and every copy delivered meanwhile would be a duplicate.
/// `known`: the next hops with recipients that have a verdict so far.
pub fn abandon(prdr: bool, known: &[Hop]) -> Option<Answer> {
    if prdr {
        return None;
    }
    let hop = known.iter().find(|h| h.answer.class() == Class::Deferred)?;
    let text = format!("{} ({})", clip(hop.answer.text.trim()), hop.name);
    Some(hop.answer.retext(text))
}

/// Whether a notification may have to be sent, so the message's header
/// section (and, for RET=FULL, the message) must be kept while it is
/// streamed: only without PRDR, with several next hops, a sender that is
/// not `<>` and a recipient that wants to hear of failures.
pub fn may_notify(prdr: bool, null_sender: bool, hops: usize, notify_failure: &[bool]) -> bool {
    !prdr && !null_sender && hops > 1 && notify_failure.iter().any(|&n| n)
}

/// How many recipients may get the message twice when the client is given
/// `answer`: those whose next hop accepted, if the client will send again
/// (4xx) or believes they failed (5xx).
pub fn duplicates_risked(tx: &Transaction, answer: &Answer) -> usize {
    if answer.class() == Class::Accepted {
        0
    } else {
        accepted_recipients(tx)
    }
}

/// The next hops that have recipients, in order of first use.
fn used_hops(tx: &Transaction) -> Vec<usize> {
    let mut used: Vec<usize> = Vec::new();
    for r in tx.recipients {
        if !used.contains(&r.hop) {
            used.push(r.hop);
        }
    }
    used
}

fn accepted_recipients(tx: &Transaction) -> usize {
    tx.recipients
        .iter()
        .filter(|r| tx.hops[r.hop].answer.class() == Class::Accepted)
        .count()
}

fn partial_or_failed(accepted: usize) -> Outcome {
    if accepted > 0 {
        Outcome::PartialDeferred
    } else {
        Outcome::Failed
    }
}

/// Every next hop said the same class of thing.
fn uniform_reply(tx: &Transaction, used: &[usize]) -> Verdict {
    let first = &tx.hops[used[0]];
    let answer = first.answer;
    let outcome = match answer.class() {
        Class::Accepted => Outcome::Delivered,
        Class::Refused => Outcome::Refused,
        Class::Deferred => Outcome::Failed,
    };
    if answer.class() == Class::Accepted {
        let text = if let [only] = used {
            format!(
                "Ok: accepted by the next hop ({})",
                clip(tx.hops[*only].answer.text.trim())
            )
        } else {
            let mut text = format!("Ok: accepted by {} next hops (", used.len());
            for (n, &h) in used.iter().enumerate() {
                let sep = if n == 0 { "" } else { "; " };
                let _ = write!(
                    text,
                    "{sep}{}: {}",
                    tx.hops[h].name,
                    clip(tx.hops[h].answer.text.trim())
                );
            }
            text.push(')');
            text
        };
        return Verdict::Reply(Answer::new(250, [2, 0, 0], text), outcome);
    }
    if used.len() == 1 {
        // One next hop: its reply as it came (the sender sees the real reason).
        let text = cut(&answer.text, PASSED_BACK);
        return Verdict::Reply(answer.retext(text), outcome);
    }
    let text = format!(
        "{} ({}; all {} next hops {})",
        clip(&answer.text),
        first.name,
        used.len(),
        if outcome == Outcome::Refused {
            "refused the message"
        } else {
            "failed"
        }
    );
    Verdict::Reply(answer.retext(text), outcome)
}

/// PRDR: each recipient its own next hop's verdict; the last reply 250 when
/// any recipient was accepted, else a failure of the class that leaves the
/// per-recipient verdicts standing (a 5xx last reply would turn the client's
/// 4xx recipients into failures).
fn per_recipient(tx: &Transaction) -> Verdict {
    let replies: Vec<Answer> = tx
        .recipients
        .iter()
        .map(|r| {
            let hop = &tx.hops[r.hop];
            hop.answer.retext(format!(
                "<{}> {} ({})",
                r.address,
                clip(hop.answer.text.trim()),
                hop.name
            ))
        })
        .collect();
    let accepted = accepted_recipients(tx);
    let last = if accepted > 0 {
        Answer::new(
            250,
            [2, 0, 0],
            format!(
                "Ok: accepted for {accepted} of {} recipients",
                tx.recipients.len()
            ),
        )
    } else {
        Answer::new(
            451,
            [4, 0, 0],
            "Not accepted for any recipient; see the reply for each",
        )
    };
    Verdict::PerRecipient { replies, last }
}

/// `<a@x>, <b@y>`: the recipients `which`, at most a few by name.
fn named(tx: &Transaction, which: &[usize]) -> String {
    const SHOWN: usize = 3;
    let mut out = String::new();
    for (n, &i) in which.iter().take(SHOWN).enumerate() {
        let sep = if n == 0 { "" } else { ", " };
        let _ = write!(out, "{sep}<{}>", tx.recipients[i].address);
    }
    if which.len() > SHOWN {
        let _ = write!(out, " and {} more", which.len() - SHOWN);
    }
    out
}

/// A next hop's text as quoted in one of ours: [`QUOTE`] characters at most.
fn clip(text: &str) -> String {
    cut(text, QUOTE)
}

/// At most `max` characters of `text`, control characters (a multi-line
/// reply's line breaks) as spaces: a reply is one line.
fn cut(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
