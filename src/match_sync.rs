//! Keeps the built-in match conditions of the webhook's own configurations in step with the
//! policy it serves (self-managed mode, which may update those configurations already).
//!
//! The chart renders both conditions from its policy values, and the webhook reloads its policy
//! when the ConfigMap changes. A ConfigMap edited by hand would leave the API server skipping
//! calls by the old policy's rules: a field the controller no longer owns would still be let
//! past /mutate. So whenever the policy changes, and at each certificate check, the conditions
//! with the built-in names are rewritten from the policy in force. Only those entries are
//! touched: a condition turned off in the chart stays off, an admin's own conditions stay as
//! they are, and the mutating one is removed when the policy has no controller to recognise
//! (every write is then combined).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::{Api, Client};

use crate::policy::Policy;
use crate::policy::match_conditions::{
    MUTATE_MATCH_CONDITION, VALIDATE_MATCH_CONDITION, mutate_match_condition,
    validate_match_condition,
};
use crate::selfcert::{SelfCertError, SelfManagedOptions};
use crate::status::{Outcome, StatusManager};

/// How soon a failed sync is tried again.
const RETRY: Duration = Duration::from_secs(10);

/// Sets the expression of every condition named `name`, or removes them when `expected` is
/// `None`. Returns whether anything changed.
pub fn align(
    conditions: &mut Option<Vec<MatchCondition>>,
    name: &str,
    expected: Option<&str>,
) -> bool {
    let Some(list) = conditions else {
        return false;
    };
    let before = list.clone();
    match expected {
        Some(expression) => list
            .iter_mut()
            .filter(|c| c.name == name && c.expression != expression)
            .for_each(|c| c.expression = expression.to_string()),
        None => list.retain(|c| c.name != name),
    }
    if list.is_empty() {
        *conditions = None;
    }
    conditions.as_deref() != Some(before.as_slice())
}

/// The `matchConditions` of every webhook of a mutating or validating configuration (two
/// types with the same shape).
macro_rules! condition_lists {
    ($c:expr) => {
        $c.webhooks
            .iter_mut()
            .flatten()
            .map(|w| &mut w.match_conditions)
            .collect()
    };
}

/// Rewrites the built-in conditions of the named configurations from `policy`. Returns how many
/// configurations were written.
pub async fn sync(
    client: &Client,
    options: &SelfManagedOptions,
    manager: &StatusManager,
    policy: &Policy,
) -> Result<usize, SelfCertError> {
    let mutate = mutate_match_condition(&policy.config);
    let validate = validate_match_condition(&policy.config);
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let mut written = 0;
    for name in &options.webhook_configurations {
        let mutate = (MUTATE_MATCH_CONDITION, mutate.as_deref());
        written +=
            usize::from(align_in(manager, &mutating, name, mutate, |c| condition_lists!(c)).await?);
        let validate = (VALIDATE_MATCH_CONDITION, Some(validate.as_str()));
        written += usize::from(
            align_in(manager, &validating, name, validate, |c| {
                condition_lists!(c)
            })
            .await?,
        );
    }
    if written > 0 {
        tracing::info!(
            configurations = written,
            "the built-in match conditions now follow the policy in force"
        );
    }
    Ok(written)
}

/// Aligns the condition `(name, expected)` in every webhook of one configuration, when it
/// exists; returns whether it was written.
async fn align_in<K>(
    manager: &StatusManager,
    api: &Api<K>,
    name: &str,
    (condition, expected): (&str, Option<&str>),
    lists: fn(&mut K) -> Vec<&mut Option<Vec<MatchCondition>>>,
) -> Result<bool, SelfCertError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    if api.get_opt(name).await?.is_none() {
        return Ok(false);
    }
    let outcome = manager
        .update_object(api, name, |c| {
            lists(c)
                .into_iter()
                .fold(false, |changed, l| align(l, condition, expected) | changed)
        })
        .await?;
    Ok(matches!(outcome, Outcome::Written { .. }))
}

/// Syncs whenever the policy in `policy` is replaced (checked every second), at least every
/// `options.check_interval`, and again `RETRY` after a failure.
pub fn spawn(
    client: Client,
    options: SelfManagedOptions,
    manager: StatusManager,
    policy: Arc<ArcSwap<Policy>>,
) {
    tokio::spawn(async move {
        let mut synced: Option<Arc<Policy>> = None;
        let mut due = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let current = policy.load_full();
            let changed = !synced.as_ref().is_some_and(|s| Arc::ptr_eq(s, &current));
            if !changed && Instant::now() < due {
                continue;
            }
            match sync(&client, &options, &manager, &current).await {
                Ok(_) => {
                    synced = Some(current);
                    due = Instant::now() + options.check_interval;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot align the webhook configurations' match conditions with the policy; retrying");
                    synced = None;
                    due = Instant::now() + RETRY;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(name: &str, expression: &str) -> MatchCondition {
        MatchCondition {
            name: name.into(),
            expression: expression.into(),
        }
    }

    #[test]
    fn only_the_named_condition_is_rewritten() {
        let mine = condition("labelled", "'wfe' in object.metadata.labels");
        let mut list = Some(vec![
            condition("not-wfe-admission-itself", "x"),
            condition(MUTATE_MATCH_CONDITION, "old"),
            mine.clone(),
        ]);
        assert!(align(&mut list, MUTATE_MATCH_CONDITION, Some("new")));
        assert_eq!(
            list,
            Some(vec![
                condition("not-wfe-admission-itself", "x"),
                condition(MUTATE_MATCH_CONDITION, "new"),
                mine,
            ])
        );
        assert!(!align(&mut list, MUTATE_MATCH_CONDITION, Some("new")));
    }

    #[test]
    fn a_condition_turned_off_stays_off_and_one_without_a_controller_goes() {
        let mut none = None;
        assert!(!align(&mut none, MUTATE_MATCH_CONDITION, Some("new")));
        assert_eq!(none, None);
        let mut other = Some(vec![condition("labelled", "true")]);
        assert!(!align(&mut other, MUTATE_MATCH_CONDITION, Some("new")));
        let mut only = Some(vec![condition(MUTATE_MATCH_CONDITION, "old")]);
        assert!(align(&mut only, MUTATE_MATCH_CONDITION, None));
        assert_eq!(only, None, "an empty list is left out");
    }
}
