//! The policy alone: `combine` and the two review steps for small (~4 KB) and large (~16 KB)
//! WorkflowExecution objects, plus the handler's whole in-process step (parse, decide,
//! serialise). Run with `cargo bench -p wfe-bench --bench policy`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use jiff::Timestamp;
use serde_json::Value;
use wfe_admission::config::Config;
use wfe_admission::policy::Policy;
use wfe_admission::policy::combine::combine;
use wfe_admission::policy::review;
use wfe_admission::server::admission::parse_review;
use wfe_bench::fixtures::{self, CASES, Case, Size};
use wfe_bench::policy::step;

fn policy() -> Policy {
    Policy::new(Config::default()).expect("default policy")
}

fn benches(c: &mut Criterion) {
    let policy = policy();
    let now: Timestamp = "2026-03-01T12:00:00Z".parse().expect("time");
    for size in [Size::Small, Size::Large] {
        let mut group = c.benchmark_group(format!("policy/{}", size.as_str()));
        // combine alone, on the cases that combine something.
        for case in [Case::StartRunning, Case::OneCondition, Case::BlockClearance] {
            let (old, new, user) = fixtures::statuses(case, size);
            let (Value::Object(old), Value::Object(new)) = (old, new) else {
                panic!("statuses are objects");
            };
            let writer = policy.writer(user, &[]);
            group.bench_function(BenchmarkId::new("combine", case.as_str()), |b| {
                b.iter(|| combine(&policy, Some(&old), Some(&new), writer, now))
            });
        }
        // review::validate / review::mutate on a parsed request.
        let requests: Vec<_> = CASES
            .iter()
            .map(|case| {
                let body = serde_json::to_vec(&fixtures::review(*case, size)).expect("json");
                parse_review(&body).expect("review")
            })
            .collect();
        group.throughput(Throughput::Elements(requests.len() as u64));
        group.bench_function("review::validate (8-case mix)", |b| {
            b.iter(|| {
                for r in &requests {
                    std::hint::black_box(review::validate(&policy, r));
                }
            })
        });
        group.bench_function("review::mutate (8-case mix)", |b| {
            b.iter(|| {
                for r in &requests {
                    std::hint::black_box(review::mutate(&policy, r, now));
                }
            })
        });
        // The whole handler step: bytes in, bytes out.
        let bodies: Vec<Vec<u8>> = CASES
            .iter()
            .map(|case| serde_json::to_vec(&fixtures::review(*case, size)).expect("json"))
            .collect();
        for (name, mutate) in [
            ("step /validate (8-case mix)", false),
            ("step /mutate (8-case mix)", true),
        ] {
            group.bench_function(name, |b| {
                b.iter(|| {
                    for body in &bodies {
                        std::hint::black_box(step(&policy, body, mutate));
                    }
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = policy_benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = benches
}
criterion_main!(policy_benches);
