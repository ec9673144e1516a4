//! The webhook's own webhook configurations, which it edits in self-managed mode: the CA bundle
//! (`selfcert`), the built-in match conditions (`match_sync`) and the failure policy
//! (`arming`).

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
    WebhookClientConfig,
};
use kube::api::Api;
use kube::{Client, Error as KubeError};

use crate::retry::{RetryingWriter, WriteError, WriteOutcome};

/// What the webhook edits in each webhook of its own configurations.
pub struct WebhookParts<'a> {
    pub ca_bundle: &'a mut Option<ByteString>,
    pub match_conditions: &'a mut Option<Vec<MatchCondition>>,
    pub failure_policy: &'a mut Option<String>,
}

/// Where the API server sends one webhook's reviews, and the bundle it trusts there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://host:port/path`.
    pub url: String,
    pub ca_bundle: Option<Vec<u8>>,
}

impl Endpoint {
    fn of(config: &WebhookClientConfig) -> Option<Self> {
        let url = match (&config.url, &config.service) {
            (Some(url), _) => url.clone(),
            (None, Some(s)) => format!(
                "https://{}.{}.svc:{}{}",
                s.name,
                s.namespace,
                s.port.unwrap_or(443),
                s.path.as_deref().unwrap_or("")
            ),
            (None, None) => return None,
        };
        Some(Endpoint {
            url,
            ca_bundle: config.ca_bundle.as_ref().map(|b| b.0.clone()),
        })
    }
}

/// A mutating or validating webhook configuration: two types with the same shape.
pub trait OwnConfiguration:
    kube::Resource<Scope = kube::core::ClusterResourceScope, DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + serde::Serialize
    + std::fmt::Debug
{
    fn parts(&mut self) -> Vec<WebhookParts<'_>>;
    fn endpoints(&self) -> Vec<Endpoint>;
}

macro_rules! own_configuration {
    ($($kind:ty),*) => {$(
        impl OwnConfiguration for $kind {
            fn parts(&mut self) -> Vec<WebhookParts<'_>> {
                self.webhooks
                    .iter_mut()
                    .flatten()
                    .map(|w| WebhookParts {
                        ca_bundle: &mut w.client_config.ca_bundle,
                        match_conditions: &mut w.match_conditions,
                        failure_policy: &mut w.failure_policy,
                    })
                    .collect()
            }

            fn endpoints(&self) -> Vec<Endpoint> {
                self.webhooks
                    .iter()
                    .flatten()
                    .filter_map(|w| Endpoint::of(&w.client_config))
                    .collect()
            }
        }
    )*};
}

own_configuration!(MutatingWebhookConfiguration, ValidatingWebhookConfiguration);

/// Applies `edit` (true when it changed something) to the webhooks of the configuration of kind
/// `K` named `name`, retried on conflict; `None` when there is no such configuration.
pub async fn edit_configuration<K: OwnConfiguration>(
    client: &Client,
    writer: &RetryingWriter,
    name: &str,
    mut edit: impl FnMut(Vec<WebhookParts<'_>>) -> bool,
) -> Result<Option<WriteOutcome>, WriteError> {
    edit_object::<K>(client, writer, name, |c| edit(c.parts())).await
}

/// As [`edit_configuration`], with the whole object (its annotations too).
pub async fn edit_object<K: OwnConfiguration>(
    client: &Client,
    writer: &RetryingWriter,
    name: &str,
    edit: impl FnMut(&mut K) -> bool,
) -> Result<Option<WriteOutcome>, WriteError> {
    let api: Api<K> = Api::all(client.clone());
    // The retried update reads first: its 404 is the "no such configuration" answer.
    match writer.update_object(&api, name, edit).await {
        Ok(outcome) => Ok(Some(outcome)),
        Err(WriteError::Kube(KubeError::Api(e))) if e.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}
