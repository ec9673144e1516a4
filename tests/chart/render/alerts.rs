//! The optional PrometheusRule: every expression parses as PromQL, and every series it selects
//! is one the webhook exports (or, for `up` and the API server's metrics, one the release's
//! scrape job and webhook names produce).

use std::collections::BTreeMap;

use promql_parser::label::Matcher;
use promql_parser::parser::{self, Expr, VectorSelector};
use wfe_admission::policy::review::{Decision, Denial, DenyReason, Subject, Verdict};
use wfe_admission::server::metrics::{Attempt, Endpoint, Metrics, Outcome};

use super::*;

/// Labels the scrape adds to the webhook's own series (prometheus-operator's target labels).
const TARGET_LABELS: [&str; 6] = ["namespace", "pod", "job", "instance", "service", "endpoint"];

pub(super) fn prometheus_rule_alerts_select_what_is_exported(ctx: &mut Ctx) {
    let m = render(ctx, &json!({}));
    assert!(!m.has("PrometheusRule"), "{:?}", m.ids());

    let m = render(
        ctx,
        &json!({"prometheusRule": {"enabled": true, "labels": {"release": "prometheus"},
            "alertLabels": {"team": "platform"}, "certificateExpiryDays": 3,
            "disabled": ["WfeAdmissionIllegalPhaseMoves"]}}),
    );
    let rule = m.one("PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["namespace"], NS);
    assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");
    let rules = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules");
    let names: Vec<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    assert_eq!(
        names,
        [
            "WfeAdmissionDown",
            "WfeAdmissionCallsFailing",
            "WfeAdmissionCertificateExpiresSoon",
            "WfeAdmissionCertificateReloadFailing",
            "WfeAdmissionPolicyReloadFailing",
            "WfeAdmissionEventsLost",
            "WfeAdmissionUnreadableReviews",
        ]
    );

    let exported = exported_series();
    let service = m.one("Service")["metadata"]["name"].clone();
    let hooks: Vec<String> = [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ]
    .iter()
    .map(|kind| {
        m.one(kind)["webhooks"][0]["name"]
            .as_str()
            .expect("webhook name")
            .to_string()
    })
    .collect();
    for r in rules {
        let alert = r["alert"].as_str().expect("alert");
        assert!(
            ["critical", "warning"].contains(&r["labels"]["severity"].as_str().unwrap_or("")),
            "{alert}: severity {}",
            r["labels"]
        );
        assert_eq!(r["labels"]["team"], "platform", "{alert}");
        for a in ["summary", "description"] {
            assert!(r["annotations"][a].is_string(), "{alert} has no {a}");
        }
        let text = r["expr"].as_str().expect("expr");
        let expr = parser::parse(text).unwrap_or_else(|e| panic!("{alert}: {text}: {e}"));
        let mut selectors = Vec::new();
        collect_selectors(&expr, &mut selectors);
        assert!(!selectors.is_empty(), "{alert}: {text}");
        for vs in selectors {
            let name = vs.name.as_deref().expect("selectors name their metric");
            let matchers = &vs.matchers.matchers;
            let wanted = |label: &str| matchers.iter().find(|m| m.name == label);
            match name {
                "up" => {
                    assert_eq!(wanted("job").map(|m| m.value.as_str()), service.as_str());
                    assert_eq!(wanted("namespace").map(|m| m.value.as_str()), Some(NS));
                }
                "apiserver_admission_webhook_rejection_count" => {
                    let by_name = wanted("name").expect("a webhook name matcher");
                    for hook in &hooks {
                        assert!(by_name.is_match(hook), "{alert} misses {hook}");
                    }
                    assert!(!by_name.is_match("status.mutate.other.example.com"));
                }
                own => {
                    assert!(own.starts_with("wfe_admission_"), "{alert}: {own}");
                    assert_eq!(wanted("namespace").map(|m| m.value.as_str()), Some(NS));
                    let found = exported.iter().any(|(series, labels)| {
                        series == own && own_labels_match(matchers, labels)
                    });
                    assert!(
                        found,
                        "{alert}: no exported series {own} matches {matchers:?}; exported:\n{exported:?}"
                    );
                }
            }
        }
        if alert == "WfeAdmissionCertificateExpiresSoon" {
            assert!(text.ends_with(&format!("< {}", 3 * 86_400)), "{text}");
        }
    }
}

fn own_labels_match(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers
        .iter()
        .filter(|m| !TARGET_LABELS.contains(&m.name.as_str()))
        .all(|m| m.is_match(labels.get(&m.name).map(String::as_str).unwrap_or("")))
}

fn collect_selectors<'e>(expr: &'e Expr, out: &mut Vec<&'e VectorSelector>) {
    match expr {
        Expr::VectorSelector(vs) => out.push(vs),
        Expr::MatrixSelector(ms) => out.push(&ms.vs),
        Expr::Aggregate(a) => collect_selectors(&a.expr, out),
        Expr::Unary(u) => collect_selectors(&u.expr, out),
        Expr::Binary(b) => {
            collect_selectors(&b.lhs, out);
            collect_selectors(&b.rhs, out);
        }
        Expr::Paren(p) => collect_selectors(&p.expr, out),
        Expr::Subquery(s) => collect_selectors(&s.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| collect_selectors(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Every series the webhook's registry can export: each family driven once with every label
/// value, then read back from the text exposition `/metrics` serves.
fn exported_series() -> Vec<(String, BTreeMap<String, String>)> {
    let metrics = Metrics::new();
    let attempts = [
        Attempt::Success,
        Attempt::Failure,
        Attempt::Dropped,
        Attempt::Conflict,
    ];
    let reasons = [
        DenyReason::IllegalPhaseTransition,
        DenyReason::UnknownPhase,
        DenyReason::PhaseNotOwned,
        DenyReason::BlockClearanceRejected,
        DenyReason::InvalidStatus,
        DenyReason::MissingObject,
    ];
    for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
        for outcome in [
            Outcome::Allowed,
            Outcome::Patched,
            Outcome::Ignored,
            Outcome::Invalid,
        ] {
            metrics.request(endpoint, outcome);
        }
        for reason in reasons {
            metrics.verdict(endpoint, &denied(reason));
        }
    }
    metrics.cert_loaded(1_800_000_000);
    metrics.cert_reload_failed();
    for a in attempts {
        metrics.config_reload(a);
        metrics.event(a);
        metrics.status_write(a);
    }
    metrics
        .encode()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(parse_series)
        .collect()
}

fn denied(reason: DenyReason) -> Verdict {
    Verdict {
        decision: Decision::Deny(Denial {
            reason,
            message: String::new(),
        }),
        warnings: Vec::new(),
        corrections: Vec::new(),
        ignored: false,
        dry_run: false,
        subject: Subject::default(),
    }
}

/// `name{a="x",b="y"} value` (label values here never hold `,`, `"` or `}`).
fn parse_series(line: &str) -> (String, BTreeMap<String, String>) {
    let series = line.rsplit_once(' ').map_or(line, |(s, _)| s);
    let Some((name, rest)) = series.split_once('{') else {
        return (series.to_string(), BTreeMap::new());
    };
    let labels = rest
        .trim_end_matches('}')
        .split(',')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect();
    (name.to_string(), labels)
}
