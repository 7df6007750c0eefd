//! ServiceAccount tokens checked with the TokenReview API: the API server
//! says whether the token is valid now, for our audience, and whose it is.
//! Chosen over checking signatures offline against the issuer's keys
//! because only the API server knows that the ServiceAccount (or the pod a
//! token is bound to) still exists: a deleted ServiceAccount stops working
//! within the relay's cache lifetime, not at the token's expiry. The cost,
//! one API request per token per cache lifetime, is bounded by the cache
//! (docs/relay.md, "Who may send").

use std::future::Future;
use std::pin::Pin;

/// A ServiceAccount a token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountName {
    pub namespace: String,
    pub name: String,
}

/// Ok(None): the token is not valid (expired, other audience, unknown
/// signer, its ServiceAccount gone); Err: no answer could be had.
pub type Review = Result<Option<ServiceAccountName>, String>;

pub trait TokenReviewer: Send + Sync {
    fn review<'a>(&'a self, token: &'a str) -> Pin<Box<dyn Future<Output = Review> + Send + 'a>>;
}

/// `system:serviceaccount:NAMESPACE:NAME` → the ServiceAccount.
pub fn service_account_of(username: &str) -> Option<ServiceAccountName> {
    let rest = username.strip_prefix("system:serviceaccount:")?;
    let (namespace, name) = rest.split_once(':')?;
    if namespace.is_empty() || name.is_empty() || name.contains(':') {
        return None;
    }
    Some(ServiceAccountName {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    })
}

/// Whether a password looks like a JSON Web Token (three base64url parts,
/// a JSON header): such a password is a token, never an htpasswd password.
pub fn looks_like_token(password: &str) -> bool {
    let parts: Vec<&str> = password.split('.').collect();
    parts.len() == 3
        && password.starts_with("eyJ")
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(feature = "kube")]
pub mod kube_api {
    use super::*;
    use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
    use kube::api::{Api, PostParams};

    /// TokenReview through the Kubernetes API (RBAC: `create` on
    /// `tokenreviews`, nothing else).
    pub struct KubeTokenReview {
        pub client: kube::Client,
        pub audience: String,
    }

    impl TokenReviewer for KubeTokenReview {
        fn review<'a>(
            &'a self,
            token: &'a str,
        ) -> Pin<Box<dyn Future<Output = Review> + Send + 'a>> {
            Box::pin(async move {
                let api: Api<TokenReview> = Api::all(self.client.clone());
                let review = TokenReview {
                    spec: TokenReviewSpec {
                        token: Some(token.to_owned()),
                        audiences: Some(vec![self.audience.clone()]),
                    },
                    ..Default::default()
                };
                let answer = api
                    .create(&PostParams::default(), &review)
                    .await
                    .map_err(|e| e.to_string())?;
                let Some(status) = answer.status else {
                    return Err("TokenReview without status".into());
                };
                let audience_ok = status
                    .audiences
                    .as_ref()
                    .is_some_and(|a| a.contains(&self.audience));
                if status.authenticated != Some(true) || !audience_ok {
                    return Ok(None);
                }
                Ok(status
                    .user
                    .and_then(|u| u.username)
                    .and_then(|u| service_account_of(&u)))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_names() {
        assert_eq!(
            service_account_of("system:serviceaccount:apps:billing"),
            Some(ServiceAccountName {
                namespace: "apps".into(),
                name: "billing".into()
            })
        );
        for bad in [
            "system:serviceaccount:apps",
            "system:node:n1",
            "alice",
            "system:serviceaccount::x",
        ] {
            assert_eq!(service_account_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn tokens_are_told_from_passwords() {
        assert!(looks_like_token(
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_"
        ));
        for not in ["hunter2", "eyJ.a", "a.b.c", "eyJa.b.c d", "eyJa..c"] {
            assert!(!looks_like_token(not), "{not}");
        }
    }
}
