//! The default policy's match conditions in kube-apiserver's own evaluator, on kubernaut's real
//! mix: no evaluation errors, and the calls the e2e suite counts through the API server. Needs
//! the Go toolchain the control plane is built with; `WFE_SKIP_E2E=1` skips it with the suite.

use std::path::Path;

use wfe_admission::policy::match_conditions::{MUTATE_MATCH_CONDITION, VALIDATE_MATCH_CONDITION};
use wfe_bench::celcost::{CRD_RULE, compile, rows};

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
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
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
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
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
