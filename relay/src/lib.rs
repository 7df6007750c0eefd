//! mailroute-relay: a horizontally scalable SMTP relay that resolves every
//! recipient with the routing core and forwards it cut-through to its next
//! hop, saying 250 only after the next hop did (DESIGN.md §6).
//!
//! Data flow: [`table`] (load, hot reload) → [`server`] (accept, limits) →
//! [`session`] (commands, [`lines`] strictly) → resolve (routing crate) →
//! [`downstream`] (next hop) ← [`data`] (message streamed with a
//! [`received`] header).

pub mod data;
pub mod downstream;
pub mod health;
pub mod lines;
pub mod networks;
pub mod received;
pub mod reply;
pub mod server;
pub mod session;
pub mod table;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Every limit named and configurable (see `mailroute-relay --help`).
#[derive(Clone, Debug)]
pub struct Config {
    pub hostname: String,
    pub relay_networks: Vec<networks::Cidr>,
    pub hop_limit: usize,
    pub max_recipients: usize,
    pub max_message_size: usize,
    pub max_line_length: usize,
    pub max_connections_per_client: usize,
    pub max_errors: usize,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    pub downstream: downstream::Timeouts,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: "localhost".into(),
            relay_networks: networks::parse_list("127.0.0.0/8,::1").expect("valid default"),
            hop_limit: 50,
            max_recipients: 100,
            max_message_size: 25 * 1024 * 1024,
            max_line_length: 8192,
            max_connections_per_client: 50,
            max_errors: 20,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            downstream: downstream::Timeouts::default(),
        }
    }
}

/// What every session shares.
pub struct Shared {
    pub config: Config,
    pub tables: Arc<table::Tables>,
    pub clients: Mutex<HashMap<IpAddr, usize>>,
    pub next_session: AtomicU64,
}

impl Shared {
    pub fn new(config: Config, tables: Arc<table::Tables>) -> Arc<Shared> {
        Arc::new(Shared {
            config,
            tables,
            clients: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
        })
    }
}
