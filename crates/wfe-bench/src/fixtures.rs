//! Realistic WorkflowExecution AdmissionReviews for the benchmark: objects of 4 to 16 KB with
//! 6 to 10 conditions and full `managedFields`, in a fixed mix of legal, illegal and combining
//! status updates. Everything is built from code, so the benchmark needs no data files.

use serde_json::{Map, Value, json};

pub const CONTROLLER: &str = "system:serviceaccount:kubernaut-system:workflowexecution-controller";
pub const OPERATOR: &str = "alice@example.com";
pub const NAMESPACE: &str = "kubernaut-system";

/// Object size class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// About 4 KB: 6 conditions, two managedFields entries.
    Small,
    /// About 16 KB: 10 conditions, a larger spec and more managedFields entries.
    Large,
}

impl Size {
    pub fn as_str(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Large => "large",
        }
    }
}

/// One status update of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// Controller: Pending -> Running without startTime (mutate stamps it).
    StartRunning,
    /// Controller: Running -> Completed without completionTime (stamped, duration derived).
    Complete,
    /// Controller: same phase, progress counters and one condition change.
    Progress,
    /// Controller: Completed -> Running (validate denies).
    IllegalRestart,
    /// Operator moves the phase (validate denies: not the owner).
    OperatorMovesPhase,
    /// Controller sends a merge patch with one condition (mutate puts the others back).
    OneCondition,
    /// Operator clears a block (mutate attributes it).
    BlockClearance,
    /// Operator rewrites a controller-owned field (mutate reverts it with a warning).
    NonOwnerChange,
}

pub const CASES: [Case; 8] = [
    Case::StartRunning,
    Case::Complete,
    Case::Progress,
    Case::IllegalRestart,
    Case::OperatorMovesPhase,
    Case::OneCondition,
    Case::BlockClearance,
    Case::NonOwnerChange,
];

impl Case {
    pub fn as_str(self) -> &'static str {
        match self {
            Case::StartRunning => "start-running",
            Case::Complete => "complete",
            Case::Progress => "progress",
            Case::IllegalRestart => "illegal-restart",
            Case::OperatorMovesPhase => "operator-moves-phase",
            Case::OneCondition => "one-condition",
            Case::BlockClearance => "block-clearance",
            Case::NonOwnerChange => "non-owner-change",
        }
    }
}

use wfe_admission::config::CONDITION_TYPES;

fn condition(t: &str, status: &str, i: usize, size: Size) -> Value {
    let words = match size {
        Size::Small => 1,
        Size::Large => 4,
    };
    let message = format!(
        "{t}: {}",
        "the workflow execution controller observed the pipeline run and updated this condition; "
            .repeat(words)
    );
    json!({
        "type": t,
        "status": status,
        "reason": format!("{t}Observed"),
        "message": message.trim_end(),
        "lastTransitionTime": format!("2026-03-01T11:5{}:{:02}Z", i % 10, (i * 7) % 60),
        "observedGeneration": 1,
    })
}

fn conditions(size: Size, status: &str) -> Vec<Value> {
    let n = match size {
        Size::Small => 6,
        Size::Large => 10,
    };
    CONDITION_TYPES[..n]
        .iter()
        .enumerate()
        .map(|(i, t)| condition(t, status, i, size))
        .collect()
}

fn managed_fields(size: Size) -> Value {
    let mut entries = vec![
        json!({
            "manager": "remediationorchestrator-controller",
            "operation": "Update",
            "apiVersion": "kubernaut.ai/v1alpha1",
            "time": "2026-03-01T11:50:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:kubernaut.ai/remediation-request": {},
                "f:kubernaut.ai/workflow-id": {}}, "f:ownerReferences": {".": {},
                "k:{\"uid\":\"a3e1f9c2-7d45-4b8a-9e36-0c5d8f2b1e70\"}": {}}},
                "f:spec": {"f:remediationRequestRef": {}, "f:workflowRef": {}, "f:targetResource": {},
                "f:clusterID": {}, "f:parameters": {}, "f:confidence": {}, "f:rationale": {},
                "f:timesOutAt": {}}}
        }),
        json!({
            "manager": "workflowexecution-controller",
            "operation": "Update",
            "apiVersion": "kubernaut.ai/v1alpha1",
            "time": "2026-03-01T12:00:00Z",
            "fieldsType": "FieldsV1",
            "subresource": "status",
            "fieldsV1": {"f:status": {"f:observedGeneration": {}, "f:phase": {}, "f:startTime": {},
                "f:executionRef": {".": {}, "f:name": {}}, "f:executionStatus": {".": {},
                "f:status": {}, "f:reason": {}, "f:message": {}, "f:completedTasks": {},
                "f:totalTasks": {}, "f:retryCount": {}}, "f:ephemeralCredentialIDs": {},
                "f:conditions": {".": {}}}}
        }),
    ];
    if size == Size::Large {
        for (i, t) in CONDITION_TYPES.iter().enumerate() {
            entries.push(json!({
                "manager": format!("kubernaut-agent-{i}"),
                "operation": "Apply",
                "apiVersion": "kubernaut.ai/v1alpha1",
                "time": format!("2026-03-01T12:0{i}:00Z"),
                "fieldsType": "FieldsV1",
                "subresource": "status",
                "fieldsV1": {"f:status": {"f:conditions": {
                    format!("k:{{\"type\":\"{t}\"}}"): {".": {}, "f:lastTransitionTime": {},
                    "f:message": {}, "f:observedGeneration": {}, "f:reason": {}, "f:status": {},
                    "f:type": {}}}}}
            }));
        }
    }
    Value::Array(entries)
}

fn spec(size: Size) -> Value {
    let n_params = match size {
        Size::Small => 4,
        Size::Large => 40,
    };
    let parameters: Map<String, Value> = (0..n_params)
        .map(|i| {
            (
                format!("PARAMETER_{i:02}"),
                Value::String(format!("value-{i:02}-for-the-remediation-workflow")),
            )
        })
        .collect();
    let declared: Map<String, Value> = (0..n_params)
        .map(|i| (format!("PARAMETER_{i:02}"), Value::Bool(true)))
        .collect();
    let rationale = match size {
        Size::Small => "The pod was OOMKilled three times in ten minutes; raising the memory limit is the lowest-risk remediation.".to_string(),
        Size::Large => "The pod was OOMKilled three times in ten minutes; raising the memory limit is the lowest-risk remediation. ".repeat(12),
    };
    json!({
        "remediationRequestRef": {"apiVersion": "kubernaut.ai/v1alpha1", "kind": "RemediationRequest",
            "name": "rr-payment-api-oom-7f3c9", "namespace": NAMESPACE,
            "uid": "a3e1f9c2-7d45-4b8a-9e36-0c5d8f2b1e70"},
        "workflowRef": {"workflowId": "oom-recovery", "workflowName": "OOM Recovery",
            "actionType": "IncreaseMemoryLimit", "version": "1.2.0",
            "executionBundle": "ghcr.io/kubernaut/workflows/oom-recovery:v1.2.0",
            "executionBundleDigest": "sha256:9f2c4e1b7a3d5c8e0f6a2b4d7c9e1f3a5b7d9c2e4f6a8b0c1d3e5f7a9b2c4d6e",
            "executionEngine": "tekton",
            "engineConfig": {"pipelineRef": {"name": "oom-recovery"}, "timeouts": {"pipeline": "30m0s"}},
            "serviceAccountName": "kubernaut-workflow-runner",
            "dependencies": {"secrets": [{"name": "payments-kubeconfig"}],
                "configMaps": [{"name": "oom-recovery-defaults"}]},
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"cpu": "500m", "memory": "512Mi"}},
            "declaredParameterNames": declared},
        "targetResource": "payments/Deployment/payment-api",
        "clusterID": "eu-west-1-prod",
        "parameters": parameters,
        "confidence": 0.92,
        "rationale": rationale.trim_end(),
        "timesOutAt": "2026-03-01T12:30:00Z",
    })
}

/// A whole WorkflowExecution with the given status.
pub fn object(size: Size, status: Value) -> Value {
    json!({
        "apiVersion": "kubernaut.ai/v1alpha1",
        "kind": "WorkflowExecution",
        "metadata": {
            "name": "wfe-payment-api-oom-7f3c9",
            "namespace": NAMESPACE,
            "uid": "5b0d2c8e-3f47-4c1e-9a0b-6d2f8e1c7a43",
            "resourceVersion": "184467",
            "generation": 1,
            "creationTimestamp": "2026-03-01T11:50:00Z",
            "labels": {"kubernaut.ai/remediation-request": "rr-payment-api-oom-7f3c9",
                "kubernaut.ai/workflow-id": "oom-recovery"},
            "ownerReferences": [{"apiVersion": "kubernaut.ai/v1alpha1", "kind": "RemediationRequest",
                "name": "rr-payment-api-oom-7f3c9", "uid": "a3e1f9c2-7d45-4b8a-9e36-0c5d8f2b1e70",
                "controller": true, "blockOwnerDeletion": true}],
            "managedFields": managed_fields(size),
        },
        "spec": spec(size),
        "status": status,
    })
}

fn pending(size: Size) -> Value {
    json!({"observedGeneration": 1, "phase": "Pending", "conditions": conditions(size, "Unknown")})
}

fn running(size: Size) -> Value {
    json!({
        "observedGeneration": 1,
        "phase": "Running",
        "startTime": "2026-03-01T11:56:30Z",
        "executionRef": {"name": "wfe-payment-api-oom-7f3c9-run"},
        "executionStatus": {"status": "Unknown", "reason": "Running",
            "message": "Tasks Completed: 1 (Failed: 0, Cancelled 0), Incomplete: 3, Skipped: 0",
            "completedTasks": 1, "totalTasks": 4, "retryCount": 0},
        "ephemeralCredentialIDs": [4711, 4712],
        "conditions": conditions(size, "True"),
    })
}

fn completed(size: Size) -> Value {
    let mut s = running(size);
    s["phase"] = json!("Completed");
    s["completionTime"] = json!("2026-03-01T11:59:00Z");
    s["duration"] = json!("2m30s");
    s["executionStatus"]["completedTasks"] = json!(4);
    s
}

/// (old status, new status, user) of one case.
pub fn statuses(case: Case, size: Size) -> (Value, Value, &'static str) {
    match case {
        Case::StartRunning => {
            let mut new = running(size);
            if let Some(m) = new.as_object_mut() {
                m.remove("startTime");
            }
            (pending(size), new, CONTROLLER)
        }
        Case::Complete => {
            let mut new = completed(size);
            if let Some(m) = new.as_object_mut() {
                m.remove("completionTime");
                m.remove("duration");
            }
            (running(size), new, CONTROLLER)
        }
        Case::Progress => {
            let mut new = running(size);
            new["executionStatus"]["completedTasks"] = json!(2);
            new["conditions"][2]["message"] = json!("2 of 4 tasks done");
            (running(size), new, CONTROLLER)
        }
        Case::IllegalRestart => {
            let mut new = completed(size);
            new["phase"] = json!("Running");
            (completed(size), new, CONTROLLER)
        }
        Case::OperatorMovesPhase => {
            let mut new = running(size);
            new["phase"] = json!("Failed");
            (running(size), new, OPERATOR)
        }
        Case::OneCondition => {
            let new = json!({"phase": "Running", "conditions": [condition("ExecutionRunning", "False", 3, size)]});
            (running(size), new, CONTROLLER)
        }
        Case::BlockClearance => {
            let mut new = running(size);
            new["blockClearance"] = json!({"clearReason":
                "the failed execution was investigated and the target deployment is healthy again now",
                "clearMethod": "StatusField"});
            (running(size), new, OPERATOR)
        }
        Case::NonOwnerChange => {
            let mut new = running(size);
            new["executionStatus"]["retryCount"] = json!(3);
            (running(size), new, OPERATOR)
        }
    }
}

/// The AdmissionReview the API server would send for one case.
pub fn review(case: Case, size: Size) -> Value {
    let (old, new, user) = statuses(case, size);
    let groups = if user == CONTROLLER {
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:kubernaut-system",
            "system:authenticated"
        ])
    } else {
        json!(["platform-operators", "system:authenticated"])
    };
    let user_info = json!({"username": user, "uid": "8f0c6f0e-2b7a-4d8c-a1f3-5e9d2c7b4a10",
        "groups": groups,
        "extra": {"authentication.kubernetes.io/credential-id": ["JTI=2f6e1d0c-9b8a-4c7d"]}});
    let uid = format!(
        "9e8d7c6b-5a49-4382-9170-{}-{}",
        case.as_str(),
        size.as_str()
    );
    status_update_review(&uid, user_info, object(size, old), object(size, new))
}

/// The name and namespace of every fixture object.
pub const NAME: &str = "wfe-payment-api-oom-7f3c9";

/// An UPDATE of `workflowexecutions/status` from `old_object` to `object`, by `user_info`, as
/// the API server sends it (the benchmark's mix and the policy's unit tests build theirs here).
pub fn status_update_review(
    uid: &str,
    user_info: Value,
    old_object: Value,
    object: Value,
) -> Value {
    let gvk = json!({"group": "kubernaut.ai", "version": "v1alpha1", "kind": "WorkflowExecution"});
    let gvr =
        json!({"group": "kubernaut.ai", "version": "v1alpha1", "resource": "workflowexecutions"});
    json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": uid,
            "kind": gvk, "resource": gvr, "subResource": "status",
            "requestKind": gvk, "requestResource": gvr, "requestSubResource": "status",
            "name": NAME,
            "namespace": NAMESPACE,
            "operation": "UPDATE",
            "userInfo": user_info,
            "object": object,
            "oldObject": old_object,
            "dryRun": false,
            "options": {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"},
        }
    })
}

/// Every case in both sizes, serialised: the fixed request mix.
pub fn mix() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for size in [Size::Small, Size::Large] {
        for case in CASES {
            let name = format!("{}/{}", case.as_str(), size.as_str());
            // Serialising a Value cannot fail.
            let bytes = serde_json::to_vec(&review(case, size)).unwrap_or_default();
            out.push((name, bytes));
        }
    }
    out
}

/// Size of one object (not the review) in bytes, for the report.
pub fn object_bytes(size: Size) -> usize {
    serde_json::to_vec(&object(size, running(size)))
        .map(|v| v.len())
        .unwrap_or(0)
}
