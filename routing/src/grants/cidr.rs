//! Client networks: the relay's `--relay-networks` and a SendingGrant's
//! `network` principals.

use std::net::IpAddr;
use std::str::FromStr;

/// A network, its address masked to the prefix (`10.1.2.3/8` is `10.0.0.0/8`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("{s:?}: prefix must be 0 to {max}")),
            },
        };
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(
                (u32::from(a) & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)).into(),
            ),
            IpAddr::V6(a) => IpAddr::V6(
                (u128::from(a) & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0))
                    .into(),
            ),
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn masked(net: u128, ip: u128, prefix: u8, bits: u32) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = bits - u32::from(prefix);
    (net >> shift) == (ip >> shift)
}

/// Parses `CIDR[,CIDR…]`.
pub fn parse_list(s: &str) -> Result<Vec<Cidr>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let nets = parse_list("10.0.0.0/8, 192.168.1.7, fd00::/8").unwrap();
        let may = |ip: &str| nets.iter().any(|n| n.contains(ip.parse().unwrap()));
        assert!(may("10.1.2.3"));
        assert!(may("::ffff:10.9.9.9"));
        assert!(may("192.168.1.7"));
        assert!(!may("192.168.1.8"));
        assert!(may("fd12::1"));
        assert!(!may("fe80::1"));
        assert!(!may("11.0.0.1"));
        assert!(parse_list("0.0.0.0/0").unwrap()[0].contains("8.8.8.8".parse().unwrap()));
        assert!(parse_list("10.0.0.0/33").is_err());
        assert!(parse_list("nonsense").is_err());
        assert_eq!(
            parse_list("10.1.2.3/8").unwrap()[0].to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_list("2001:db8::1/32").unwrap()[0].to_string(),
            "2001:db8::/32"
        );
        assert_eq!(parse_list("0.0.0.0/0").unwrap()[0].to_string(), "0.0.0.0/0");
    }
}
