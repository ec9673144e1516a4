//! The default policy's match conditions in kube-apiserver's own evaluator, on kubernaut's real
//! mix: no evaluation errors, and the calls the e2e suite counts through the API server. Needs
//! the Go toolchain the control plane is built with; `WFE_SKIP_E2E=1` skips it with the suite.

use std::path::Path;

use wfe_admission::policy::match_conditions::{MUTATE_MATCH_CONDITION, VALIDATE_MATCH_CONDITION};
use wfe_bench::celcost::{CRD_RULE, rows};

#[test]
fn the_real_mix_evaluates_without_errors_and_skips_what_the_e2e_suite_sees_skipped() {
    if std::env::var("WFE_SKIP_E2E").as_deref() == Ok("1") {
        eprintln!("celcost: skipped (WFE_SKIP_E2E=1)");
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
