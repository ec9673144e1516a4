//! The default policy's match conditions in kube-apiserver's own evaluator, on kubernaut's real
//! mix: no evaluation errors, and the calls the e2e suite counts through the API server. Needs
//! the Go toolchain the control plane is built with; `WFE_SKIP_E2E=1` skips it with the suite.

use std::path::{Path, PathBuf};

use wfe_admission::policy::match_conditions::{
    MUTATE_MATCH_CONDITION, VALIDATE_MATCH_CONDITION, validate_match_condition,
};
use wfe_bench::celcost::{CRD_RULE, FLOOR, compile, drafts, rows};

/// The repository: this crate lives in crates/wfe-bench.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn skipped() -> bool {
    let skip = std::env::var("WFE_SKIP_E2E").as_deref() == Ok("1");
    if skip {
        eprintln!("celcost: skipped (WFE_SKIP_E2E=1)");
    }
    skip
}

/// An API server checks a new configuration's conditions in the CEL of the oldest version it
/// stays compatible with, one minor below its own. The chart's floor is 1.30 (Chart.yaml), and
/// it renders the mutating condition from 1.33 on (`mutating_condition_only_where_the_api_server
/// _accepts_it` in the chart tests): each must compile where it is rendered, and the mutating one
/// must not compile on 1.32, or the chart would leave it out where it is accepted.
#[test]
fn each_condition_compiles_on_every_api_server_the_chart_renders_it_for() {
    if skipped() {
        return;
    }
    let repo = repo();
    let chart =
        std::fs::read_to_string(repo.join("charts/wfe-admission/Chart.yaml")).expect("Chart.yaml");
    assert!(
        chart.contains("kubeVersion: \">=1.30.0-0\""),
        "the floor this test checks"
    );
    let error = |compatibility: &str, name: &str| {
        compile(&repo, compatibility)
            .expect("celcost compiles")
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .1
    };
    assert_eq!(error("1.29", VALIDATE_MATCH_CONDITION), None);
    assert_eq!(error("1.32", MUTATE_MATCH_CONDITION), None);
    let refused = error("1.31", MUTATE_MATCH_CONDITION).expect("1.32 refuses it");
    assert!(
        refused.contains("undeclared reference to 'all'"),
        "{refused}"
    );
}

#[test]
fn the_real_mix_evaluates_without_errors_and_skips_what_the_e2e_suite_sees_skipped() {
    if skipped() {
        return;
    }
    let repo = repo();
    let rows = rows(&repo, 1).expect("celcost runs");
    for r in &rows {
        eprintln!("{r:?}");
        assert_eq!(r.errors, 0, "{r:?}");
        assert_eq!(r.evaluations, 26, "{r:?}");
    }
    let row = |name: &str| rows.iter().find(|r| r.name == name).expect(name);
    // Only the executor's field, written with the controller's identity, reaches /mutate.
    assert_eq!(row(MUTATE_MATCH_CONDITION).r#true, 1);
    assert_eq!(row(VALIDATE_MATCH_CONDITION).r#true, 0);
    // Every write of the mix is legal: the CRD rule holds on each.
    assert_eq!(row(CRD_RULE).r#true, 26);
}

/// The benchmark's steadier figure: callgrind's count of the instructions one evaluation takes,
/// each condition alone, a draft's too (`wfe-bench --condition FILE`). The mutating condition
/// proves much more than the CRD rule and must count more. The floor reference reads less than
/// any sound mutating condition, so the real one must count more than it; and it already counts
/// more than the validating condition, which the API server takes about 0.05 ms to evaluate:
/// docs/benchmarks.md's reason why no sound mutating condition meets that target. A draft with
/// the validating condition's text must answer as it does, at about its count. Every row gets
/// a count where valgrind is installed (on every machine the project runs on).
#[test]
fn each_condition_has_an_instruction_count_and_the_floor_lies_between_the_two() {
    if skipped() {
        return;
    }
    if !wfe_bench::celcost::has_valgrind() {
        eprintln!("celcost: no valgrind, no instruction counts to check");
        return;
    }
    let repo = repo();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let draft = dir.path().join("draft.cel");
    let validate = validate_match_condition(&wfe_admission::config::Config::default());
    std::fs::write(&draft, &validate).expect("the draft written");
    let rows = drafts(&repo, std::slice::from_ref(&draft)).expect("celcost runs");
    let row = |name: &str| {
        rows.iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no row {name}: {rows:?}"))
    };
    let count = |name: &str| {
        row(name)
            .instructions
            .unwrap_or_else(|| panic!("no count for {name}: {rows:?}"))
    };
    let (mutate, validate, rule, floor, drafted) = (
        count(MUTATE_MATCH_CONDITION),
        count(VALIDATE_MATCH_CONDITION),
        count(CRD_RULE),
        count(FLOOR),
        count(&draft.display().to_string()),
    );
    eprintln!(
        "instructions per evaluation: mutate {mutate:.0}, floor {floor:.0}, validate \
         {validate:.0}, draft {drafted:.0}, CRD rule {rule:.0}"
    );
    assert!(rule > 1_000.0, "{rule}");
    assert!(
        mutate > floor && floor > validate && validate > rule,
        "{mutate} {floor} {validate} {rule}"
    );
    let drafted_row = row(&draft.display().to_string());
    assert_eq!(drafted_row.errors, 0, "{drafted_row:?}");
    assert_eq!(drafted_row.r#true, row(VALIDATE_MATCH_CONDITION).r#true);
    assert!(
        (drafted / validate - 1.0).abs() < 0.1,
        "the same text, counted twice: {drafted} {validate}"
    );
}

/// The proof that what the conditions skip needs no call, offline and on thousands of writes:
/// kubernaut's real writes each perturbed a few times (keys dropped, added, retyped or nulled,
/// phases moved, conditions edited, reordered, duplicated, appended or cut, durations and
/// times shifted, the failure mirror broken, the stored status changed, other writers), each
/// judged by kube-apiserver's evaluator. Every write the mutating condition skips must come out
/// of combining as sent with nothing to say, and every write the validating one skips must be
/// allowed by /validate. The e2e suite proves the same through a real API server, on fewer.
#[test]
fn what_either_condition_skips_needs_no_call_on_perturbed_real_writes() {
    use serde_json::Value;
    use wfe_admission::config::Config;
    use wfe_admission::offline::{self, Write};
    use wfe_admission::policy::{Policy, review};
    use wfe_bench::celcost::{answers, input};
    use wfe_bench::proof::combining_keeps;

    if skipped() {
        return;
    }
    let repo = repo();
    let users = [
        wfe_bench::fixtures::CONTROLLER,
        "system:serviceaccount:kubernaut-system:remediationorchestrator-controller",
        "alice@example.com",
    ];
    let mut rng = Rng(0x5eed_c0de);
    let mut writes: Vec<(&str, Option<Value>, Value)> = Vec::new();
    for (old, new) in wfe_bench::e2e::real_mix_pairs(&repo).expect("the real mix") {
        writes.push((users[0], old.clone(), new.clone()));
        for _ in 0..40 {
            let (mut old, mut new) = (old.clone(), new.clone());
            for _ in 0..=rng.below(3) {
                perturb(&mut rng, &mut old, &mut new);
            }
            let user = if rng.below(5) == 0 {
                *rng.pick(&users)
            } else {
                users[0]
            };
            writes.push((user, old, new));
        }
    }
    let inputs: Vec<Value> = writes
        .iter()
        .map(|(user, old, new)| input(user, old.clone(), new.clone()))
        .collect();
    let rows = answers(&repo, &inputs).expect("celcost runs");
    let policy = Policy::new(Config::default()).expect("the default policy");
    let (mut skipped_mutate, mut skipped_validate) = (0, 0);
    for (k, (user, old, new)) in writes.iter().enumerate() {
        let answer = |name: &str| {
            let row = rows.iter().find(|r| r.name == name).expect(name);
            assert_eq!(row.errors, 0, "{name}: {:?}", row.first_error);
            row.answers[k].as_str()
        };
        let shown = || format!("user {user}\nstored {old:?}\nsent {new}");
        if answer(MUTATE_MATCH_CONDITION) == "false" {
            skipped_mutate += 1;
            let stored = old.as_ref().and_then(Value::as_object).cloned();
            let sent = new.as_object().expect("a status object");
            let writer = policy.writer(user, &[]);
            if let Err(e) = combining_keeps(&policy, writer, &stored.unwrap_or_default(), sent) {
                panic!("user {user}: {e:#}");
            }
        }
        if answer(VALIDATE_MATCH_CONDITION) == "false" {
            skipped_validate += 1;
            // The objects the evaluator judged.
            let write = Write {
                old: inputs[k]["oldObject"].clone(),
                new: inputs[k]["object"].clone(),
                user,
                groups: &[],
                dry_run: false,
            };
            let req = offline::request(&policy, write).expect("a request");
            let verdict = review::validate(&policy, &req);
            assert!(
                matches!(verdict.decision, review::Decision::Allow),
                "skipped /validate, but it answers {verdict:?}:\n{}",
                shown()
            );
        }
    }
    eprintln!(
        "{} writes: /mutate skipped {skipped_mutate}, /validate skipped {skipped_validate}",
        writes.len()
    );
    // The proof means something only if both skip a fair share.
    assert!(skipped_mutate * 5 > writes.len(), "{skipped_mutate}");
    assert!(skipped_validate * 2 > writes.len(), "{skipped_validate}");
}

/// A small deterministic generator (no dependency for it).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One random change to the sent status, or now and then to the stored one.
fn perturb(rng: &mut Rng, old: &mut Option<serde_json::Value>, new: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let keys = [
        "phase",
        "startTime",
        "completionTime",
        "duration",
        "failureReason",
        "failureDetails",
        "executionRef",
        "executionStatus",
        "observedGeneration",
        "deduplicatedBy",
        "ephemeralCredentialIDs",
        "blockClearance",
        "conditions",
        "somethingNew",
    ];
    let values = [
        json!(null),
        json!(""),
        json!(5),
        json!(1.0),
        json!("x"),
        json!([1]),
        json!({"a": 1}),
        json!("Running"),
        json!("Completed"),
        json!("Failed"),
        json!("Pending"),
        json!("2026-11-27T10:00:00Z"),
        json!("2026-11-27T10:03:30Z"),
        json!("3m30s"),
        json!("3m31s"),
        json!("3m33s"),
        json!({"clearedBy": "alice@example.com", "clearReason": "one two three four five six seven eight nine ten", "clearMethod": "manual"}),
    ];
    let Some(n) = new.as_object_mut() else { return };
    let key = *rng.pick(&keys);
    match rng.below(12) {
        0 => {
            n.remove(key);
        }
        1 | 2 => {
            n.insert(key.into(), rng.pick(&values).clone());
        }
        3 => {
            let phase = rng.pick(&["Pending", "Running", "Completed", "Failed", "", "Bogus"]);
            n.insert("phase".into(), json!(phase));
        }
        4..=7 => {
            let Some(Value::Array(list)) = n.get_mut("conditions") else {
                n.insert("conditions".into(), json!([{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-27T10:00:00Z"}]));
                return;
            };
            let len = list.len();
            let i = rng.below(len);
            match rng.below(9) {
                0 if len > 0 => {
                    let field =
                        *rng.pick(&["message", "reason", "status", "lastTransitionTime", "type"]);
                    let value = rng.pick(&values).clone();
                    if let Some(c) = list[i].as_object_mut() {
                        c.insert(field.into(), value);
                    }
                }
                1 if len > 0 => {
                    if let Some(c) = list[i].as_object_mut() {
                        c.remove(*rng.pick(&["lastTransitionTime", "type", "status"]));
                    }
                }
                2 if len > 1 => list.swap(i, rng.below(len)),
                3 if len > 0 => {
                    let c = list[i].clone();
                    list.push(c);
                }
                4 if len > 0 => {
                    list.remove(i);
                }
                5 => list.push(rng.pick(&values).clone()),
                6 => {
                    let t = *rng.pick(&["Ready", "AdmissionRejected", "Brand", "AuditRecorded"]);
                    let mut c = json!({"type": t, "status": "True", "reason": "R", "message": "m"});
                    if rng.below(3) > 0 {
                        c["lastTransitionTime"] = json!("2026-11-27T10:00:00Z");
                    }
                    list.push(c);
                }
                7 if len > 0 => {
                    if let Some(c) = list[i].as_object_mut() {
                        let to = *rng.pick(&["True", "False", "Unknown"]);
                        c.insert("status".into(), json!(to));
                    }
                }
                _ => {
                    n.insert("conditions".into(), rng.pick(&values).clone());
                }
            }
        }
        8 => {
            if let Some(Value::Object(fd)) = n.get_mut("failureDetails") {
                fd.insert("reason".into(), rng.pick(&values).clone());
            } else {
                n.insert("failureDetails".into(), json!({"reason": "TaskFailed"}));
            }
        }
        9 => match old {
            Some(Value::Object(o)) => {
                let key = *rng.pick(&keys);
                if rng.below(2) == 0 {
                    o.remove(key);
                } else {
                    o.insert(key.into(), rng.pick(&values).clone());
                }
            }
            _ => *old = Some(json!({"phase": "Running"})),
        },
        10 => {
            if let Some(Value::Object(o)) = old
                && let Some(Value::Array(list)) = o.get_mut("conditions")
                && let Some(c) = list.first().cloned()
            {
                list.push(c);
            }
        }
        _ => {
            // A status the controller's clock rounds: times and a duration a little off.
            let shift = rng.below(4) as i64 - 1;
            n.insert("startTime".into(), json!("2026-11-27T10:00:00Z"));
            n.insert("completionTime".into(), json!("2026-11-27T10:03:30Z"));
            n.insert("duration".into(), json!(format!("3m{}s", 30 + shift)));
        }
    }
}

/// floor.cel is written by hand for the default policy: it must read the keys the mutating
/// condition compares with the stored ones and test the same user, or it stops being the
/// floor of that condition when the policy changes.
#[test]
fn the_floor_reads_what_the_default_mutating_condition_compares() {
    let floor = wfe_bench::celcost::floor(&repo()).expect("floor.cel");
    let mutate = wfe_admission::policy::match_conditions::mutate_match_condition(
        &wfe_admission::config::Config::default(),
    )
    .expect("the default policy has a controller");
    let compared = |text: &str| -> std::collections::BTreeSet<String> {
        text.match_indices("n[?'")
            .filter_map(|(at, _)| {
                let key = text[at + 4..].split('\'').next()?;
                text[at..]
                    .starts_with(&format!("n[?'{key}'] == o[?'{key}']"))
                    .then(|| key.to_string())
            })
            .collect()
    };
    let user = |text: &str| {
        text.split("request.userInfo.username.matches(")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .map(str::to_string)
    };
    assert_eq!(compared(&floor), compared(&mutate));
    assert!(compared(&floor).len() >= 6, "{:?}", compared(&floor));
    assert_eq!(user(&floor), user(&mutate));
    assert!(user(&floor).is_some());
}
