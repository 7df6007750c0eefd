//! What one ServiceAccount may do under a set of RBAC manifests, decided
//! the way the API server's RBAC authorizer does: a ClusterRoleBinding
//! grants its role's rules in every namespace and for cluster-scoped
//! resources, a RoleBinding only in its own namespace. A request's verb
//! comes from its method and path as the API server derives it (GET on a
//! collection is `list`, with `watch=true` it is `watch`, on a name `get`).
//!
//! Tests record the requests our code really makes against a mocked API
//! server and ask [`Grants::assert_allows`], so the shipped RBAC and the
//! code cannot drift apart unnoticed.

use serde_yaml_ng::Value;
use std::path::Path;

#[derive(Debug)]
struct Rule {
    api_groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    resource_names: Vec<String>,
}

/// Where a set of rules applies: everywhere, or in one namespace.
#[derive(Debug)]
enum Scope {
    Cluster,
    Namespace(String),
}

/// The rules granted to one ServiceAccount.
#[derive(Debug)]
pub struct Grants {
    source: String,
    subject: String,
    granted: Vec<(Scope, Rule)>,
}

/// A request as the authorizer sees it.
#[derive(Debug, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn rules_of(role: &Value) -> Vec<Rule> {
    role["rules"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|r| Rule {
            api_groups: strings(&r["apiGroups"]),
            resources: strings(&r["resources"]),
            verbs: strings(&r["verbs"]),
            resource_names: strings(&r["resourceNames"]),
        })
        .collect()
}

fn names(v: &Value, key: &str) -> Option<String> {
    v["metadata"][key].as_str().map(str::to_owned)
}

impl Grants {
    /// The rules `files` (multi-document YAML) grant to the ServiceAccount
    /// `namespace/name`. Panics, naming the file, when one cannot be read.
    pub fn of(files: &[&Path], namespace: &str, service_account: &str) -> Grants {
        let mut docs = Vec::new();
        for file in files {
            let text =
                std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                let v = <Value as serde::Deserialize>::deserialize(doc)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                if !v.is_null() {
                    docs.push(v);
                }
            }
        }
        let role = |kind: &str, name: &str, ns: Option<&str>| -> Vec<Rule> {
            docs.iter()
                .filter(|d| d["kind"] == kind && names(d, "name").as_deref() == Some(name))
                .filter(|d| kind == "ClusterRole" || names(d, "namespace").as_deref() == ns)
                .flat_map(rules_of)
                .collect()
        };
        let binds_us = |b: &Value| {
            b["subjects"].as_sequence().into_iter().flatten().any(|s| {
                s["kind"] == "ServiceAccount"
                    && s["name"] == service_account
                    && s["namespace"] == namespace
            })
        };
        let mut granted = Vec::new();
        for b in docs.iter().filter(|b| binds_us(b)) {
            let (Some(kind), Some(role_name)) =
                (b["roleRef"]["kind"].as_str(), b["roleRef"]["name"].as_str())
            else {
                continue;
            };
            let binding_ns = names(b, "namespace");
            match b["kind"].as_str() {
                Some("ClusterRoleBinding") if kind == "ClusterRole" => granted.extend(
                    role(kind, role_name, None)
                        .into_iter()
                        .map(|r| (Scope::Cluster, r)),
                ),
                Some("RoleBinding") => {
                    let ns = binding_ns.unwrap_or_default();
                    granted.extend(
                        role(kind, role_name, Some(&ns))
                            .into_iter()
                            .map(|r| (Scope::Namespace(ns.clone()), r)),
                    )
                }
                _ => {}
            }
        }
        Grants {
            source: files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            subject: format!("system:serviceaccount:{namespace}:{service_account}"),
            granted,
        }
    }

    /// Whether a request with these attributes is allowed.
    pub fn allows(&self, a: &Attributes) -> bool {
        let any = |list: &[String], x: &str| list.iter().any(|v| v == "*" || v == x);
        self.granted.iter().any(|(scope, rule)| {
            let in_scope = match scope {
                Scope::Cluster => true,
                Scope::Namespace(ns) => a.namespace.as_deref() == Some(ns.as_str()),
            };
            in_scope
                && any(&rule.api_groups, &a.group)
                && any(&rule.resources, &a.resource)
                && any(&rule.verbs, &a.verb)
                && (rule.resource_names.is_empty()
                    || a.name
                        .as_ref()
                        .is_some_and(|n| rule.resource_names.contains(n)))
        })
    }

    /// Panics, naming the request, the subject and the files, unless every
    /// request (method and path) is allowed.
    pub fn assert_allows<'a>(&self, requests: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let mut count = 0;
        for (method, path) in requests {
            let a = attributes(method, path);
            assert!(
                self.allows(&a),
                "{method} {path} ({} {}{} in {}) is not granted to {} by {}",
                a.verb,
                if a.group.is_empty() {
                    String::new()
                } else {
                    format!("{}/", a.group)
                },
                a.resource,
                a.namespace.as_deref().unwrap_or("the cluster scope"),
                self.subject,
                self.source
            );
            count += 1;
        }
        assert!(count > 0, "no request to check");
    }
}

/// The authorizer's view of a request: verb, group, resource, namespace
/// and name, from the method and the path (with or without a query).
pub fn attributes(method: &str, path: &str) -> Attributes {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => panic!("not an API path: {path}"),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (resource, name) = match rest {
        [res] => (res.to_string(), None),
        [res, name] => (res.to_string(), Some(name.to_string())),
        [res, name, sub] => (format!("{res}/{sub}"), Some(name.to_string())),
        _ => panic!("not a resource path: {path}"),
    };
    let watch = query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let verb = match (method, name.is_some()) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => panic!("unexpected method {method} for {path}"),
    };
    Attributes {
        verb: verb.into(),
        group: group.into(),
        resource,
        namespace,
        name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rbac.yaml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    const RBAC: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
rules:
  - apiGroups: [""]
    resources: ["configmaps"]
    verbs: ["list", "watch"]
  - apiGroups: ["mailroute.io"]
    resources: ["mailcontacts/status"]
    verbs: ["patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}
subjects: [{kind: ServiceAccount, name: op, namespace: sys}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: lease, namespace: sys}
rules:
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    verbs: ["get", "patch"]
    resourceNames: ["mine"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: lease, namespace: other}
rules:
  - apiGroups: ["*"]
    resources: ["*"]
    verbs: ["*"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: lease, namespace: sys}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: lease}
subjects: [{kind: ServiceAccount, name: op, namespace: sys}]
"#;

    #[test]
    fn verbs_and_scopes_are_derived_as_the_api_server_does() {
        assert_eq!(
            attributes("GET", "/api/v1/configmaps?&labelSelector=a%3Db"),
            Attributes {
                verb: "list".into(),
                group: "".into(),
                resource: "configmaps".into(),
                namespace: None,
                name: None
            }
        );
        let watch = attributes(
            "GET",
            "/api/v1/namespaces/x/configmaps?&watch=true&resourceVersion=1",
        );
        assert_eq!(
            (watch.verb.as_str(), watch.namespace.as_deref()),
            ("watch", Some("x"))
        );
        let status = attributes(
            "PATCH",
            "/apis/mailroute.io/v1alpha1/namespaces/x/mailcontacts/ann/status?&fieldManager=m",
        );
        assert_eq!(
            (
                status.verb.as_str(),
                status.group.as_str(),
                status.resource.as_str(),
                status.name.as_deref()
            ),
            ("patch", "mailroute.io", "mailcontacts/status", Some("ann"))
        );
        assert_eq!(
            attributes("GET", "/api/v1/namespaces/x").resource,
            "namespaces"
        );
        assert_eq!(
            attributes("DELETE", "/api/v1/namespaces/x/configmaps").verb,
            "deletecollection"
        );
    }

    #[test]
    fn a_cluster_binding_grants_everywhere_a_role_binding_only_in_its_namespace() {
        let (_dir, path) = write(RBAC);
        let g = Grants::of(&[&path], "sys", "op");
        let ok = |m, p| g.allows(&attributes(m, p));
        assert!(ok("GET", "/api/v1/configmaps?&watch=true"));
        assert!(ok("GET", "/api/v1/namespaces/anywhere/configmaps"));
        assert!(
            !ok("GET", "/api/v1/namespaces/anywhere/configmaps/one"),
            "get is not list"
        );
        assert!(
            !ok(
                "PATCH",
                "/apis/mailroute.io/v1alpha1/namespaces/a/mailcontacts/ann"
            ),
            "status only"
        );
        assert!(ok(
            "PATCH",
            "/apis/mailroute.io/v1alpha1/namespaces/a/mailcontacts/ann/status"
        ));
        let lease = "/apis/coordination.k8s.io/v1/namespaces/sys/leases/mine";
        assert!(ok("GET", lease) && ok("PATCH", lease));
        assert!(!ok("DELETE", lease), "verb not granted");
        assert!(
            !ok(
                "GET",
                "/apis/coordination.k8s.io/v1/namespaces/sys/leases/theirs"
            ),
            "resourceNames"
        );
        assert!(
            !ok(
                "GET",
                "/apis/coordination.k8s.io/v1/namespaces/elsewhere/leases/mine"
            ),
            "namespace"
        );
        // The Role named "lease" in "other" grants everything, but is not bound.
        assert!(!ok("DELETE", "/api/v1/namespaces/other/secrets/s"));
        // Another ServiceAccount gets nothing.
        let nobody = Grants::of(&[&path], "sys", "someone-else");
        assert!(!nobody.allows(&attributes("GET", "/api/v1/configmaps")));
    }

    #[test]
    #[should_panic(expected = "is not granted to system:serviceaccount:sys:op")]
    fn assert_allows_names_the_refused_request() {
        let (_dir, path) = write(RBAC);
        Grants::of(&[&path], "sys", "op")
            .assert_allows([("POST", "/api/v1/namespaces/a/configmaps")]);
    }
}
