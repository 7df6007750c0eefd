//! Where a next hop's connections go: the connector's smart hosts in order
//! (brackets: the address of the name; no brackets: its MX, as in
//! Exchange), or the recipient domain's MX when it has none (RFC 5321 §5.1:
//! MX records by preference, the domain's own address when there is no MX,
//! and RFC 7505's null MX refusing mail).

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use routing::table::ConnectorRoute;
use std::net::{IpAddr, SocketAddr};

/// One address to try, and the name it was found under (for SNI and logs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub addr: SocketAddr,
}

/// Why no target was found.
#[derive(Debug, PartialEq, Eq)]
pub enum Unroutable {
    /// The domain does not exist (NXDOMAIN).
    NoSuchDomain,
    /// RFC 7505: the domain says it accepts no mail.
    NullMx,
    /// DNS failed or found no address; worth a retry.
    Temporary(String),
}

pub struct Dns {
    resolver: TokioResolver,
}

impl Dns {
    /// `servers` empty: the system's resolver configuration (/etc/resolv.conf).
    pub fn new(servers: &[SocketAddr]) -> Dns {
        let provider = TokioRuntimeProvider::default();
        let builder = if servers.is_empty() {
            TokioResolver::builder_tokio().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "no system DNS configuration; MX delivery will defer");
                Resolver::builder_with_config(
                    ResolverConfig::from_name_servers(Vec::new()),
                    provider,
                )
            })
        } else {
            let servers = servers
                .iter()
                .map(|s| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = s.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = s.port();
                    NameServerConfig::new(s.ip(), true, vec![udp, tcp])
                })
                .collect();
            Resolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
        };
        let resolver = builder.build().expect("resolver configuration is valid");
        Dns { resolver }
    }

    /// The addresses to try for `route`, in order: the MX hosts of
    /// `mx_domain` (the recipient's domain, given when the route has no
    /// smart hosts), else the smart hosts.
    pub async fn targets(
        &self,
        route: &ConnectorRoute,
        mx_domain: Option<&str>,
        mx_port: u16,
    ) -> Result<Vec<Target>, Unroutable> {
        if let Some(domain) = mx_domain {
            return self.mx(domain, mx_port).await;
        }
        let mut targets = Vec::new();
        let mut last = String::new();
        for host in &route.smart_hosts {
            let found = if let Ok(ip) = host.host.parse::<IpAddr>() {
                Ok(vec![Target {
                    name: host.host.clone(),
                    addr: SocketAddr::new(ip, host.port),
                }])
            } else if host.mx_lookup {
                self.mx(&host.host, host.port).await
            } else {
                self.addresses(&host.host, host.port).await
            };
            match found {
                Ok(t) => targets.extend(t),
                Err(e) => {
                    tracing::warn!(connector = %route.name, host = %host, error = ?e, "smart host not resolved");
                    last = format!("{host}: {e:?}");
                }
            }
        }
        if targets.is_empty() {
            // A smart host that does not resolve is a configuration problem
            // to fix, never a reason to bounce mail.
            return Err(Unroutable::Temporary(last));
        }
        Ok(targets)
    }

    async fn mx(&self, domain: &str, port: u16) -> Result<Vec<Target>, Unroutable> {
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        let mut exchanges: Vec<(u16, String)> = match self.resolver.mx_lookup(fqdn.as_str()).await {
            Ok(lookup) => lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) if mx.exchange.is_root() => Some((mx.preference, ".".to_owned())),
                    RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                    _ => None,
                })
                .collect(),
            Err(e) if e.is_nx_domain() => return Err(Unroutable::NoSuchDomain),
            Err(e) if e.is_no_records_found() => Vec::new(),
            Err(e) => return Err(Unroutable::Temporary(e.to_string())),
        };
        if exchanges.is_empty() {
            // No MX: the domain's own address is its implicit MX.
            return self.addresses(&fqdn, port).await;
        }
        if exchanges.len() == 1 && exchanges[0].1 == "." {
            return Err(Unroutable::NullMx);
        }
        // RFC 5321 §5.1 lets equal preferences be shuffled; we keep them in
        // name order so that the same DNS gives the same attempts.
        exchanges.sort();
        exchanges.dedup();
        let mut targets = Vec::new();
        let mut last = String::from("no address for any MX host");
        for (_, exchange) in exchanges.iter().filter(|(_, e)| e != ".") {
            match self.addresses(exchange, port).await {
                Ok(t) => targets.extend(t),
                Err(e) => last = format!("{exchange}: {e:?}"),
            }
        }
        if targets.is_empty() {
            return Err(Unroutable::Temporary(last));
        }
        Ok(targets)
    }

    async fn addresses(&self, host: &str, port: u16) -> Result<Vec<Target>, Unroutable> {
        let name = host.trim_end_matches('.').to_owned();
        let fqdn = format!("{name}.");
        match self.resolver.lookup_ip(fqdn.as_str()).await {
            Ok(ips) => {
                let targets: Vec<Target> = ips
                    .iter()
                    .map(|ip| Target {
                        name: name.clone(),
                        addr: SocketAddr::new(ip, port),
                    })
                    .collect();
                if targets.is_empty() {
                    Err(Unroutable::Temporary(format!("{name} has no address")))
                } else {
                    Ok(targets)
                }
            }
            Err(e) if e.is_nx_domain() => Err(Unroutable::NoSuchDomain),
            Err(e) => Err(Unroutable::Temporary(format!("{name}: {e}"))),
        }
    }
}
