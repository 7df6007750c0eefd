//! The relay's own names and addresses, for `ForwardsToSelf`: a connector
//! that points at any of them sends mail straight back into the relay.

use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;

/// Every name and address under which clients reach the relay Service:
/// its cluster DNS forms, ClusterIPs, external IPs and load-balancer
/// ingress. Sorted, without duplicates.
pub fn of_service(service: &Service, cluster_domain: &str) -> Vec<String> {
    let name = service.name_any();
    let ns = service.namespace().unwrap_or_default();
    let mut out = vec![
        name.clone(),
        format!("{name}.{ns}"),
        format!("{name}.{ns}.svc"),
        format!("{name}.{ns}.svc.{cluster_domain}"),
    ];
    if let Some(spec) = &service.spec {
        out.extend(spec.cluster_ip.iter().cloned());
        out.extend(spec.cluster_ips.iter().flatten().cloned());
        out.extend(spec.external_ips.iter().flatten().cloned());
    }
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    for i in ingress.into_iter().flatten() {
        out.extend(i.ip.iter().cloned());
        out.extend(i.hostname.iter().cloned());
    }
    out.retain(|a| !a.is_empty() && a != "None");
    out.sort();
    out.dedup();
    out
}

/// `NAME` (in the operator's namespace) or `NAMESPACE/NAME`.
pub fn parse_service_ref<'a>(value: &'a str, own_namespace: &'a str) -> (&'a str, &'a str) {
    match value.split_once('/') {
        Some((ns, name)) => (ns, name),
        None => (own_namespace, value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        LoadBalancerIngress, LoadBalancerStatus, ServiceSpec, ServiceStatus,
    };
    use kube::api::ObjectMeta;

    #[test]
    fn every_dns_form_and_address_of_the_service() {
        let service = Service {
            metadata: ObjectMeta {
                name: Some("mailroute-relay".into()),
                namespace: Some("mail".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some("10.96.0.25".into()),
                cluster_ips: Some(vec!["10.96.0.25".into(), "fd00::25".into()]),
                external_ips: Some(vec!["192.0.2.7".into()]),
                ..Default::default()
            }),
            status: Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: Some(vec![LoadBalancerIngress {
                        ip: Some("203.0.113.9".into()),
                        hostname: Some("mx.example.net".into()),
                        ..Default::default()
                    }]),
                }),
                ..Default::default()
            }),
        };
        assert_eq!(
            of_service(&service, "cluster.local"),
            [
                "10.96.0.25",
                "192.0.2.7",
                "203.0.113.9",
                "fd00::25",
                "mailroute-relay",
                "mailroute-relay.mail",
                "mailroute-relay.mail.svc",
                "mailroute-relay.mail.svc.cluster.local",
                "mx.example.net",
            ]
        );
    }

    #[test]
    fn a_headless_service_has_no_cluster_ip() {
        let service = Service {
            metadata: ObjectMeta {
                name: Some("r".into()),
                namespace: Some("m".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".into()),
                ..Default::default()
            }),
            status: None,
        };
        assert_eq!(
            of_service(&service, "example.internal"),
            ["r", "r.m", "r.m.svc", "r.m.svc.example.internal"]
        );
    }

    #[test]
    fn service_references() {
        assert_eq!(parse_service_ref("relay", "mail"), ("mail", "relay"));
        assert_eq!(parse_service_ref("edge/relay", "mail"), ("edge", "relay"));
    }
}
