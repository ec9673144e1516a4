//! The optional PrometheusRule and Grafana dashboard: every expression parses as PromQL, and
//! every series it selects is one the webhook exports (or, for `up` and the API server's
//! metrics, one the release's scrape job and webhook names produce).

use std::collections::BTreeMap;

use promql_parser::label::Matcher;
use promql_parser::parser::{self, Expr, VectorSelector};
use wfe_admission::metrics::{Attempt, Endpoint, Metrics, RequestOutcome};
use wfe_admission::policy::review::{Decision, Denial, DenyReason, Subject, Verdict};

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

    let known = Known::of(&m);
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
        known.check(alert, text);
        if alert == "WfeAdmissionCertificateExpiresSoon" {
            assert!(text.ends_with(&format!("< {}", 3 * 86_400)), "{text}");
        }
    }
}

pub(super) fn grafana_dashboard_queries_select_what_is_exported(ctx: &mut Ctx) {
    let m = render(ctx, &json!({}));
    assert!(
        !m.ids().iter().any(|id| id.contains("dashboard")),
        "{:?}",
        m.ids()
    );
    let m = render(ctx, &json!({"grafanaDashboard": {"enabled": true}}));
    let file = std::fs::read_to_string(chart_dir().join("dashboards/wfe-admission.json"))
        .expect("dashboard file");
    let map = m.get("ConfigMap", &format!("{RELEASE}-dashboard"));
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    let text = map["data"]["wfe-admission.json"].as_str().expect("data");
    assert_eq!(
        text,
        file.trim_end(),
        "the ConfigMap holds the file as it is"
    );
    let dashboard: Value = serde_json::from_str(text).expect("the dashboard is JSON");
    let known = Known::of(&m);
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("title");
        for target in panel["targets"].as_array().expect("targets") {
            // Grafana's variables, as a dashboard on this release resolves them.
            let expr = target["expr"]
                .as_str()
                .expect("expr")
                .replace("$__rate_interval", "2m")
                .replace("$namespace", NS);
            known.check(title, &expr);
            queries += 1;
        }
    }
    assert!(queries >= 12, "{queries} queries");
    let variable = &dashboard["templating"]["list"][1]["definition"];
    assert!(
        known
            .exported
            .iter()
            .any(|(name, _)| variable.as_str().is_some_and(|v| v.contains(name.as_str()))),
        "the namespace variable reads no exported series: {variable}"
    );
}

/// What a query may select on this release.
struct Known {
    exported: Vec<(String, BTreeMap<String, String>)>,
    /// The Service, whose name is the ServiceMonitor's job.
    service: String,
    /// Both webhooks' names, as the API server labels its series.
    hooks: Vec<String>,
}

impl Known {
    fn of(m: &Manifests) -> Self {
        let hooks = [
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
        Self {
            exported: exported_series(),
            service: m.one("Service")["metadata"]["name"]
                .as_str()
                .expect("service name")
                .to_string(),
            hooks,
        }
    }

    /// `text` parses as PromQL and each series it selects exists.
    fn check(&self, what: &str, text: &str) {
        let expr = parser::parse(text).unwrap_or_else(|e| panic!("{what}: {text}: {e}"));
        let mut selectors = Vec::new();
        collect_selectors(&expr, &mut selectors);
        assert!(!selectors.is_empty(), "{what}: {text}");
        for vs in selectors {
            let name = vs.name.as_deref().expect("selectors name their metric");
            let matchers = &vs.matchers.matchers;
            let wanted = |label: &str| matchers.iter().find(|m| m.name == label);
            if name == "up" {
                assert_eq!(
                    wanted("job").map(|m| m.value.as_str()),
                    Some(self.service.as_str())
                );
                assert_eq!(wanted("namespace").map(|m| m.value.as_str()), Some(NS));
            } else if name.starts_with("apiserver_admission_") {
                let by_name = wanted("name").expect("a webhook name matcher");
                for hook in &self.hooks {
                    assert!(by_name.is_match(hook), "{what} misses {hook}");
                }
                assert!(!by_name.is_match("status.mutate.other.example.com"));
            } else {
                assert!(name.starts_with("wfe_admission_"), "{what}: {name}");
                assert_eq!(wanted("namespace").map(|m| m.value.as_str()), Some(NS));
                let found = self
                    .exported
                    .iter()
                    .any(|(series, labels)| series == name && own_labels_match(matchers, labels));
                assert!(
                    found,
                    "{what}: no exported series {name} matches {matchers:?}; exported:\n{:?}",
                    self.exported
                );
            }
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
            RequestOutcome::Allowed,
            RequestOutcome::Patched,
            RequestOutcome::Ignored,
            RequestOutcome::Invalid,
        ] {
            metrics.request(endpoint, outcome);
        }
        for reason in reasons {
            metrics.verdict(endpoint, &denied(reason));
        }
        drop(metrics.timer(endpoint));
        let mut corrected = denied(DenyReason::MissingObject);
        corrected.decision = Decision::Allow;
        corrected.corrections.push("status.x".into());
        metrics.verdict(endpoint, &corrected);
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
