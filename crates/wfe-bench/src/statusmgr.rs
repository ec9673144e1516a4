//! Status manager rows: API writes per multi-field update, and retries per update when 1, 4 or
//! 16 writers race on one object. Against the real kube-apiserver when the end-to-end rows run,
//! otherwise against a small in-memory API (GET/PUT of `/status` with resourceVersion
//! conflicts and an emulated 1 ms per call) so that the rows never need a cluster.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kube::Client;
use kube::api::{Api, ApiResource};
use kube::core::DynamicObject;
use serde_json::{Value, json};

use wfe_admission::config::Config;
use wfe_admission::metrics::{Attempt, Metrics};
use wfe_admission::policy::Policy;
use wfe_admission::retry::WriteOutcome;
use wfe_admission::status::StatusManager;

#[derive(Debug, Clone, Default)]
pub struct StatusRow {
    pub writers: usize,
    pub updates: u64,
    /// Write attempts that reached the API (successes + conflicts).
    pub writes: u64,
    pub conflicts: u64,
    /// Updates that gave up after the manager's attempt limit.
    pub gave_up: u64,
    pub backend: &'static str,
}

impl StatusRow {
    pub fn writes_per_update(&self) -> f64 {
        let done = self.updates - self.gave_up;
        if done == 0 {
            return f64::NAN;
        }
        (self.writes - self.conflicts) as f64 / done as f64
    }

    pub fn retries_per_update(&self) -> f64 {
        if self.updates == 0 {
            return f64::NAN;
        }
        self.conflicts as f64 / self.updates as f64
    }
}

/// Each writer changes three fields in one update: a counter, a message, a condition.
fn multi_field(writer: usize, i: usize) -> impl FnMut(&mut serde_json::Map<String, Value>) -> bool {
    move |status| {
        status.insert(
            "executionStatus".into(),
            json!({"status": "Unknown", "reason": "Running",
                "message": format!("writer {writer} update {i}"),
                "completedTasks": i % 4, "totalTasks": 4, "retryCount": 0}),
        );
        status.insert("observedGeneration".into(), json!(1));
        let conditions = status
            .entry("conditions")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = conditions {
            let c = json!({"type": "ExecutionRunning", "status": "True", "reason": "Progress",
                "message": format!("writer {writer} update {i}"),
                "lastTransitionTime": "2026-03-01T11:56:30Z"});
            match list.iter_mut().find(|c| c["type"] == "ExecutionRunning") {
                Some(old) => *old = c,
                None => list.push(c),
            }
        }
        true
    }
}

/// Runs the rows against `api` (the object `name` must exist with a status in phase Running).
pub async fn rows(
    api: &Api<DynamicObject>,
    name: &str,
    writer_counts: &[usize],
    updates_total: usize,
    backend: &'static str,
) -> anyhow::Result<Vec<StatusRow>> {
    let policy = Arc::new(Policy::new(Config::default())?);
    let mut out = Vec::new();
    for &writers in writer_counts {
        let metrics = Metrics::new();
        let manager = StatusManager::new(metrics.clone());
        let per_writer = updates_total.div_ceil(writers).max(1);
        let mut tasks = Vec::new();
        for w in 0..writers {
            let (api, manager, policy) = (api.clone(), manager.clone(), Arc::clone(&policy));
            let name = name.to_string();
            tasks.push(tokio::spawn(async move {
                let (mut gave_up, mut errors) = (0u64, Vec::new());
                for i in 0..per_writer {
                    match manager
                        .update(&api, &name, &policy, multi_field(w, i))
                        .await
                    {
                        Ok(WriteOutcome::Written { .. }) | Ok(WriteOutcome::Unchanged) => {}
                        // A give-up is the caller's error to report, not a figure to average.
                        Err(e @ wfe_admission::retry::WriteError::Conflicts(_)) => {
                            gave_up += 1;
                            errors.push(format!("writer {w}, update {i}: {e}"));
                        }
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                (gave_up, errors)
            }));
        }
        let mut row = StatusRow {
            writers,
            updates: (per_writer * writers) as u64,
            backend,
            ..StatusRow::default()
        };
        for t in tasks {
            let (gave_up, errors) = t.await?;
            if let Some(e) = errors.first() {
                return Err(anyhow!("status manager: {e}"));
            }
            row.gave_up += gave_up;
        }
        row.conflicts = metrics.status_writes_count(Attempt::Conflict);
        row.writes = metrics.status_writes_count(Attempt::Success) + row.conflicts;
        out.push(row);
    }
    Ok(out)
}

// --- the in-memory API ---------------------------------------------------------------------

type Store = Arc<Mutex<HashMap<String, (u64, Value)>>>;

const LATENCY: Duration = Duration::from_millis(1);

fn conflict(message: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": "Conflict", "code": 409});
    (StatusCode::CONFLICT, axum::Json(body)).into_response()
}

fn not_found(name: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{name} not found"), "reason": "NotFound", "code": 404});
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

type Params = Path<(String, String, String, String, String)>;

async fn get_status(State(store): State<Store>, Path((_, _, _, _, name)): Params) -> Response {
    tokio::time::sleep(LATENCY).await;
    let Ok(store) = store.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    match store.get(&name) {
        Some((rv, object)) => {
            let mut object = object.clone();
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            axum::Json(object).into_response()
        }
        None => not_found(&name),
    }
}

async fn put_status(
    State(store): State<Store>,
    Path((_, _, _, _, name)): Params,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    tokio::time::sleep(LATENCY).await;
    let Ok(mut store) = store.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let Some((rv, object)) = store.get_mut(&name) else {
        return not_found(&name);
    };
    let sent = body["metadata"]["resourceVersion"].as_str().unwrap_or("");
    if sent != rv.to_string() {
        return conflict(format!(
            "Operation cannot be fulfilled on {name}: the object has been modified"
        ));
    }
    *rv += 1;
    object["status"] = body["status"].clone();
    let mut answer = object.clone();
    answer["metadata"]["resourceVersion"] = json!(rv.to_string());
    axum::Json(answer).into_response()
}

/// A kube client over the in-memory API, and the Api for one object `name` in Running.
pub fn memory_api(name: &str, object: Value) -> (Client, Api<DynamicObject>) {
    let store: Store = Arc::new(Mutex::new(HashMap::new()));
    if let Ok(mut s) = store.lock() {
        s.insert(name.to_string(), (1, object));
    }
    let router = Router::new()
        .route(
            "/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}/status",
            get(get_status).put(put_status),
        )
        .with_state(store);
    let client = Client::new(router, "kubernaut-system");
    let resource = ApiResource {
        group: "kubernaut.ai".into(),
        version: "v1alpha1".into(),
        api_version: "kubernaut.ai/v1alpha1".into(),
        kind: "WorkflowExecution".into(),
        plural: "workflowexecutions".into(),
    };
    let api = Api::namespaced_with(client.clone(), "kubernaut-system", &resource);
    (client, api)
}
