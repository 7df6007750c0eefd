//! `mailroute cleanup`: removes what the operator created and Helm does not
//! know about — the published tables' ConfigMaps, their RoutingTables and
//! the leader Lease — so
//! `helm uninstall` (which runs it as a post-delete hook, after the operator
//! is gone) leaves nothing behind but the CRDs and the user's own objects.

use crate::delete_if_present as delete;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use routing::crd::RoutingTable;
use routing::table::configmaps::table_selector;

#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Namespaces to clean (repeatable); none = every namespace.
    #[arg(short = 'n', long = "namespace", value_name = "NS")]
    pub namespaces: Vec<String>,
    /// The table whose ConfigMaps are deleted (only those carrying its labels).
    #[arg(long, default_value = "mailroute-table")]
    pub table_name: String,
    /// The leader-election Lease to delete.
    #[arg(long, default_value = "mailroute-operator")]
    pub lease_name: String,
    /// The Lease's namespace (default: the client's, i.e. the pod's).
    #[arg(long)]
    pub lease_namespace: Option<String>,
}

/// Deletes the table ConfigMaps, the RoutingTables and the Lease; returns what was deleted as
/// `namespace/Kind/name`, in the order it was deleted. Missing objects are
/// not errors: a second run deletes nothing.
pub async fn run(client: Client, o: &Options) -> kube::Result<Vec<String>> {
    let mut deleted = Vec::new();
    let selector = ListParams::default().labels(&table_selector(&o.table_name));
    delete_listed::<ConfigMap>(&client, o, &selector, &mut deleted).await?;
    delete_listed::<RoutingTable>(&client, o, &selector, &mut deleted).await?;
    let lease_ns = o
        .lease_namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    if delete(&Api::<Lease>::namespaced(client, &lease_ns), &o.lease_name).await? {
        deleted.push(format!("{lease_ns}/Lease/{}", o.lease_name));
    }
    Ok(deleted)
}

/// Deletes every object of kind `K` the selector lists in the namespaces.
async fn delete_listed<K>(
    client: &Client,
    o: &Options,
    selector: &ListParams,
    deleted: &mut Vec<String>,
) -> kube::Result<()>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let lists: Vec<Api<K>> = if o.namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        o.namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    };
    for api in lists {
        for object in api.list(selector).await? {
            let ns = object.namespace().unwrap_or_default();
            let name = object.name_any();
            if delete(&Api::<K>::namespaced(client.clone(), &ns), &name).await? {
                deleted.push(format!("{ns}/{}/{name}", K::kind(&())));
            }
        }
    }
    Ok(())
}
