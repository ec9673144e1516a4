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
use kube::Client;

use crate::policy::Policy;
use crate::policy::match_conditions::{
    MUTATE_MATCH_CONDITION, VALIDATE_MATCH_CONDITION, mutate_match_condition,
    validate_match_condition,
};
use crate::retry::WriteOutcome;
use crate::selfcert::{SelfCertError, SelfManagedOptions};
use crate::status::StatusManager;
use crate::webhook_configs::{WebhookParts, edit_configuration};

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

/// Aligns the condition `name` in every webhook of one configuration.
fn align_all(parts: Vec<WebhookParts<'_>>, name: &str, expected: Option<&str>) -> bool {
    parts.into_iter().fold(false, |changed, p| {
        align(p.match_conditions, name, expected) | changed
    })
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
    let mut written = 0;
    for name in &options.webhook_configurations {
        let outcomes = [
            edit_configuration::<MutatingWebhookConfiguration>(
                client,
                manager.writer(),
                name,
                |parts| align_all(parts, MUTATE_MATCH_CONDITION, mutate.as_deref()),
            )
            .await?,
            edit_configuration::<ValidatingWebhookConfiguration>(
                client,
                manager.writer(),
                name,
                |parts| align_all(parts, VALIDATE_MATCH_CONDITION, Some(&validate)),
            )
            .await?,
        ];
        written += outcomes
            .iter()
            .filter(|o| matches!(o, Some(WriteOutcome::Written { .. })))
            .count();
    }
    if written > 0 {
        tracing::info!(
            configurations = written,
            "the built-in match conditions now follow the policy in force"
        );
    }
    Ok(written)
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
        // The policy last tried, and when to try again without a new one.
        let mut tried: Option<Arc<Policy>> = None;
        let mut due = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let current = policy.load_full();
            let replaced = !tried.as_ref().is_some_and(|t| Arc::ptr_eq(t, &current));
            if !replaced && Instant::now() < due {
                continue;
            }
            let wait = match sync(&client, &options, &manager, &current).await {
                Ok(_) => options.check_interval,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot align the webhook configurations' match conditions with the policy; retrying");
                    RETRY
                }
            };
            tried = Some(current);
            due = Instant::now() + wait;
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
