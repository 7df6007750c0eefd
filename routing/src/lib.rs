//! mailroute's routing core: every routing decision as a pure function.
//!
//! Data flow: [`crd`] objects → [`compile`] (validate, claim, policies; then
//! the analyser: loops and authority) → [`report`] (conditions) → [`table`]
//! (encode / load) → [`resolve`]; after the data, [`outcome`] (what to
//! answer a client whose recipients went to several next hops). No I/O, no
//! async, no clock.

pub mod address;
mod analyse;
pub mod compile;
pub mod crd;
pub mod fixtures;
pub mod grants;
pub mod outcome;
pub mod pattern;
pub mod propagation;
pub mod report;
pub mod resolve;
pub mod selector;
pub mod table;
pub mod template;

pub use compile::{CompileOptions, Compiled, Objects, compile};
pub use report::{ConditionSummary, ObjectReport, Problem, Reason};
pub use resolve::{Decision, Reply, ReplyReason};
pub use table::{RoutingTable, Table};
