//! Least-privilege RBAC per certificate mode.

use super::*;

/// (where, apiGroup, resource, verb, resourceNames) for every rule of every (Cluster)Role.
pub(super) fn grants(m: &Manifests) -> BTreeSet<(String, String, String, String, String)> {
    let mut out = BTreeSet::new();
    for role in m
        .of_kind("ClusterRole")
        .into_iter()
        .chain(m.of_kind("Role"))
    {
        let scope = match role["metadata"]["namespace"].as_str() {
            Some(ns) => ns.to_string(),
            None => "cluster".into(),
        };
        for rule in role["rules"].as_array().expect("rules") {
            let names = rule
                .get("resourceNames")
                .map(|n| strs(n).join(","))
                .unwrap_or_default();
            for group in strs(&rule["apiGroups"]) {
                for resource in strs(&rule["resources"]) {
                    for verb in strs(&rule["verbs"]) {
                        out.insert((
                            scope.clone(),
                            group.to_string(),
                            resource.to_string(),
                            verb.to_string(),
                            names.clone(),
                        ));
                    }
                }
            }
        }
    }
    out
}

pub(super) fn g(
    scope: &str,
    group: &str,
    resource: &str,
    verbs: &[&str],
    names: &str,
) -> Vec<(String, String, String, String, String)> {
    verbs
        .iter()
        .map(|v| {
            (
                scope.into(),
                group.into(),
                resource.into(),
                (*v).into(),
                names.into(),
            )
        })
        .collect()
}

pub(super) fn base_grants() -> Vec<(String, String, String, String, String)> {
    let mut want = g(
        "cluster",
        "events.k8s.io",
        "events",
        &["create", "patch"],
        "",
    );
    want.extend(g("cluster", "", "events", &["create", "patch"], ""));
    want.extend(g(
        "cluster",
        "kubernaut.ai",
        "workflowexecutions",
        &["get", "list", "watch"],
        "",
    ));
    want
}

pub(super) fn rbac_is_least_privilege_per_mode(ctx: &mut Ctx) {
    for mode in MODES {
        let m = render(ctx, &mode_values(mode));
        let mut want = base_grants();
        if mode == "self-managed" {
            want.extend(g(
                "cluster",
                "admissionregistration.k8s.io",
                "mutatingwebhookconfigurations",
                &["get", "update"],
                "wfe-admission",
            ));
            want.extend(g(
                "cluster",
                "admissionregistration.k8s.io",
                "validatingwebhookconfigurations",
                &["get", "update"],
                "wfe-admission",
            ));
            want.extend(g(
                NS,
                "",
                "secrets",
                &["get", "update"],
                "wfe-admission-tls",
            ));
            want.extend(g(NS, "", "secrets", &["create"], ""));
        }
        let want: BTreeSet<_> = want.into_iter().collect();
        assert_eq!(grants(&m), want, "RBAC of mode {mode}");
        // No wildcard anywhere.
        for role in m
            .of_kind("ClusterRole")
            .into_iter()
            .chain(m.of_kind("Role"))
        {
            assert!(
                !role["rules"].to_string().contains("\"*\""),
                "wildcard in {role}"
            );
        }
        // Bindings tie the roles to the chart's service account, and nothing else.
        let sa = json!([{"kind": "ServiceAccount", "name": "wfe-admission", "namespace": NS}]);
        let crb = m.one("ClusterRoleBinding");
        assert_eq!(crb["subjects"], sa);
        assert_eq!(
            crb["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "wfe-admission"})
        );
        if mode == "self-managed" {
            let rb = m.one("RoleBinding");
            assert_eq!(rb["subjects"], sa);
            assert_eq!(rb["roleRef"]["kind"], "Role");
            assert_eq!(rb["roleRef"]["name"], "wfe-admission");
        }
    }
    let m = render(ctx, &json!({"rbac": {"create": false}}));
    assert!(
        grants(&m).is_empty() && !m.has("ClusterRoleBinding"),
        "{:?}",
        m.ids()
    );
}

pub(super) fn status_write_rbac_only_for_the_status_manager(ctx: &mut Ctx) {
    let status = g(
        "cluster",
        "kubernaut.ai",
        "workflowexecutions/status",
        &["get", "update"],
        "",
    );
    for (values, writes) in [
        (json!({}), false),
        (
            json!({"policy": {"events": {"rejectionCondition": true}}}),
            true,
        ),
        (json!({"statusManager": {"enabled": true}}), true),
        (
            json!({"policy": {"events": {"rejectionCondition": false}}, "statusManager": {"enabled": false}}),
            false,
        ),
    ] {
        for mode in MODES {
            let m = render(ctx, &merged(mode_values(mode), &values));
            let have = grants(&m);
            for s in &status {
                assert_eq!(have.contains(s), writes, "{mode} {values}: {s:?}");
            }
            assert!(
                !have.iter().any(|(_, _, r, v, _)| r == "workflowexecutions"
                    && !["get", "list", "watch"].contains(&v.as_str())),
                "the main resource is read only: {have:?}"
            );
        }
    }
}
