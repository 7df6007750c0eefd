//! mailroute's operator: the kube-rs controller that compiles the four
//! kinds into published tables and honest status (see [`controller`]), and
//! [`cleanup`], which removes what it created when it is uninstalled.

pub mod cleanup;
pub mod controller;
pub mod import;

/// Deletes one object; false when it was already gone (which is what a
/// delete wants, so it is not an error).
pub async fn delete_if_present<K>(api: &kube::Api<K>, name: &str) -> kube::Result<bool>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &kube::api::DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}
