//! Receiving a message and streaming it to the next hop.
//!
//! The message goes on as it came on the wire (dot-stuffed CRLF lines), after
//! our Received header, with nothing forwarded until the header section is
//! complete (the hop count must be known first). Any problem — a bare CR or
//! LF, an over-long line, too many hops, too big, the next hop lost — is
//! remembered while the client's data is read to its strict CRLF.CRLF end;
//! then the next hop is dropped without the final dot (it discards the
//! partial message) and the client gets the matching refusal. 250 is said
//! only after the next hop said 250.

use crate::downstream::NextHop;
use crate::lines::{Line, LineReader};
use crate::received::is_received;
use crate::reply::{Reply, reply};
use std::time::Duration;
use tokio::io::AsyncRead;

/// Bytes gathered before a write to the next hop.
const FLUSH_AT: usize = 64 * 1024;

pub struct DataLimits {
    pub max_message_size: usize,
    pub max_line: usize,
    pub hop_limit: usize,
    pub timeout: Duration,
}

pub enum DataOutcome {
    /// The reply for the client, and whether the next hop gave its verdict
    /// on the final dot (else the message was abandoned mid-way).
    Reply(Reply, bool),
    /// The client went away (or stalled past the timeout) mid-message.
    ClientLost,
}

/// The outcome and the size of the message as received.
pub async fn receive<S: AsyncRead + Unpin>(
    io: &mut LineReader<S>,
    hop: &mut NextHop,
    received_header: String,
    limits: &DataLimits,
) -> (DataOutcome, usize) {
    let mut size = 0usize;
    let outcome = receive_counting(io, hop, received_header, limits, &mut size).await;
    (outcome, size)
}

async fn receive_counting<S: AsyncRead + Unpin>(
    io: &mut LineReader<S>,
    hop: &mut NextHop,
    received_header: String,
    limits: &DataLimits,
    size: &mut usize,
) -> DataOutcome {
    let mut out: Vec<u8> = Vec::with_capacity(FLUSH_AT + limits.max_line);
    out.extend_from_slice(received_header.as_bytes());
    let mut in_headers = true;
    let mut hops = 0usize;
    let mut failure: Option<Reply> = None;
    // A lone "." ends the data only after a strict CRLF: "\n.\r\n" is the
    // smuggling sequence, not an end.
    let mut after_crlf = true;
    loop {
        let line = match tokio::time::timeout(limits.timeout, io.next_line(limits.max_line)).await {
            Ok(Ok(Some(line))) => line,
            _ => return DataOutcome::ClientLost,
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
            break;
        }
        after_crlf = true;
        *size += line.len();
        if *size > limits.max_message_size {
            failure.get_or_insert_with(|| reply(552, "5.3.4", "Message size exceeds fixed limit"));
        }
        if in_headers {
            if line == b"\r\n" {
                in_headers = false;
            } else if is_received(line) {
                hops += 1;
                if hops > limits.hop_limit {
                    failure.get_or_insert_with(|| {
                        reply(
                            554,
                            "5.4.6",
                            format!("Too many hops ({} Received headers): routing loop", hops),
                        )
                    });
                }
            }
        }
        if failure.is_some() {
            continue;
        }
        out.extend_from_slice(line);
        if !in_headers && out.len() >= FLUSH_AT {
            if let Err(r) = hop.write(&out).await {
                failure = Some(r);
            }
            out.clear();
        }
    }
    if let Some(f) = failure {
        return DataOutcome::Reply(f, false);
    }
    if let Err(r) = hop.write(&out).await {
        return DataOutcome::Reply(r, false);
    }
    match hop.finish().await {
        Ok(r) if r.is_positive_completion() => DataOutcome::Reply(
            reply(
                250,
                "2.0.0",
                format!("Ok: accepted by the next hop ({})", r.message.trim()),
            ),
            true,
        ),
        Ok(r) => DataOutcome::Reply(r, true),
        Err(r) => DataOutcome::Reply(r, false),
    }
}
