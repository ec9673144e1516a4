//! The values schema, the optional objects and the names a release gives them.

use super::*;

pub(super) fn schema_rejects_wrong_values_naming_them(ctx: &mut Ctx) {
    let bad: Vec<(Value, &str)> = vec![
        (
            json!({"certificates": {"mode": "vault"}}),
            "/certificates/mode",
        ),
        (
            json!({"webhook": {"failurePolicy": "Sometimes"}}),
            "/webhook/failurePolicy",
        ),
        (
            json!({"webhook": {"timeoutSeconds": 0}}),
            "/webhook/timeoutSeconds",
        ),
        (
            json!({"webhook": {"timeoutSeconds": 31}}),
            "/webhook/timeoutSeconds",
        ),
        (
            json!({"webhook": {"failurepolicy": "Fail"}}),
            "failurepolicy",
        ),
        (
            json!({"webhook": {"url": "http://127.0.0.1:8443"}}),
            "/webhook/url",
        ),
        (
            json!({"webhook": {"matchConditions": [{"name": "x"}]}}),
            "/webhook/matchConditions/0",
        ),
        (
            json!({"prometheusRule": {"certificateExpiryDays": 0}}),
            "/prometheusRule/certificateExpiryDays",
        ),
        (
            json!({"prometheusRule": {"disabled": ["WfeAdmissionNope"]}}),
            "/prometheusRule/disabled/0",
        ),
        (json!({"replicaCount": 0}), "/replicaCount"),
        (json!({"replicaCount": "two"}), "/replicaCount"),
        (json!({"replicas": 2}), "replicas"),
        (json!({"podAntiAffinity": "always"}), "/podAntiAffinity"),
        (
            json!({"image": {"pullPolicy": "Sometimes"}}),
            "/image/pullPolicy",
        ),
        (
            json!({"policy": {"blockClearance": {"minReasonWords": "lots"}}}),
            "/policy/blockClearance/minReasonWords",
        ),
        (
            json!({"policy": {"writers": {"ops": {"user": ["alice"]}}}}),
            "/policy/writers/ops",
        ),
        (
            json!({"policy": {"events": {"rejectionConditon": true}}}),
            "rejectionConditon",
        ),
        (
            json!({"certificates": {"mode": "provided"}}),
            "/certificates/provided/secretName",
        ),
        (json!({"crds": {"install": "yes"}}), "/crds/install"),
        (json!({"tls": {"minVersion": "1.1"}}), "/tls/minVersion"),
        (
            json!({"webhook": {"armWhenReady": "yes"}}),
            "/webhook/armWhenReady",
        ),
        (
            json!({"ports": {"webhook": 0, "probes": 8080}}),
            "/ports/webhook",
        ),
        (json!({"dnsPolicy": "Sometimes"}), "/dnsPolicy"),
        (json!({"hostNetwork": "yes"}), "/hostNetwork"),
        (
            json!({"certificates": {"selfManaged": {"renewBefore": "30 days"}}}),
            "/certificates/selfManaged/renewBefore",
        ),
    ];
    for (values, needle) in bad {
        let err = ctx
            .helm()
            .template(RELEASE, NS, &values)
            .err()
            .unwrap_or_else(|| panic!("helm template accepted {values}"));
        assert!(
            err.contains("don't meet the specifications of the schema"),
            "{values}: not a schema error:\n{err}"
        );
        assert!(
            err.contains(needle),
            "{values}: the error does not name {needle}:\n{err}"
        );
    }
    // The same shapes with good values pass: the schema is not simply strict about everything.
    render(
        ctx,
        &json!({"replicaCount": 1, "webhook": {"timeoutSeconds": 30, "failurePolicy": "Ignore",
        "url": "https://wfe.example.com:8443/hooks", "matchConditions": [{"name": "x", "expression": "true"}]},
        "policy": {"writers": {"ops": {"users": ["alice"]}}}}),
    );
}

pub(super) fn optional_servicemonitor_and_networkpolicy(ctx: &mut Ctx) {
    let m = render(ctx, &json!({}));
    assert!(
        !m.has("ServiceMonitor") && !m.has("NetworkPolicy"),
        "{:?}",
        m.ids()
    );
    let peer = json!({"ipBlock": {"cidr": "10.0.0.10/32"}});
    let m = render(
        ctx,
        &json!({"serviceMonitor": {"enabled": true, "labels": {"release": "prometheus"}, "interval": "15s"},
                "networkPolicy": {"enabled": true, "webhookFrom": [peer],
                    "metricsNamespaceSelector": {"matchLabels": {"team": "observability"}}}}),
    );
    let sm = m.one("ServiceMonitor");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "http-metrics");
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["interval"], "15s");
    let service = m.one("Service");
    let ports = service["spec"]["ports"].as_array().expect("ports");
    assert!(
        ports
            .iter()
            .any(|p| p["name"] == "http-metrics" && p["port"] == 8080)
    );
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"],
        service["spec"]["selector"]
    );
    let np = m.one("NetworkPolicy");
    assert_eq!(
        np["spec"]["podSelector"]["matchLabels"],
        m.one("Deployment")["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress"]));
    let ingress = np["spec"]["ingress"].as_array().expect("ingress");
    assert_eq!(ingress.len(), 2);
    assert_eq!(
        ingress[0]["ports"],
        json!([{"port": "https", "protocol": "TCP"}])
    );
    assert_eq!(ingress[0]["from"], json!([peer]));
    assert_eq!(
        ingress[1]["ports"],
        json!([{"port": "http-probes", "protocol": "TCP"}])
    );
    assert_eq!(
        ingress[1]["from"],
        json!([{"namespaceSelector": {"matchLabels": {"team": "observability"}}}])
    );
    // Without peers, 8443 is open to any source (the API server's address is cluster specific).
    let m = render(ctx, &json!({"networkPolicy": {"enabled": true}}));
    let ingress = &m.one("NetworkPolicy")["spec"]["ingress"];
    assert!(ingress[0].get("from").is_none(), "{ingress}");
    assert_eq!(
        ingress[1]["from"],
        json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}])
    );
    // `{}` opens 8080 to every namespace.
    let m = render(
        ctx,
        &json!({"networkPolicy": {"enabled": true, "metricsNamespaceSelector": {}}}),
    );
    assert_eq!(
        m.one("NetworkPolicy")["spec"]["ingress"][1]["from"],
        json!([{"namespaceSelector": {}}])
    );
}

pub(super) fn names_follow_the_release(ctx: &mut Ctx) {
    let m = ctx.helm().render("edge", "tenant-a", &json!({}));
    for id in [
        "Deployment/edge-wfe-admission",
        "MutatingWebhookConfiguration/edge-wfe-admission",
        "ValidatingWebhookConfiguration/edge-wfe-admission",
        "ClusterRole/edge-wfe-admission",
        "ConfigMap/edge-wfe-admission-policy",
        "ServiceAccount/edge-wfe-admission",
    ] {
        assert!(
            m.ids().contains(&id.to_string()),
            "{id} not in {:?}",
            m.ids()
        );
    }
    let w = the_webhook(m.one("MutatingWebhookConfiguration"));
    assert_eq!(w["clientConfig"]["service"]["name"], "edge-wfe-admission");
    assert_eq!(w["clientConfig"]["service"]["namespace"], "tenant-a");
    assert_eq!(
        w["matchConditions"][0]["expression"],
        "request.userInfo.username != 'system:serviceaccount:tenant-a:edge-wfe-admission'"
    );
    let args = deployment_args(&m);
    assert!(args.contains(&"--webhook-configurations=edge-wfe-admission".to_string()));
    assert!(args.contains(&"--service-name=edge-wfe-admission".to_string()));
    assert!(args.contains(&"--cert-secret=edge-wfe-admission-tls".to_string()));
    let m = ctx
        .helm()
        .render("edge", "tenant-a", &json!({"fullnameOverride": "wfe"}));
    assert!(
        m.ids().contains(&"Deployment/wfe".to_string()),
        "{:?}",
        m.ids()
    );
}

/// `helm show readme` (what Artifact Hub shows) lists every top-level value in its table.
pub(super) fn chart_readme_names_every_top_level_value(ctx: &mut Ctx) {
    let chart = chart_dir();
    let out = ctx
        .helm()
        .run(&["show", "readme", path_str(&chart)])
        .expect("helm show readme");
    assert!(out.status.success(), "{out:?}");
    let readme = String::from_utf8(out.stdout).expect("utf-8");
    let table = readme.split("## Values").nth(1).expect("a Values section");
    let values: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(chart.join("values.yaml")).expect("values.yaml"),
    )
    .expect("values.yaml is YAML");
    let keys = values.as_object().expect("values are a map");
    assert!(keys.len() > 30, "{} keys", keys.len());
    let missing: Vec<&String> = keys
        .keys()
        .filter(|k| !table.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "the chart README does not name {missing:?}"
    );
}
