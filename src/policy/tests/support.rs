//! Builders shared by the policy tests: statuses and AdmissionReviews from `serde_json::json!`,
//! and `run`, which sends one status update through the mutating endpoint and checks the
//! properties every answer must have (the patch applies, its result is the combined status, a
//! second pass over the result is an empty patch).

use jiff::{SignedDuration, Timestamp};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use serde_json::{Value, json};

use crate::config::Config;
use crate::policy::Policy;
use crate::policy::combine::{Combined, Status, combine};
use crate::policy::review::{self, Decision, Denial, DenyReason, Verdict};

pub const CONTROLLER: &str = "system:serviceaccount:kubernaut-system:workflowexecution-controller";
/// The executor's identity in [`separate_executor`] configurations.
pub const EXECUTOR: &str = "system:serviceaccount:kubernaut-system:wfe-executor";
pub const OPERATOR: &str = "alice@example.com";
pub const WEBHOOK: &str = "system:serviceaccount:wfe-system:wfe-admission";
pub const ANONYMOUS: &str = "system:anonymous";

pub use wfe_bench::fixtures::{NAME, NAMESPACE};

/// A reason long enough for the default minimum of ten words.
pub const LONG_REASON: &str =
    "Root cause fixed: memory limit raised to 2Gi in the deployment and verified by on-call";
/// Nine words: one short of the default minimum.
pub const NINE_WORDS: &str = "one two three four five six seven eight nine";

pub fn policy() -> Policy {
    Policy::new(Config::default()).expect("the default configuration is valid")
}

pub fn policy_with(edit: impl FnOnce(&mut Config)) -> Policy {
    let mut config = Config::default();
    edit(&mut config);
    Policy::new(config).expect("the edited configuration is valid")
}

/// The executor as its own service account instead of sharing the controller's identity.
pub fn separate_executor(config: &mut Config) {
    config
        .writers
        .get_mut(crate::config::EXECUTOR)
        .expect("the default config has an executor writer")
        .users = vec!["system:serviceaccount:*:wfe-executor".into()];
}

/// The fixed clock of every test.
pub fn now() -> Timestamp {
    ts("2026-03-01T12:00:00Z")
}

pub fn ts(text: &str) -> Timestamp {
    text.parse().expect("a valid RFC 3339 time")
}

/// `now` moved by `seconds` (negative for the past), formatted like `metav1.Time`.
pub fn at(seconds: i64) -> String {
    crate::policy::time::format(now() + SignedDuration::from_secs(seconds))
}

pub fn now_text() -> String {
    at(0)
}

pub fn status(value: Value) -> Status {
    match value {
        Value::Object(map) => map,
        other => panic!("a status must be a JSON object, got {other}"),
    }
}

pub fn condition(kind: &str, state: &str, ltt: &str) -> Value {
    json!({
        "type": kind,
        "status": state,
        "reason": format!("{kind}{state}"),
        "message": format!("{kind} is {state}"),
        "lastTransitionTime": ltt,
        "observedGeneration": 1,
    })
}

/// A condition as [`condition`] builds it, without `lastTransitionTime` (the writer leaves the
/// time to the webhook).
pub fn untimed_condition(kind: &str, state: &str) -> Value {
    let mut c = condition(kind, state, "");
    if let Some(c) = c.as_object_mut() {
        c.remove("lastTransitionTime");
    }
    c
}

/// Combines two statuses directly, as `user` with no groups, at [`now`].
pub fn combine_as(policy: &Policy, user: &str, old: Value, new: Value) -> Combined {
    let (old, new) = (status(old), status(new));
    combine(
        policy,
        Some(&old),
        Some(&new),
        policy.writer(user, &[]),
        now(),
    )
}

/// A WorkflowExecution as the API server stores it; `status: None` leaves the key out.
pub fn wfe_object(status: Option<Value>) -> Value {
    let mut object = json!({
        "apiVersion": "kubernaut.ai/v1alpha1",
        "kind": "WorkflowExecution",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "uid": "5b0d2c8e-3f47-4c1e-9a0b-6d2f8e1c7a43",
            "resourceVersion": "184467",
            "generation": 1,
            "creationTimestamp": "2026-03-01T11:50:00Z",
        },
        "spec": {
            "remediationRequestRef": {
                "apiVersion": "kubernaut.ai/v1alpha1",
                "kind": "RemediationRequest",
                "name": "rr-payment-api-oom",
                "namespace": NAMESPACE,
            },
            "workflowRef": {
                "workflowId": "oom-recovery",
                "workflowName": "OOM recovery",
                "actionType": "IncreaseMemoryLimit",
                "version": "1.2.0",
                "executionBundle": "ghcr.io/kubernaut/workflows/oom-recovery:1.2.0",
                "executionEngine": "tekton",
            },
            "targetResource": "payments/Deployment/payment-api",
        },
    });
    if let Some(status) = status {
        object["status"] = status;
    }
    object
}

/// An UPDATE of `workflowexecutions/status` as the API server sends it.
pub fn review_json(user: &str, groups: &[&str], old: Option<Value>, new: Option<Value>) -> Value {
    wfe_bench::fixtures::status_update_review(
        "0d5f3a43-8d4e-4b8e-b2c6-1f0a8b8f2e11",
        json!({"username": user, "groups": groups}),
        wfe_object(old),
        wfe_object(new),
    )
}

/// An UPDATE by `user` (no groups) from the `old` status to the `new` one.
pub fn update(user: &str, old: Value, new: Value) -> Value {
    review_json(user, &[], Some(old), Some(new))
}

pub fn request(review: &Value) -> AdmissionRequest<DynamicObject> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_value(review.clone()).expect("the review deserialises");
    review.try_into().expect("the review carries a request")
}

pub fn validate(policy: &Policy, review: &Value) -> Verdict {
    review::validate(policy, &request(review))
}

pub fn mutate(policy: &Policy, review: &Value) -> Verdict {
    review::mutate(policy, &request(review), now())
}

pub fn denial(verdict: &Verdict) -> &Denial {
    match &verdict.decision {
        Decision::Deny(d) => d,
        other => panic!(
            "expected a denial, got {other:?} (warnings {:?})",
            verdict.warnings
        ),
    }
}

/// Asserts a denial for `reason` and returns its message after checking the common shape: 403
/// for policy reasons, one line, naming the object.
pub fn denied(verdict: &Verdict, reason: DenyReason) -> String {
    let d = denial(verdict);
    assert_eq!(d.reason, reason, "{}", d.message);
    let expected_code = match reason {
        DenyReason::InvalidStatus | DenyReason::MissingObject => 400,
        _ => 403,
    };
    assert_eq!(d.reason.code(), expected_code);
    assert!(!d.message.contains('\n'), "one line: {}", d.message);
    assert!(
        d.message
            .contains(&format!("WorkflowExecution {NAMESPACE}/{NAME}")),
        "names the object: {}",
        d.message
    );
    d.message.clone()
}

pub fn allowed(verdict: &Verdict) {
    assert!(
        !matches!(verdict.decision, Decision::Deny(_)),
        "expected no denial, got {:?}",
        verdict.decision
    );
}

fn status_of(object: &Value) -> Option<Status> {
    object.get("status").and_then(Value::as_object).cloned()
}

/// `review` with its request's object replaced.
pub fn with_object(review: &Value, object: Value) -> Value {
    let mut review = review.clone();
    review["request"]["object"] = object;
    review
}

/// What one pass of the mutating endpoint did.
#[derive(Debug)]
pub struct MutatePass {
    pub verdict: Verdict,
    /// The request's object with the patch applied (unchanged when allowed as sent or denied).
    pub object: Value,
}

impl MutatePass {
    pub fn status(&self) -> &Value {
        &self.object["status"]
    }

    pub fn warnings(&self) -> String {
        self.verdict.warnings.join("\n")
    }

    /// The review with the mutated object, as the validating webhook receives it.
    pub fn mutated_review(&self, review: &Value) -> Value {
        with_object(review, self.object.clone())
    }
}

/// One pass of the mutating endpoint at `now`, checked: the verdict agrees with `combine`, a
/// patch applies to the object it was made for and yields exactly the combined status, and a
/// second pass over that result (same old object, same `now`) is an empty patch.
pub fn run_review_at(policy: &Policy, review: &Value, now: Timestamp) -> MutatePass {
    let req = request(review);
    let verdict = review::mutate(policy, &req, now);
    let object = review["request"]["object"].clone();
    let user = req.user_info.username.as_deref().unwrap_or("");
    let groups = req.user_info.groups.clone().unwrap_or_default();
    let old = status_of(&review["request"]["oldObject"]);
    let new = status_of(&object);
    let combined = combine(
        policy,
        old.as_ref(),
        new.as_ref(),
        policy.writer(user, &groups),
        now,
    );
    assert!(!verdict.ignored, "an UPDATE of the status is not ignored");
    let patched = match &verdict.decision {
        Decision::Deny(d) => {
            assert_eq!(
                d.reason,
                DenyReason::BlockClearanceRejected,
                "{}",
                d.message
            );
            assert!(combined.denial.is_some(), "combine agrees: {}", d.message);
            return MutatePass { verdict, object };
        }
        Decision::Allow => object,
        Decision::Patch(patch) => {
            assert!(!patch.0.is_empty(), "a Patch decision is never empty");
            let mut doc = object.clone();
            if let Err(e) = json_patch::patch(&mut doc, &patch.0) {
                panic!("patch {patch} does not apply to {object}: {e}");
            }
            doc
        }
    };
    assert!(combined.denial.is_none());
    assert_eq!(verdict.warnings, combined.warnings);
    // Corrections are reported only for a write the validating endpoint lets through.
    let refused = matches!(
        review::validate(policy, &request(&with_object(review, patched.clone()))).decision,
        Decision::Deny(_)
    );
    if refused {
        assert!(verdict.corrections.is_empty(), "{:?}", verdict.corrections);
    } else {
        assert_eq!(verdict.corrections, combined.corrections);
    }
    assert_eq!(
        patched.get("status").cloned().unwrap_or_else(|| json!({})),
        Value::Object(combined.status.clone()),
        "the patched object carries the combined status"
    );
    let again = review::mutate(policy, &request(&with_object(review, patched.clone())), now);
    assert_eq!(
        again.decision,
        Decision::Allow,
        "mutation is idempotent; second-pass warnings {:?}",
        again.warnings
    );
    MutatePass {
        verdict,
        object: patched,
    }
}

pub fn run_review(policy: &Policy, review: &Value) -> MutatePass {
    run_review_at(policy, review, now())
}

/// [`run_review`] for an UPDATE by `user` (no groups) from `old` to `new`.
pub fn run(policy: &Policy, user: &str, old: Value, new: Value) -> MutatePass {
    run_review(policy, &update(user, old, new))
}

/// A condition of `status` by type.
pub fn find_condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|list| list.iter().find(|c| c["type"] == kind))
        .unwrap_or_else(|| panic!("no condition {kind} in {status}"))
}

pub fn condition_types(status: &Value) -> Vec<String> {
    status["conditions"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|c| c["type"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
