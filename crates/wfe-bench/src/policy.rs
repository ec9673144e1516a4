//! The policy step alone, in process: the handler's work for one request without HTTP or TLS
//! (parse the review, decide, serialise the answer).

use std::time::{Duration, Instant};

use jiff::Timestamp;

use kube::core::DynamicObject;
use kube::core::admission::AdmissionRequest;

use wfe_admission::config::Config;
use wfe_admission::metrics::Endpoint;
use wfe_admission::policy::Policy;
use wfe_admission::policy::object::ReviewObject;
use wfe_admission::policy::review;
use wfe_admission::server::admission::{parse_for, parse_review_as, respond};

use super::fixtures::{self, CASES, Size};

#[derive(Debug, Clone)]
pub struct StepTiming {
    pub size: Size,
    pub review_bytes: usize,
    /// Mean microseconds per request over the case mix: validate, mutate.
    pub validate_us: f64,
    pub mutate_us: f64,
    /// The same with the objects parsed into `DynamicObject`s (how the handler parsed before).
    pub validate_dynamic_us: f64,
    pub mutate_dynamic_us: f64,
    /// Parsing alone (the handler's way), microseconds.
    pub parse_us: f64,
}

/// Parsing alone, as the handler parses for /mutate (whole statuses).
pub fn parse_only(policy: &Policy, body: &[u8], _: bool) -> usize {
    parse_for(Endpoint::Mutate, policy, body)
        .map(|r| r.uid.len())
        .unwrap_or(0)
}

/// One handler step as the handler does it: parse, decide, serialise. Returns the answer's
/// length.
pub fn step(policy: &Policy, body: &[u8], mutate: bool) -> usize {
    let endpoint = if mutate {
        Endpoint::Mutate
    } else {
        Endpoint::Validate
    };
    match parse_for(endpoint, policy, body) {
        Ok(request) => decide(policy, &request, mutate),
        Err(_) => 0,
    }
}

/// The step with the objects parsed into `DynamicObject`s.
pub fn step_dynamic(policy: &Policy, body: &[u8], mutate: bool) -> usize {
    step_as::<DynamicObject>(policy, body, mutate)
}

fn step_as<K>(policy: &Policy, body: &[u8], mutate: bool) -> usize
where
    K: ReviewObject + serde::de::DeserializeOwned,
{
    match parse_review_as::<K>(body) {
        Ok(request) => decide(policy, &request, mutate),
        Err(_) => 0,
    }
}

fn decide<K: ReviewObject>(policy: &Policy, request: &AdmissionRequest<K>, mutate: bool) -> usize {
    let verdict = if mutate {
        review::mutate(policy, request, Timestamp::now())
    } else {
        review::validate(policy, request)
    };
    serde_json::to_vec(&respond(&request.uid, &verdict))
        .map(|v| v.len())
        .unwrap_or(0)
}

type Step = fn(&Policy, &[u8], bool) -> usize;

fn time_mix(
    policy: &Policy,
    bodies: &[Vec<u8>],
    step: Step,
    mutate: bool,
    budget: Duration,
) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    let mut sink = 0usize;
    while start.elapsed() < budget || n == 0 {
        for body in bodies {
            sink = sink.wrapping_add(step(policy, body, mutate));
            n += 1;
        }
    }
    std::hint::black_box(sink);
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// Mean time per request of the mix, by object size.
pub fn timings(budget: Duration) -> anyhow::Result<Vec<StepTiming>> {
    let policy = Policy::new(Config::default())?;
    let mut out = Vec::new();
    for size in [Size::Small, Size::Large] {
        let bodies: Vec<Vec<u8>> = CASES
            .iter()
            .map(|c| serde_json::to_vec(&fixtures::review(*c, size)))
            .collect::<Result<_, _>>()?;
        let review_bytes = bodies.iter().map(Vec::len).sum::<usize>() / bodies.len();
        // Warm the allocator and caches, then measure.
        time_mix(&policy, &bodies, step, true, budget / 10);
        out.push(StepTiming {
            size,
            review_bytes,
            validate_us: time_mix(&policy, &bodies, step, false, budget),
            mutate_us: time_mix(&policy, &bodies, step, true, budget),
            validate_dynamic_us: time_mix(&policy, &bodies, step_dynamic, false, budget / 2),
            mutate_dynamic_us: time_mix(&policy, &bodies, step_dynamic, true, budget / 2),
            parse_us: time_mix(&policy, &bodies, parse_only, false, budget / 2),
        });
    }
    Ok(out)
}
