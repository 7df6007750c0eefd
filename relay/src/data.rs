//! Receiving a message and streaming it to the transaction's next hops.
//!
//! The message goes on as it came on the wire (dot-stuffed CRLF lines), after
//! our Received header, with nothing forwarded until the header section is
//! complete (the hop count must be known first); each block read from the
//! client is written to every next hop at once. Any problem with the message
//! itself — a bare CR or LF, an over-long line, too many hops, too big — is
//! remembered while the client's data is read to its strict CRLF.CRLF end;
//! then every next hop is dropped without the final dot (each discards the
//! partial message) and the client gets the matching refusal. A next hop
//! lost on the way is dropped the same way; whether the others go on is
//! the outcome policy's call (routing::outcome::abandon).

use crate::fanout::Hops;
use crate::lines::{Line, LineReader};
use crate::received::is_received;
use crate::reply::{Reply, reply};
use routing::grants::Rights;
use routing::grants::header_from::{self, MAX_FIELD};
use std::time::Duration;
use tokio::io::AsyncRead;

/// Bytes gathered before a write to the next hops.
const FLUSH_AT: usize = 64 * 1024;
/// The first allocation for them: a typical message fits.
const START_AT: usize = 8 * 1024;

pub struct DataLimits {
    pub max_message_size: usize,
    pub max_line: usize,
    pub hop_limit: usize,
    pub timeout: Duration,
}

pub enum DataOutcome {
    /// The message reached its end and every next hop has its verdict.
    Finished,
    /// The message is refused as a whole, with this reply; every next hop
    /// still taking it was dropped without the final dot.
    Refused(Reply),
    /// The client went away (or stalled past the timeout) mid-message.
    ClientLost,
}

/// What is kept of a message while it streams, in case a notification
/// must return it (routing::outcome::may_notify): at most `limit` bytes —
/// the header section only, unless the notification may return the whole
/// message (RET=FULL from a client that may relay) — and where its header
/// section ends.
pub struct Kept {
    limit: usize,
    headers_only: bool,
    pub bytes: Vec<u8>,
    /// The length of the header section, once it ended within the limit.
    pub header_end: Option<usize>,
    /// The whole message is in `bytes`.
    pub complete: bool,
}

impl Kept {
    pub fn new(limit: usize, headers_only: bool) -> Kept {
        Kept {
            limit,
            headers_only,
            bytes: Vec::new(),
            header_end: None,
            complete: true,
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        if self.headers_only && self.header_end.is_some() {
            self.complete = false;
        } else if self.complete && self.bytes.len() + bytes.len() <= self.limit {
            self.bytes.extend_from_slice(bytes);
        } else {
            self.complete = false;
        }
    }

    /// The header section (cut at the limit when it is longer).
    pub fn headers(&self) -> &[u8] {
        &self.bytes[..self.header_end.unwrap_or(self.bytes.len())]
    }
}

/// The header `From` field, unfolded, gathered while the header section
/// is read, for a principal whose grant names its senders.
struct FromField<'r> {
    rights: &'r Rights,
    value: Option<String>,
    open: bool,
    too_long: bool,
}

impl FromField<'_> {
    fn see(&mut self, line: &[u8]) {
        let continued = self.open && line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        let starts = line.len() >= 5 && line[..5].eq_ignore_ascii_case(b"from:");
        if !continued && !starts {
            self.open = false;
            return;
        }
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\r', '\n']);
        let part = if continued {
            text
        } else {
            self.open = true;
            match self.value.as_mut() {
                // Several From fields (invalid, but seen): all are checked.
                Some(v) => v.push(','),
                None => self.value = Some(String::new()),
            }
            &text[5..]
        };
        let value = self.value.get_or_insert_with(String::new);
        if value.len() + part.len() > MAX_FIELD {
            self.too_long = true;
        } else {
            value.push_str(part);
        }
    }

    /// The refusal when the field names an address the grant does not
    /// allow, or cannot be read. No From field: nothing to check here (the
    /// envelope sender was).
    fn verdict(&self) -> Option<Reply> {
        let allowed = match (&self.value, self.too_long) {
            (None, _) => true,
            (Some(_), true) => false,
            (Some(v), false) => {
                header_from::addresses(v).is_ok_and(|a| self.rights.check_header_from(&a).is_ok())
            }
        };
        (!allowed).then(|| {
            let r = routing::grants::Refusal::HeaderFromNotAllowed;
            reply(r.code(), r.enhanced(), r.text())
        })
    }
}

/// The outcome and the size of the message as received. `senders`: the
/// client's rights when its grant limits the header `From`.
pub async fn receive<S: AsyncRead + Unpin>(
    io: &mut LineReader<S>,
    hops: &mut Hops,
    received_header: String,
    limits: &DataLimits,
    prdr: bool,
    mut kept: Option<&mut Kept>,
    senders: Option<&Rights>,
) -> (DataOutcome, usize) {
    let mut from = senders.map(|rights| FromField {
        rights,
        value: None,
        open: false,
        too_long: false,
    });
    let mut size = 0usize;
    // Grown as the message comes, up to a block: a small message takes
    // 8 KiB, not a block, of memory for its life.
    let block = FLUSH_AT + limits.max_line;
    let mut out: Vec<u8> = Vec::with_capacity(received_header.len() + START_AT);
    out.extend_from_slice(received_header.as_bytes());
    if let Some(k) = kept.as_deref_mut() {
        k.take(received_header.as_bytes());
    }
    let mut in_headers = true;
    let mut hops_seen = 0usize;
    let mut failure: Option<Reply> = None;
    // A lone "." ends the data only after a strict CRLF: "\n.\r\n" is the
    // smuggling sequence, not an end.
    let mut after_crlf = true;
    loop {
        // A timer only when the next line has yet to come: a message's
        // lines mostly arrive many at a time.
        let read = if io.has_line() {
            Ok(io.next_line(limits.max_line).await)
        } else {
            tokio::time::timeout(limits.timeout, io.next_line(limits.max_line)).await
        };
        let line = match read {
            Ok(Ok(Some(line))) => line,
            _ => {
                hops.abandon();
                return (DataOutcome::ClientLost, size);
            }
        };
        let line = match line {
            Line::Ok(l) => l,
            Line::BareNewline => {
                after_crlf = false;
                failure.get_or_insert_with(|| {
                    reply(
                        554,
                        "5.5.2",
                        "Message refused: bare CR or LF in message data",
                    )
                });
                continue;
            }
            Line::TooLong => {
                after_crlf = true;
                failure
                    .get_or_insert_with(|| reply(554, "5.6.0", "Message refused: line too long"));
                continue;
            }
        };
        if line == b".\r\n" && after_crlf {
            if in_headers && let Some(f) = from.as_ref().and_then(FromField::verdict) {
                failure.get_or_insert(f);
            }
            break;
        }
        after_crlf = true;
        size += line.len();
        if size > limits.max_message_size {
            failure.get_or_insert_with(|| reply(552, "5.3.4", "Message size exceeds fixed limit"));
        }
        if in_headers {
            if line == b"\r\n" {
                in_headers = false;
                // Nothing went to a next hop yet: a refusal here is clean.
                if let Some(f) = from.as_ref().and_then(FromField::verdict) {
                    failure.get_or_insert(f);
                }
                if let Some(k) = kept.as_deref_mut()
                    && k.complete
                {
                    k.header_end = Some(k.bytes.len());
                }
            } else {
                if let Some(f) = from.as_mut() {
                    f.see(line);
                }
                if is_received(line) {
                    hops_seen += 1;
                    if hops_seen > limits.hop_limit {
                        failure.get_or_insert_with(|| {
                            reply(
                                554,
                                "5.4.6",
                                format!(
                                    "Too many hops ({} Received headers): routing loop",
                                    hops_seen
                                ),
                            )
                        });
                    }
                }
            }
        }
        if failure.is_some() {
            continue;
        }
        if let Some(k) = kept.as_deref_mut() {
            k.take(line);
        }
        if out.len() + line.len() > out.capacity() && out.capacity() < block {
            // Past the first allocation: straight to a whole block, not
            // doubling past it (a header section longer than a block
            // grows as a Vec does).
            out.reserve_exact(block.saturating_sub(out.len()).max(line.len()));
        }
        out.extend_from_slice(line);
        if !in_headers && out.len() >= FLUSH_AT {
            failure = send(hops, &out, prdr).await;
            out.clear();
        }
    }
    if let Some(f) = failure {
        hops.abandon();
        return (DataOutcome::Refused(f), size);
    }
    if hops.streaming() > 1 {
        // Before any next hop gets its final dot, one that gave up on the
        // way is known: without PRDR, none then gets it.
        hops.gave_up();
        if let Some(f) = hops.abandon_reply(prdr) {
            hops.abandon();
            return (DataOutcome::Refused(f), size);
        }
    }
    // The rest of the message and the final dot in one write.
    out.extend_from_slice(b".\r\n");
    hops.finish(&out).await;
    (DataOutcome::Finished, size)
}

/// `bytes` to every next hop still taking the message; the reply for the
/// whole message when one failing means none may deliver.
async fn send(hops: &mut Hops, bytes: &[u8], prdr: bool) -> Option<Reply> {
    if hops.streaming() == 0 {
        // With PRDR every next hop may have failed on the way: the client's
        // data is still read to its end, and each recipient told why.
        return None;
    }
    hops.write(bytes).await;
    hops.abandon_reply(prdr)
}
