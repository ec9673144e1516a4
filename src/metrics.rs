//! Prometheus metrics with bounded label sets (endpoints, outcomes and reasons are enums).

use std::sync::Arc;
use std::time::Instant;

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::policy::review::{Decision, DenyReason, Verdict};

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Endpoint {
    Mutate,
    Validate,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Mutate => "mutate",
            Endpoint::Validate => "validate",
        }
    }
}

/// What became of a request.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RequestOutcome {
    Allowed,
    Patched,
    Denied,
    /// Outside the policy (other resource or operation): allowed untouched.
    Ignored,
    /// Unreadable review: HTTP 400.
    Invalid,
}

impl RequestOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Allowed => "allowed",
            RequestOutcome::Patched => "patched",
            RequestOutcome::Denied => "denied",
            RequestOutcome::Ignored => "ignored",
            RequestOutcome::Invalid => "invalid",
        }
    }
}

impl Attempt {
    pub fn as_str(self) -> &'static str {
        match self {
            Attempt::Success => "success",
            Attempt::Failure => "failure",
            Attempt::Dropped => "dropped",
            Attempt::Conflict => "conflict",
            Attempt::Limited => "limited",
        }
    }
}

/// Label values are the lower-case names Prometheus users expect.
macro_rules! label_value {
    ($($t:ty),*) => {$(
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
                encoder.write_str(self.as_str())
            }
        }
    )*};
}
label_value!(Endpoint, RequestOutcome, Attempt);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: Endpoint,
    outcome: RequestOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: Endpoint,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DenialLabels {
    endpoint: Endpoint,
    reason: String,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Attempt {
    Success,
    Failure,
    /// Dropped without trying (queue full, dry-run has none).
    Dropped,
    /// A write that hit a 409 and was retried.
    Conflict,
    /// Not recorded: the object had its share of Events for that reason.
    Limited,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: Attempt,
}

type HistogramFamily = Family<EndpointLabels, Histogram, fn() -> Histogram>;

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    denials: Family<DenialLabels, Counter>,
    corrections: Family<EndpointLabels, Counter>,
    latency: HistogramFamily,
    cert_not_after: Gauge,
    client_auth_required: Gauge,
    cert_reloads: Family<ResultLabels, Counter>,
    config_reloads: Family<ResultLabels, Counter>,
    events: Family<ResultLabels, Counter>,
    status_writes: Family<ResultLabels, Counter>,
}

/// Cheap to clone; every clone records into the same registry.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn latency_histogram() -> Histogram {
    // 50µs .. ~1.6s
    Histogram::new(exponential_buckets(0.00005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wfe_admission");
        let requests = Family::<RequestLabels, Counter>::default();
        let denials = Family::<DenialLabels, Counter>::default();
        let corrections = Family::<EndpointLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let cert_not_after = Gauge::default();
        let client_auth_required = Gauge::default();
        let cert_reloads = Family::<ResultLabels, Counter>::default();
        let config_reloads = Family::<ResultLabels, Counter>::default();
        let events = Family::<ResultLabels, Counter>::default();
        let status_writes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "requests",
            "Admission reviews answered, by endpoint and outcome",
            requests.clone(),
        );
        registry.register(
            "denials",
            "Denied admission reviews, by endpoint and reason",
            denials.clone(),
        );
        registry.register(
            "status_corrections",
            "Status fields put back by the mutating webhook",
            corrections.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a complete request body to the answer",
            latency.clone(),
        );
        registry.register(
            "certificate_not_after_timestamp_seconds",
            "Expiry of the serving certificate (Unix time)",
            cert_not_after.clone(),
        );
        registry.register(
            "client_auth_required",
            "1 when only callers with a client certificate of --client-ca get through the handshake",
            client_auth_required.clone(),
        );
        registry.register(
            "certificate_reloads",
            "Serving certificate reload attempts that changed or failed",
            cert_reloads.clone(),
        );
        registry.register(
            "config_reloads",
            "Policy file reloads that changed the policy or failed",
            config_reloads.clone(),
        );
        registry.register(
            "events",
            "Kubernetes Events recorded, failed or dropped",
            events.clone(),
        );
        registry.register(
            "status_writes",
            "Writes by the status manager, by result",
            status_writes.clone(),
        );
        Self(Arc::new(Inner {
            registry,
            requests,
            denials,
            corrections,
            latency,
            cert_not_after,
            client_auth_required,
            cert_reloads,
            config_reloads,
            events,
            status_writes,
        }))
    }

    /// Starts a latency timer that records when dropped.
    pub fn timer(&self, endpoint: Endpoint) -> Timer {
        Timer {
            start: Instant::now(),
            histogram: self
                .0
                .latency
                .get_or_create(&EndpointLabels { endpoint })
                .clone(),
        }
    }

    pub fn verdict(&self, endpoint: Endpoint, verdict: &Verdict) {
        let outcome = match &verdict.decision {
            _ if verdict.ignored => RequestOutcome::Ignored,
            Decision::Allow => RequestOutcome::Allowed,
            Decision::Patch(_) => RequestOutcome::Patched,
            Decision::Deny(d) => {
                self.denial(endpoint, d.reason);
                RequestOutcome::Denied
            }
        };
        self.request(endpoint, outcome);
        if !verdict.corrections.is_empty() {
            self.0
                .corrections
                .get_or_create(&EndpointLabels { endpoint })
                .inc_by(verdict.corrections.len() as u64);
        }
    }

    fn denial(&self, endpoint: Endpoint, reason: DenyReason) {
        self.0
            .denials
            .get_or_create(&DenialLabels {
                endpoint,
                reason: reason.as_str().to_string(),
            })
            .inc();
    }

    pub fn request(&self, endpoint: Endpoint, outcome: RequestOutcome) {
        self.0
            .requests
            .get_or_create(&RequestLabels { endpoint, outcome })
            .inc();
    }

    pub fn client_auth_required(&self, required: bool) {
        self.0.client_auth_required.set(i64::from(required));
    }

    pub fn cert_loaded(&self, not_after: i64) {
        self.0.cert_not_after.set(not_after);
        self.0
            .cert_reloads
            .get_or_create(&ResultLabels {
                result: Attempt::Success,
            })
            .inc();
    }

    pub fn cert_reload_failed(&self) {
        self.0
            .cert_reloads
            .get_or_create(&ResultLabels {
                result: Attempt::Failure,
            })
            .inc();
    }

    pub fn config_reload(&self, result: Attempt) {
        self.0
            .config_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn event(&self, result: Attempt) {
        self.0.events.get_or_create(&ResultLabels { result }).inc();
    }

    pub fn status_write(&self, result: Attempt) {
        self.0
            .status_writes
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Current value of a counter family, for tests and the benchmark.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn events_count(&self, result: Attempt) -> u64 {
        self.0.events.get_or_create(&ResultLabels { result }).get()
    }

    #[cfg(any(test, feature = "test-hooks"))]
    pub fn status_writes_count(&self, result: Attempt) -> u64 {
        self.0
            .status_writes
            .get_or_create(&ResultLabels { result })
            .get()
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.0.registry);
        out
    }
}

/// Records the elapsed time into the endpoint's histogram when dropped.
pub struct Timer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}
