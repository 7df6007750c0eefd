//! PROXY protocol v2 (haproxy's spec, §2.2): behind a cloud load balancer
//! the client's address comes in a binary header before any SMTP, and the
//! relay-networks decision and the per-client limit must use it. With
//! `--proxy-protocol` every connection must start with one; the port must
//! then be reachable only through the load balancer.

use ppp::v2::{Addresses, Command, Header};
use std::net::IpAddr;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The fixed part: 12-byte signature, version/command, family, length.
const FIXED: usize = 16;
/// Addresses plus TLVs we accept; load balancers send far less.
const MAX_REST: usize = 1024;

/// The client address the header names: `Ok(None)` for a LOCAL header (a
/// health check of the load balancer itself) or an address family without
/// an IP; the connection's own peer applies then.
pub async fn read_client<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Option<IpAddr>, String> {
    let mut buf = vec![0u8; FIXED];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| format!("PROXY header: {e}"))?;
    let rest = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    if rest > MAX_REST {
        return Err(format!(
            "PROXY header: {rest} bytes of addresses is too long"
        ));
    }
    buf.resize(FIXED + rest, 0);
    stream
        .read_exact(&mut buf[FIXED..])
        .await
        .map_err(|e| format!("PROXY header: {e}"))?;
    client_of(&buf)
}

/// The pure part: a whole header's client address.
pub fn client_of(bytes: &[u8]) -> Result<Option<IpAddr>, String> {
    let header = Header::try_from(bytes).map_err(|e| format!("PROXY header: {e}"))?;
    if header.command == Command::Local {
        return Ok(None);
    }
    Ok(match header.addresses {
        Addresses::IPv4(a) => Some(IpAddr::V4(a.source_address)),
        Addresses::IPv6(a) => Some(IpAddr::V6(a.source_address)),
        Addresses::Unspecified | Addresses::Unix(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ppp::v2::{Builder, Protocol, Version};

    fn header(command: Command, addresses: Addresses) -> Vec<u8> {
        Builder::with_addresses(Version::Two | command, Protocol::Stream, addresses)
            .build()
            .unwrap()
    }

    #[test]
    fn names_the_client_of_a_proxied_connection() {
        let v4: Addresses = (
            "203.0.113.7:40000".parse::<std::net::SocketAddr>().unwrap(),
            "10.0.0.1:25".parse::<std::net::SocketAddr>().unwrap(),
        )
            .into();
        assert_eq!(
            client_of(&header(Command::Proxy, v4)),
            Ok(Some("203.0.113.7".parse().unwrap()))
        );
        let v6: Addresses = (
            "[2001:db8::7]:40000"
                .parse::<std::net::SocketAddr>()
                .unwrap(),
            "[2001:db8::1]:25".parse::<std::net::SocketAddr>().unwrap(),
        )
            .into();
        assert_eq!(
            client_of(&header(Command::Proxy, v6)),
            Ok(Some("2001:db8::7".parse().unwrap()))
        );
        assert_eq!(
            client_of(&header(Command::Local, Addresses::Unspecified)),
            Ok(None)
        );
    }

    #[test]
    fn refuses_what_is_not_a_v2_header() {
        assert!(client_of(b"EHLO client.test\r\n").is_err());
        assert!(client_of(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n").is_err());
        let mut truncated = header(
            Command::Proxy,
            (
                "1.2.3.4:1".parse::<std::net::SocketAddr>().unwrap(),
                "5.6.7.8:2".parse::<std::net::SocketAddr>().unwrap(),
            )
                .into(),
        );
        truncated.truncate(20);
        assert!(client_of(&truncated).is_err());
    }
}
