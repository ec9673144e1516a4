//! The webhook configurations: rules, settings, CA bundle per mode, match conditions.

use super::*;

pub(super) fn the_webhook(config: &Value) -> &Value {
    let hooks = config["webhooks"].as_array().expect("webhooks");
    assert_eq!(
        hooks.len(),
        1,
        "one webhook in {}",
        config["metadata"]["name"]
    );
    &hooks[0]
}

pub(super) fn webhooks_match_status_updates_with_the_right_settings(ctx: &mut Ctx) {
    for mode in MODES {
        let m = render(ctx, &mode_values(mode));
        let service = m.one("Service");
        for (kind, path) in [
            ("MutatingWebhookConfiguration", "/mutate"),
            ("ValidatingWebhookConfiguration", "/validate"),
        ] {
            let w = the_webhook(m.one(kind));
            assert_eq!(w["admissionReviewVersions"], json!(["v1"]), "{mode} {kind}");
            assert_eq!(w["sideEffects"], "NoneOnDryRun", "{mode} {kind}");
            assert_eq!(w["matchPolicy"], "Equivalent", "{mode} {kind}");
            // Self-managed webhooks install failing open and arm themselves (the next case).
            let failure = if mode == "self-managed" {
                "Ignore"
            } else {
                "Fail"
            };
            assert_eq!(w["failurePolicy"], failure, "{mode} {kind}");
            assert_eq!(w["timeoutSeconds"], 10, "{mode} {kind}");
            assert_eq!(
                w["rules"],
                json!([{
                    "apiGroups": ["kubernaut.ai"],
                    "apiVersions": ["*"],
                    "operations": ["UPDATE"],
                    "resources": ["workflowexecutions/status"],
                    "scope": "Namespaced",
                }]),
                "{mode} {kind}"
            );
            assert_eq!(w["namespaceSelector"], json!({}), "{mode} {kind}");
            assert_eq!(w["objectSelector"], json!({}), "{mode} {kind}");
            assert_eq!(
                w["clientConfig"]["service"],
                json!({"name": "wfe-admission", "namespace": NS, "path": path, "port": 443}),
                "{mode} {kind}"
            );
            assert!(w["clientConfig"].get("url").is_none());
            // The Service the webhook calls has that port.
            assert_eq!(service["metadata"]["name"], "wfe-admission");
            let ports = service["spec"]["ports"].as_array().expect("ports");
            assert!(
                ports
                    .iter()
                    .any(|p| p["port"] == 443 && p["targetPort"] == "https")
            );
            let reinvocation = w.get("reinvocationPolicy");
            if kind.starts_with("Mutating") {
                assert_eq!(reinvocation, Some(&json!("IfNeeded")));
            } else {
                assert_eq!(
                    reinvocation, None,
                    "validating webhooks have no reinvocation"
                );
            }
        }
    }
}

pub(super) fn webhook_values_reach_both_configurations(ctx: &mut Ctx) {
    let selector = json!({"matchExpressions": [{"key": "kubernaut.ai/guarded", "operator": "NotIn", "values": ["false"]}]});
    let objects = json!({"matchLabels": {"app.kubernetes.io/part-of": "kubernaut"}});
    let m = render(
        ctx,
        &json!({"webhook": {
            "failurePolicy": "Ignore", "timeoutSeconds": 3,
            "namespaceSelector": selector, "objectSelector": objects,
            "annotations": {"example.com/owner": "platform"}}}),
    );
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let config = m.one(kind);
        let w = the_webhook(config);
        assert_eq!(w["failurePolicy"], "Ignore", "{kind}");
        assert_eq!(w["timeoutSeconds"], 3, "{kind}");
        assert_eq!(w["namespaceSelector"], selector, "{kind}");
        assert_eq!(w["objectSelector"], objects, "{kind}");
        assert_eq!(
            config["metadata"]["annotations"]["example.com/owner"],
            "platform"
        );
    }
}

pub(super) fn ca_bundle_and_injection_per_mode(ctx: &mut Ctx) {
    let pem = test_ca_pem();
    let b64 = base64::engine::general_purpose::STANDARD;
    for mode in MODES {
        let values = match mode {
            "provided" => merged(
                mode_values(mode),
                &json!({"certificates": {"provided": {"caBundle": pem}}}),
            ),
            _ => mode_values(mode),
        };
        let m = render(ctx, &values);
        for kind in [
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
        ] {
            let config = m.one(kind);
            let w = the_webhook(config);
            let ca = w["clientConfig"].get("caBundle");
            let inject = config["metadata"]["annotations"].get("cert-manager.io/inject-ca-from");
            match mode {
                "provided" => {
                    let decoded = b64
                        .decode(ca.and_then(Value::as_str).expect("caBundle"))
                        .expect("caBundle is base64");
                    assert_eq!(
                        String::from_utf8(decoded).expect("utf-8").trim(),
                        pem.trim()
                    );
                    assert!(inject.is_none());
                }
                "cert-manager" => {
                    assert!(ca.is_none(), "cert-manager injects the caBundle");
                    assert_eq!(inject, Some(&json!("wfe-system/wfe-admission-serving")));
                    m.get("Certificate", "wfe-admission-serving");
                }
                _ => {
                    // self-managed: the webhook writes it; the chart must leave it out so
                    // that an upgrade does not wipe it.
                    assert!(ca.is_none(), "self-managed renders a caBundle");
                    assert!(inject.is_none());
                }
            }
        }
    }
    // A caBundle given as base64 is used as is; garbage fails with the value named.
    let encoded = b64.encode(&pem);
    let m = render(
        ctx,
        &merged(
            mode_values("provided"),
            &json!({"certificates": {"provided": {"caBundle": encoded}}}),
        ),
    );
    assert_eq!(
        the_webhook(m.one("ValidatingWebhookConfiguration"))["clientConfig"]["caBundle"],
        encoded
    );
    let err = ctx
        .helm()
        .template(
            RELEASE,
            NS,
            &merged(
                mode_values("provided"),
                &json!({"certificates": {"provided": {"caBundle": "bm90IGEgY2VydA=="}}}),
            ),
        )
        .expect_err("a caBundle that is no certificate must fail");
    assert!(err.contains("certificates.provided.caBundle"), "{err}");
}

pub(super) fn webhook_url_replaces_the_service(ctx: &mut Ctx) {
    for mode in MODES {
        let m = render(
            ctx,
            &merged(
                mode_values(mode),
                &json!({"webhook": {"url": "https://127.0.0.1:9443/"}}),
            ),
        );
        for (kind, path) in [
            ("MutatingWebhookConfiguration", "/mutate"),
            ("ValidatingWebhookConfiguration", "/validate"),
        ] {
            let cc = &the_webhook(m.one(kind))["clientConfig"];
            assert_eq!(
                cc["url"],
                format!("https://127.0.0.1:9443{path}"),
                "{mode} {kind}"
            );
            assert!(cc.get("service").is_none(), "{mode} {kind}: {cc}");
            assert_eq!(
                cc.get("caBundle").is_some(),
                mode == "provided",
                "{mode} {kind}"
            );
        }
        // A self-managed serving certificate must name the URL's host, which the API server
        // checks; files come from the admin, who makes them for it.
        let hosts: Vec<&str> = strs(&container(&m)["args"])
            .into_iter()
            .filter(|a| a.starts_with("--cert-host"))
            .collect();
        let want: &[&str] = if mode == "self-managed" {
            &["--cert-host=127.0.0.1"]
        } else {
            &[]
        };
        assert_eq!(hosts, want, "{mode}");
    }
}

pub(super) fn own_service_account_skips_only_the_mutating_webhook(ctx: &mut Ctx) {
    let me = "system:serviceaccount:wfe-system:wfe-admission";
    let exclusion = json!({"name": "not-wfe-admission-itself",
        "expression": format!("request.userInfo.username != '{me}'")});
    let m = render(ctx, &json!({}));
    assert_eq!(
        the_webhook(m.one("MutatingWebhookConfiguration"))["matchConditions"],
        json!([exclusion, mutating_condition(&Config::default())])
    );
    assert_eq!(
        the_webhook(m.one("ValidatingWebhookConfiguration"))["matchConditions"],
        json!([validating_condition()]),
        "the validating webhook must see the webhook's own writes"
    );
    // The excluded account is the policy's webhook writer.
    let config = policy_config(&m);
    assert_eq!(config.writers["webhook"].users, vec![me.to_string()]);

    // An admin's conditions go to both, after the exclusion.
    let mine = json!({"name": "labelled", "expression": "'wfe' in object.metadata.labels"});
    let m = render(ctx, &json!({"webhook": {"matchConditions": [mine]}}));
    assert_eq!(
        the_webhook(m.one("MutatingWebhookConfiguration"))["matchConditions"],
        json!([exclusion, mutating_condition(&Config::default()), mine])
    );
    assert_eq!(
        the_webhook(m.one("ValidatingWebhookConfiguration"))["matchConditions"],
        json!([validating_condition(), mine])
    );
    let m = render(
        ctx,
        &json!({"webhook": {"excludeSelfFromMutating": false, "mutatingMatchCondition": false}}),
    );
    assert!(
        the_webhook(m.one("MutatingWebhookConfiguration"))
            .get("matchConditions")
            .is_none()
    );
}

/// The validating webhook's built-in condition, as the webhook's code writes it for the
/// default policy (what the bench and the e2e harness register).
pub(super) fn validating_condition() -> Value {
    json!({"name": match_conditions::VALIDATE_MATCH_CONDITION,
        "expression": match_conditions::validate_match_condition(&Config::default())})
}

pub(super) fn validating_webhook_skips_only_undeniable_updates(ctx: &mut Ctx) {
    let m = render(ctx, &json!({}));
    assert_eq!(
        the_webhook(m.one("ValidatingWebhookConfiguration"))["matchConditions"],
        json!([validating_condition()]),
        "the chart must render the same condition as policy::match_conditions::validate_match_condition"
    );
    // From the policy values: the phase's owners, the table, each writer's moves.
    for values in [
        json!({"policy": {
            "writers": {"releaser": {"users": ["system:serviceaccount:*:releaser"], "groups": ["rel"]}},
            "fields": {"phase": ["controller", "releaser"]},
            "phase": {"terminal": ["Completed"], "transitions": {"Pending": ["Running"], "Running": ["Completed", "Failed"], "Failed": ["Pending"]}},
            "moves": {"releaser": [{"from": ["Failed"], "to": "Pending", "fields": []}], "orchestrator": null},
        }}),
        json!({"policy": {"fields": {"phase": ["operator"]}, "moves": {"orchestrator": null}}}),
    ] {
        let m = render(ctx, &values);
        let expected = match_conditions::validate_match_condition(&policy_config(&m));
        assert_eq!(
            the_webhook(m.one("ValidatingWebhookConfiguration"))["matchConditions"][0]["expression"],
            json!(expected),
            "{values}"
        );
        assert_ne!(
            json!(expected),
            validating_condition()["expression"],
            "{values}"
        );
    }
    // Off: every status update reaches /validate again; the mutating webhook never had it.
    let m = render(
        ctx,
        &json!({"webhook": {"validatingMatchCondition": false}}),
    );
    assert!(
        the_webhook(m.one("ValidatingWebhookConfiguration"))
            .get("matchConditions")
            .is_none()
    );
    let mutating = the_webhook(m.one("MutatingWebhookConfiguration"));
    assert_eq!(
        mutating["matchConditions"].as_array().map(Vec::len),
        Some(2)
    );
}

/// The mutating webhook's built-in condition, as the webhook's code writes it for `config`.
pub(super) fn mutating_condition(config: &Config) -> Value {
    json!({"name": match_conditions::MUTATE_MATCH_CONDITION,
        "expression": match_conditions::mutate_match_condition(config).expect("a controller")})
}

/// The mutating condition the chart rendered (after the own-account exclusion), if any.
fn rendered_mutating_condition(m: &Manifests) -> Option<Value> {
    the_webhook(m.one("MutatingWebhookConfiguration"))["matchConditions"]
        .as_array()
        .and_then(|c| {
            c.iter()
                .find(|c| c["name"] == match_conditions::MUTATE_MATCH_CONDITION)
        })
        .cloned()
}

pub(super) fn mutating_webhook_skips_only_writes_combining_keeps(ctx: &mut Ctx) {
    let m = render(ctx, &json!({}));
    assert_eq!(
        rendered_mutating_condition(&m),
        Some(mutating_condition(&policy_config(&m))),
        "the chart must render the same condition as policy::match_conditions"
    );
    // From the policy values: the controller's patterns (regex metacharacters, a quote) and
    // groups, field and condition owners, default owners, write-once fields.
    let custom = json!({"policy": {
        "writers": {
            "controller": {"users": ["system:serviceaccount:*:wfe.ctl+v2", "o'brien"], "groups": ["ctl-group"]},
            "auditor": {"groups": ["auditors"]},
        },
        "fields": {"executionStatus": ["controller", "auditor"], "auditTrail": ["auditor"],
            "progress": ["controller"], "observedGeneration": null},
        "defaultFieldOwners": ["auditor"],
        "writeOnce": ["startTime", "executionRef"],
        "conditions": {"owners": {"AuditRecorded": ["auditor"], "Custom": ["controller"]},
            "defaultOwners": ["auditor"]},
    }});
    let m = render(ctx, &custom);
    let config = policy_config(&m);
    assert_eq!(config.default_field_owners, vec!["auditor".to_string()]);
    let rendered = rendered_mutating_condition(&m);
    assert_eq!(rendered, Some(mutating_condition(&config)));
    assert_ne!(rendered, Some(mutating_condition(&Config::default())));

    // No controller to recognise, or a key the webhook would default: no condition, so every
    // write is combined.
    for values in [
        json!({"policy": {"writers": {"controller": {"users": []}}}}),
        json!({"policy": {"writeOnce": null}}),
        json!({"policy": {"fields": null}}),
        json!({"policy": {"conditions": {"owners": null}}}),
        json!({"webhook": {"mutatingMatchCondition": false}}),
    ] {
        let m = render(ctx, &values);
        assert_eq!(rendered_mutating_condition(&m), None, "{values}");
    }
}

/// Kubernetes 1.30 to 1.32 refuse the mutating condition's two-variable comprehensions in a new
/// configuration (celcost's compile check in wfe-bench proves it): there the chart leaves it
/// out, so that the install goes through and every write is combined, and keeps the validating
/// one. Below the chart's floor helm refuses to render at all.
pub(super) fn mutating_condition_only_where_the_api_server_accepts_it(ctx: &mut Ctx) {
    let on = |ctx: &mut Ctx, version: &str| {
        ctx.helm()
            .template_on(RELEASE, NS, &json!({}), Some(version))
    };
    let old = on(ctx, "v1.32.9").expect("1.32 renders");
    assert_eq!(rendered_mutating_condition(&old), None);
    let validating = the_webhook(old.one("ValidatingWebhookConfiguration"));
    let names: Vec<&Value> = validating["matchConditions"]
        .as_array()
        .map(|c| c.iter().map(|c| &c["name"]).collect())
        .unwrap_or_default();
    assert_eq!(names, [match_conditions::VALIDATE_MATCH_CONDITION]);
    let new = on(ctx, "v1.33.0").expect("1.33 renders");
    assert_eq!(
        rendered_mutating_condition(&new),
        Some(mutating_condition(&policy_config(&new)))
    );
    let refused = on(ctx, "v1.29.0").expect_err("1.29 is below the floor");
    assert!(refused.contains("kubeVersion"), "{refused}");
}

/// With `Fail` in self-managed mode (the default) the configurations install failing open and
/// name the wanted policy, which the webhook sets once it answers; a pre-delete Job disarms
/// them. Any other choice renders the failure policy as set, with no annotation and no Job.
pub(super) fn self_managed_webhooks_install_failing_open_and_disarm_on_uninstall(ctx: &mut Ctx) {
    let annotation = "wfe-admission.kubernaut.ai/failure-policy";
    let kinds = [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ];
    let m = render(ctx, &json!({}));
    for kind in kinds {
        let c = m.one(kind);
        assert_eq!(the_webhook(c)["failurePolicy"], "Ignore", "{kind}");
        assert_eq!(c["metadata"]["annotations"][annotation], "Fail", "{kind}");
    }
    let job = m.one("Job");
    assert_eq!(
        job["metadata"]["annotations"]["helm.sh/hook"], "pre-delete",
        "{job}"
    );
    let pod = &job["spec"]["template"];
    assert_eq!(pod["spec"]["serviceAccountName"], "wfe-admission");
    assert_eq!(
        strs(&pod["spec"]["containers"][0]["args"])[..2],
        ["disarm", "--webhook-configurations=wfe-admission"]
    );
    // The Service and the PodDisruptionBudget must not count the Job's pod as a webhook.
    let selector = &m.one("Service")["spec"]["selector"];
    let labels = pod["metadata"]["labels"].as_object().expect("labels");
    let selected = selector
        .as_object()
        .expect("selector")
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    assert!(
        !selected,
        "the Service selects the disarm Job's pod: {labels:?}"
    );
    // The subcommand and flags the Job runs exist.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wfe-admission"))
        .args(["disarm", "--help"])
        .output()
        .expect("disarm --help");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--webhook-configurations"));

    for (values, failure) in [
        (json!({"webhook": {"armWhenReady": false}}), "Fail"),
        (json!({"webhook": {"failurePolicy": "Ignore"}}), "Ignore"),
        (mode_values("cert-manager"), "Fail"),
        (mode_values("provided"), "Fail"),
    ] {
        let m = render(ctx, &values);
        for kind in kinds {
            let c = m.one(kind);
            assert_eq!(the_webhook(c)["failurePolicy"], failure, "{values} {kind}");
            assert!(
                c["metadata"]["annotations"].get(annotation).is_none(),
                "{values} {kind}"
            );
        }
        assert!(!m.has("Job"), "{values}: a disarm Job without arming");
    }
}
