//! `--relay-networks`: the client addresses that may relay (the parser is
//! the routing core's, shared with SendingGrant's `network` principals).

pub use routing::grants::cidr::{Cidr, parse_list};
