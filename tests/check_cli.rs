//! `wfe-admission check`, run as a person would: the built binary on YAML files.

use std::process::Command;

use serde_json::Value;

/// The binary with `args`: its exit code, its stdout as JSON (null when it is not), its stderr.
fn wfe_admission(args: &[String]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wfe-admission"))
        .args(args)
        .output()
        .expect("run wfe-admission");
    (
        out.status.code().expect("exit code"),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn check(old: &str, new: &str, extra: &[&str]) -> (i32, Value, String) {
    let mut args: Vec<String> = vec![
        "check".into(),
        "--old".into(),
        format!("tests/data/check/{old}"),
        "--new".into(),
        format!("tests/data/check/{new}"),
        "--now".into(),
        "2026-11-27T10:03:30Z".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    wfe_admission(&args)
}

#[test]
fn completion_is_allowed_with_derived_fields_and_merged_conditions() {
    let (code, out, _) = check("running.yaml", "completed.yaml", &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["allowed"], true);
    assert_eq!(out["message"], Value::Null);
    let status = &out["status"];
    assert_eq!(status["phase"], "Completed");
    assert_eq!(status["startTime"], "2026-11-27T10:00:00Z");
    assert_eq!(status["completionTime"], "2026-11-27T10:03:30Z");
    assert_eq!(status["duration"], "3m30s");
    let types: Vec<&str> = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .filter_map(|c| c["type"].as_str())
        .collect();
    assert_eq!(
        types,
        ["ExecutionCreated", "ExecutionRunning", "ExecutionComplete"]
    );
    assert!(out["patch"].as_array().is_some_and(|p| !p.is_empty()));
    // The patch really turns NEW into the printed status.
    let new: Value = serde_saphyr::from_str(
        &std::fs::read_to_string("tests/data/check/completed.yaml").expect("read"),
    )
    .expect("yaml");
    let mut patched = new.clone();
    let patch: json_patch::Patch = serde_json::from_value(out["patch"].clone()).expect("patch");
    json_patch::patch(&mut patched, &patch).expect("applies");
    assert_eq!(&patched["status"], status);
}

#[test]
fn a_terminal_phase_cannot_be_left() {
    let (code, out, _) = check("stored-completed.yaml", "rerun.yaml", &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out["allowed"], false);
    let message = out["message"].as_str().expect("message");
    assert!(
        message.starts_with("WorkflowExecution production/restart-web: illegal phase transition Completed → Running by system:serviceaccount:kubernaut-system:workflowexecution-controller"),
        "{message}"
    );
}

#[test]
fn an_operator_cannot_move_the_phase() {
    let (code, out, _) = check(
        "running.yaml",
        "completed.yaml",
        &["--user", "alice@example.com", "--group", "sre"],
    );
    assert_eq!(code, 1, "{out}");
    let message = out["message"].as_str().expect("message");
    assert!(
        message.contains("alice@example.com (operator)"),
        "{message}"
    );
    assert!(
        message.contains("only controller may change the phase"),
        "{message}"
    );
}

#[test]
fn the_orchestrator_may_fail_a_running_child_and_only_that() {
    let orchestrator = "system:serviceaccount:kubernaut-system:remediationorchestrator-controller";
    let (code, out, _) = check("running.yaml", "cascaded.yaml", &["--user", orchestrator]);
    assert_eq!(code, 0, "{out}");
    let status = &out["status"];
    assert_eq!(status["phase"], "Failed");
    assert_eq!(
        status["failureReason"],
        "Parent RR entered terminal phase: Cancelled"
    );
    assert_eq!(status["completionTime"], "2026-11-27T10:03:30Z");
    assert_eq!(status["duration"], "3m30s");
    let warnings = out["warnings"].to_string();
    assert!(
        warnings.contains("status.completionTime was filled in"),
        "{warnings}"
    );
    // Completing is the controller's.
    let (code, out, _) = check("running.yaml", "completed.yaml", &["--user", orchestrator]);
    assert_eq!(code, 1, "{out}");
    let message = out["message"].as_str().expect("message");
    assert!(
        message.contains("orchestrator may only move Pending, Running → Failed"),
        "{message}"
    );
}

#[test]
fn bad_input_exits_2_with_the_reason_on_stderr() {
    for (old, new, expected) in [
        ("broken.yaml", "completed.yaml", "not valid YAML"),
        (
            "missing.yaml",
            "completed.yaml",
            "cannot read tests/data/check/missing.yaml",
        ),
        ("running.yaml", "configmap.yaml", "same apiVersion and kind"),
        (
            "configmap.yaml",
            "configmap.yaml",
            "the policy guards group",
        ),
    ] {
        let (code, out, stderr) = check(old, new, &[]);
        assert_eq!(code, 2, "{old} {new}: {out}");
        assert_eq!(out, Value::Null, "nothing on stdout");
        assert!(stderr.contains(expected), "{old} {new}: {stderr}");
    }
}

#[test]
fn a_bad_config_file_names_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, "blockClearance:\n  minReasonWords: lots\n").expect("write");
    let (code, _, stderr) = check(
        "running.yaml",
        "completed.yaml",
        &["--config", path.to_str().expect("utf-8")],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("blockClearance.minReasonWords"), "{stderr}");
}

fn match_conditions(extra: &[&str]) -> (i32, Value, String) {
    let args: Vec<String> = std::iter::once("match-conditions")
        .chain(extra.iter().copied())
        .map(String::from)
        .collect();
    wfe_admission(&args)
}

#[test]
fn match_conditions_print_what_the_chart_renders_for_a_policy() {
    use wfe_admission::config::Config;
    use wfe_admission::policy::match_conditions::{
        mutate_match_condition, validate_match_condition,
    };
    let (code, out, err) = match_conditions(&[]);
    assert_eq!(code, 0, "{err}");
    let default = Config::default();
    assert_eq!(
        out["mutating"][0]["expression"].as_str(),
        mutate_match_condition(&default).as_deref()
    );
    assert_eq!(out["mutating"][0]["name"], "status-may-need-combining");
    assert_eq!(
        out["validating"][0]["expression"].as_str(),
        Some(validate_match_condition(&default).as_str())
    );
    // A policy file whose controller is known only by a group.
    let file = "tests/data/check/policy-controller-group.yaml";
    let (code, out, err) = match_conditions(&["--config", file]);
    let config = Config::from_file(std::path::Path::new(file)).expect("policy");
    assert_eq!(code, 0, "{err}");
    let expression = out["mutating"][0]["expression"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(Some(expression), mutate_match_condition(&config).as_deref());
    assert!(
        expression.contains("request.userInfo.groups.exists(g, g in ['wfe-controllers'])"),
        "{expression}"
    );
    // A policy that cannot be loaded: exit 2 and the reason, nothing on stdout.
    let (code, out, err) = match_conditions(&["--config", "tests/data/check/missing.yaml"]);
    assert_eq!((code, out), (2, Value::Null));
    assert!(err.contains("missing.yaml"), "{err}");
}

#[test]
fn verify_exits_2_when_it_cannot_ask_the_api_server() {
    // No kubeconfig where it points (the setup `repair` shares).
    for command in ["verify", "repair"] {
        let (code, _, stderr) = wfe_admission(&[
            command.into(),
            "--kubeconfig".into(),
            "/nonexistent/kubeconfig".into(),
        ]);
        assert_eq!(code, 2, "{command}: {stderr}");
        assert!(
            stderr.contains("cannot read kubeconfig /nonexistent/kubeconfig"),
            "{command}: {stderr}"
        );
    }
    // An API server that is not there: nothing was checked, so neither pass (0) nor fail (1).
    let port = wfe_bench::process::free_port().expect("a free port");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("config");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{port}', insecure-skip-tls-verify: true}}}}]\nusers: [{{name: u, user: {{token: t}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\n"
        ),
    )
    .expect("write kubeconfig");
    let (code, _, stderr) = wfe_admission(&[
        "verify".into(),
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "--namespace".into(),
        "wfe".into(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("cannot list workflowexecutions"),
        "{stderr}"
    );
    // --name needs --namespace.
    let (code, _, stderr) = wfe_admission(&["verify".into(), "--name".into(), "x".into()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--namespace"), "{stderr}");
}

/// The binary with `args`: its exit code, stdout and stderr as text.
fn wfe_admission_text(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wfe-admission"))
        .args(args)
        .output()
        .expect("run wfe-admission");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn lint(args: &[&str]) -> (i32, String, String) {
    wfe_admission_text(&[&["lint"], args].concat())
}

#[test]
fn lint_exits_0_clean_1_with_findings_2_on_a_file_that_does_not_load() {
    let (code, out, _) = lint(&[]);
    assert_eq!((code, out.trim()), (0, "lint: 0 finding(s)"));

    let (code, out, _) = lint(&["--config", "tests/data/lint/paused-dead-end.yaml"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("lint: dead-end: Paused is not terminal but has no way out"),
        "{out}"
    );
    assert!(out.ends_with("lint: 1 finding(s)\n"), "{out}");

    // Against the default policy: Failed is removed (objects in it would be outside the table).
    let (code, out, _) = lint(&[
        "--config",
        "tests/data/lint/no-failed.yaml",
        "--against",
        "tests/data/lint/paused-dead-end.yaml",
    ]);
    assert_eq!(code, 1, "{out}");
    for removed in ["Paused", "Failed"] {
        assert!(
            out.contains(&format!(
                "lint: removed: {removed} is a phase of the policy it replaces"
            )),
            "{out}"
        );
    }

    let (code, out, err) = lint(&["--config", "tests/data/lint/terminal-way-out.yaml"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        err.contains("phase.transitions.Completed") && err.contains("is terminal"),
        "{err}"
    );
    let (code, _, err) = lint(&["--against", "tests/data/lint/missing.yaml"]);
    assert_eq!(code, 2);
    assert!(err.starts_with("error: --against: "), "{err}");
}

#[test]
fn lint_only_new_counts_only_what_the_change_brings() {
    let dead_end = "tests/data/lint/paused-dead-end.yaml";
    // The same policy against itself: its dead end is already there.
    let (code, out, _) = lint(&["--config", dead_end, "--against", dead_end, "--only-new"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("lint: already (dead-end): Paused is not terminal but has no way out"),
        "{out}"
    );
    assert!(
        out.ends_with("lint: 0 finding(s), 1 already in the policy it replaces\n"),
        "{out}"
    );
    let (code, out, _) = lint(&["--config", dead_end, "--against", dead_end]);
    assert_eq!(code, 1, "without --only-new every finding counts: {out}");
    // Against the default policy the dead end is new.
    let default = tempfile::tempdir().expect("tempdir");
    let empty = default.path().join("default.yaml");
    std::fs::write(&empty, "{}\n").expect("write");
    let against = empty.to_str().expect("path");
    let (code, out, _) = lint(&["--config", dead_end, "--against", against, "--only-new"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("lint: dead-end: Paused"), "{out}");
    let (code, _, err) = lint(&["--config", dead_end, "--only-new"]);
    assert_eq!(code, 2, "--only-new needs --against: {err}");
}

/// `replay` on a log the e2e suite's API server recorded (tests/data/replay/recorded.log).
fn replay(args: &[&str]) -> (i32, String, String) {
    let own = ["replay", "--webhook-configurations", "wfe-admission-e2e"];
    wfe_admission_text(&[&own, args].concat())
}

const RECORDED: &str = "tests/data/replay/recorded.log";

#[test]
fn replay_of_a_recorded_log_agrees_under_its_own_policy() {
    let policy = "tests/data/replay/suite-policy.yaml";
    let (code, out, err) = replay(&["--audit-log", RECORDED, "--config", policy]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.lines().last(),
        Some("replay: 10 writes, 8 agree, 0 differ, 2 not judged"),
        "{out}"
    );
    let (code, out, _) = replay(&[
        "--audit-log",
        RECORDED,
        "--config",
        policy,
        "--output",
        "json",
        "--object",
        "e2e/replay-b*",
    ]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    for line in &lines[..4] {
        let record: Value = serde_json::from_str(line).expect("a JSON record");
        assert_eq!(record["object"], "e2e/replay-b-2", "{line}");
    }
}

#[test]
fn replay_reads_the_log_from_stdin() {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_wfe-admission"))
        .args([
            "replay",
            "--audit-log",
            "-",
            "--webhook-configurations",
            "wfe-admission-e2e",
        ])
        .args(["--config", "tests/data/replay/suite-policy.yaml"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run wfe-admission replay");
    let log = std::fs::read(RECORDED).expect("recorded.log");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&log)
        .expect("write the log");
    let out = child.wait_with_output().expect("replay output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.ends_with("replay: 10 writes, 8 agree, 0 differ, 2 not judged\n"),
        "{text}"
    );
}

#[test]
fn replay_names_the_recorded_denials_a_looser_policy_allows() {
    let policy = "tests/data/replay/operators-finish.yaml";
    let (code, out, _) = replay(&["--audit-log", RECORDED, "--config", policy]);
    assert_eq!(code, 1, "{out}");
    let differ: Vec<&str> = out.lines().filter(|l| l.contains(" NO ")).collect();
    assert_eq!(differ.len(), 1, "{out}");
    assert!(
        differ[0].contains("e2e/replay-b-2")
            && differ[0].contains("alice@example.com")
            && differ[0].contains("Running → Completed")
            && differ[0].contains("this policy allows what was denied"),
        "{out}"
    );
    assert!(out.ends_with(", 1 differ, 2 not judged\n"), "{out}");
}

#[test]
fn replay_exits_2_naming_the_line_it_cannot_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recorded = std::fs::read_to_string(RECORDED).expect("recorded.log");
    let first = recorded.lines().next().expect("a line");
    let broken = dir.path().join("broken.log");
    std::fs::write(&broken, format!("{first}\n{{\"truncated\n")).expect("write");
    let (code, out, err) = replay(&["--audit-log", broken.to_str().expect("path")]);
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("broken.log:2: not an audit event"), "{err}");

    let other = dir.path().join("other.log");
    std::fs::write(
        &other,
        "{\"apiVersion\":\"audit.k8s.io/v1beta1\",\"kind\":\"Event\"}\n",
    )
    .expect("write");
    let (code, _, err) = replay(&["--audit-log", other.to_str().expect("path")]);
    assert_eq!(code, 2);
    assert!(
        err.contains("other.log:1: apiVersion \"audit.k8s.io/v1beta1\""),
        "{err}"
    );

    let (code, _, err) = replay(&["--audit-log", "/nonexistent/audit.log"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read /nonexistent/audit.log"), "{err}");
}
