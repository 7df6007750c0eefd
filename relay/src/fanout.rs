//! The next hops of one transaction: each opened at the first recipient
//! routed to it and checked with it at every RCPT; after DATA the message
//! is written to all of them at once (one read of the client's data,
//! written to each), and each gives its own verdict on the final dot.

use crate::downstream::{Envelope, HopId, NextHop, Outbound};
use crate::reply::{Reply, from_answer, reply, to_answer};
use futures_util::future::join_all;
use routing::outcome::{self, Answer};
use routing::table::ConnectorRoute;

/// `$call` (an async call on `$next`, a `&mut NextHop`) on every next hop
/// taking the message, at once; each result with the hop's index. One next
/// hop, the common case, is awaited alone, without join_all's machinery.
macro_rules! on_each_open {
    ($hops:expr, |$next:ident| $call:expr) => {{
        let mut open: Vec<(usize, &mut NextHop)> = $hops.open_mut().collect();
        if open.len() == 1 {
            let (i, $next) = open.pop().expect("one");
            vec![(i, $call.await)]
        } else {
            join_all(
                open.into_iter()
                    .map(|(i, $next)| async move { (i, $call.await) }),
            )
            .await
        }
    }};
}

pub struct Hop {
    pub id: HopId,
    /// `SmtpConnector/mbx`, or `SmtpConnector/internet (MX of example.org)`.
    pub name: String,
    /// Recipients this next hop accepted.
    pub recipients: usize,
    state: State,
}

enum State {
    /// A transaction is open there (MAIL accepted); after DATA, the message
    /// is being written to it.
    Open(NextHop),
    /// Could not be opened, or was lost: every later RCPT for it gets this.
    Failed(Reply),
    /// Its verdict on the message, and the connection when it can serve
    /// another transaction (`reset`: after RSET).
    Done {
        verdict: Reply,
        conn: Option<NextHop>,
        reset: bool,
    },
    /// Took part in nothing (every RCPT for it was refused), or dropped.
    Closed,
}

#[derive(Default)]
pub struct Hops {
    list: Vec<Hop>,
}

/// What happened to one RCPT at its next hop.
pub enum Rcpt {
    /// The next hop's reply (positive or not).
    Replied(Reply),
    /// The next hop failed (now or earlier in the transaction); the reason
    /// for metrics.
    Failed(Reply, &'static str),
    /// A new next hop would be one too many.
    TooManyNextHops,
}

impl Hops {
    pub fn iter(&self) -> impl Iterator<Item = &Hop> {
        self.list.iter()
    }

    /// Next hop `i` (an index a recipient holds).
    pub fn get(&self, i: usize) -> &Hop {
        &self.list[i]
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// RCPT `envelope.to` at next hop `id`: on the transaction already open
    /// there, or a new one (at most `limit` next hops hold a connection).
    /// Returns the next hop's index with the outcome.
    pub async fn rcpt(
        &mut self,
        outbound: &Outbound,
        limit: usize,
        id: HopId,
        route: &ConnectorRoute,
        envelope: &Envelope<'_>,
    ) -> (Option<usize>, Rcpt) {
        if let Some(i) = self.list.iter().position(|h| h.id == id) {
            let hop = &mut self.list[i];
            let answer = match &mut hop.state {
                State::Open(next) => {
                    next.rcpt(envelope.to, envelope.original, envelope.dsn)
                        .await
                }
                State::Failed(r) => return (Some(i), Rcpt::Failed(r.clone(), "NextHopLost")),
                State::Done { .. } | State::Closed => unreachable!("RCPT after DATA"),
            };
            return match answer {
                Ok(r) => (Some(i), Rcpt::Replied(r)),
                Err(r) => {
                    // The connection is gone; so is what it accepted.
                    hop.state = State::Failed(r.clone());
                    (Some(i), Rcpt::Failed(r, "NextHopLost"))
                }
            };
        }
        let open = self
            .list
            .iter()
            .filter(|h| matches!(h.state, State::Open(_)))
            .count();
        if open >= limit {
            return (None, Rcpt::TooManyNextHops);
        }
        let name = match &id.mx_domain {
            Some(domain) => format!("SmtpConnector/{} (MX of {domain})", route.name),
            None => format!("SmtpConnector/{}", route.name),
        };
        let (state, outcome) = match outbound.start(id.clone(), route, envelope).await {
            Ok((next, r)) => (State::Open(next), Rcpt::Replied(r)),
            Err((r, reason)) => (State::Failed(r.clone()), Rcpt::Failed(r, reason)),
        };
        self.list.push(Hop {
            id,
            name,
            recipients: 0,
            state,
        });
        (Some(self.list.len() - 1), outcome)
    }

    pub fn accepted(&mut self, i: usize) {
        self.list[i].recipients += 1;
    }

    /// DATA at every next hop with recipients, at once; one without gives
    /// its connection back first. Afterwards each hop is either still open
    /// (it said 354) or has its verdict.
    pub async fn start_data(&mut self, outbound: &Outbound) {
        for hop in &mut self.list {
            if hop.recipients == 0 && matches!(hop.state, State::Open(_)) {
                let State::Open(next) = std::mem::replace(&mut hop.state, State::Closed) else {
                    unreachable!()
                };
                next.reset(outbound).await;
            }
        }
        let started = on_each_open!(self, |next| next.data());
        for (i, result) in started {
            if let Err(r) = result {
                let hop = &mut self.list[i];
                let State::Open(next) = std::mem::replace(&mut hop.state, State::Closed) else {
                    unreachable!()
                };
                // Refused at DATA: the transaction there is still open, so
                // the connection needs RSET before it serves another.
                let conn = (r.code != 421).then_some(next);
                hop.state = State::Done {
                    verdict: r,
                    conn,
                    reset: true,
                };
            }
        }
    }

    /// How many next hops are taking the message.
    pub fn streaming(&self) -> usize {
        self.list
            .iter()
            .filter(|h| matches!(h.state, State::Open(_)))
            .count()
    }

    /// Message data to every next hop taking it, at once. A next hop that
    /// fails gets that as its verdict and is dropped without the final dot
    /// (it discards the partial message).
    pub async fn write(&mut self, bytes: &[u8]) {
        let written = on_each_open!(self, |next| next.write(bytes));
        for (i, result) in written {
            if let Err(r) = result {
                self.list[i].state = State::Done {
                    verdict: r,
                    conn: None,
                    reset: false,
                };
            }
        }
    }

    /// Every next hop taking the message that gave up on it on the way
    /// (NextHop::gave_up) gets that as its verdict and is dropped.
    pub fn gave_up(&mut self) {
        let looked: Vec<(usize, Option<Reply>)> = self
            .open_mut()
            .map(|(i, next)| (i, next.gave_up()))
            .collect();
        for (i, gave_up) in looked {
            if let Some(r) = gave_up {
                self.list[i].state = State::Done {
                    verdict: r,
                    conn: None,
                    reset: false,
                };
            }
        }
    }

    /// The end of the message (`last`: the rest of its data and the final
    /// dot) to every next hop taking it, at once, and each one's verdict.
    pub async fn finish(&mut self, last: &[u8]) {
        let finished = on_each_open!(self, |next| next.finish(last));
        for (i, result) in finished {
            let hop = &mut self.list[i];
            let State::Open(next) = std::mem::replace(&mut hop.state, State::Closed) else {
                unreachable!()
            };
            hop.state = match result {
                // After its verdict the connection is between transactions.
                Ok(r) => State::Done {
                    conn: (r.code != 421).then_some(next),
                    verdict: r,
                    reset: false,
                },
                Err(r) => State::Done {
                    verdict: r,
                    conn: None,
                    reset: false,
                },
            };
        }
    }

    /// Drops every next hop still taking the message, without the final
    /// dot: nothing is delivered there.
    pub fn abandon(&mut self) {
        for hop in &mut self.list {
            if matches!(hop.state, State::Open(_)) {
                hop.state = State::Done {
                    verdict: not_sent(),
                    conn: None,
                    reset: false,
                };
            }
        }
    }

    /// The verdict of next hop `i`: its reply to DATA or the final dot, or
    /// why it failed. None while it is still taking the message.
    pub fn verdict(&self, i: usize) -> Option<&Reply> {
        match &self.list[i].state {
            State::Failed(r) | State::Done { verdict: r, .. } => Some(r),
            State::Open(_) | State::Closed => None,
        }
    }

    /// The reply for the whole message when the outcome policy says every
    /// next hop must be dropped now (routing::outcome::abandon).
    pub fn abandon_reply(&self, prdr: bool) -> Option<Reply> {
        let answers: Vec<(usize, Answer)> = (0..self.list.len())
            .filter(|&i| self.list[i].recipients > 0)
            .filter_map(|i| self.verdict(i).map(|r| (i, to_answer(r))))
            .collect();
        let known: Vec<outcome::Hop> = answers
            .iter()
            .map(|(i, answer)| outcome::Hop {
                name: &self.list[*i].name,
                answer,
            })
            .collect();
        outcome::abandon(prdr, &known).map(|a| from_answer(&a))
    }

    /// Ends the transaction at every next hop: a connection between
    /// transactions goes back to the pool, one with a transaction open
    /// gets RSET first, a broken one is dropped.
    pub async fn end(self, outbound: &Outbound) {
        let resets = self.list.into_iter().filter_map(|hop| match hop.state {
            State::Open(next)
            | State::Done {
                conn: Some(next),
                reset: true,
                ..
            } => Some(next),
            State::Done {
                conn: Some(next),
                reset: false,
                ..
            } => {
                next.release(outbound);
                None
            }
            _ => None,
        });
        let resets: Vec<NextHop> = resets.collect();
        if !resets.is_empty() {
            join_all(resets.into_iter().map(|next| next.reset(outbound))).await;
        }
    }

    fn open_mut(&mut self) -> impl Iterator<Item = (usize, &mut NextHop)> {
        self.list
            .iter_mut()
            .enumerate()
            .filter_map(|(i, h)| match &mut h.state {
                State::Open(next) => Some((i, next)),
                _ => None,
            })
    }
}

/// The relay's verdict for a next hop abandoned before the final dot
/// because another one failed: nothing was delivered there.
pub fn not_sent() -> Reply {
    reply(
        451,
        "4.4.2",
        "Not sent: another next hop of this message failed; try again later",
    )
}
