//! The match conditions' CEL cost on kubernaut's real writes, in kube-apiserver's own evaluator
//! (`celcost/main.go`, built from the Go module proxy like the control plane): the units the API
//! server's budget counts and the time per evaluation, beside the CRD transition rule's text run
//! the same way. No cluster: the writes are replayed offline, each as sent on the status before.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;
use serde_json::{Value, json};
use wfe_admission::config::Config;
use wfe_admission::policy::match_conditions::{
    MUTATE_MATCH_CONDITION, VALIDATE_MATCH_CONDITION, mutate_match_condition,
    validate_match_condition,
};

use crate::{e2e, fixtures};

/// One condition's figures over the inputs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CostRow {
    pub name: String,
    pub evaluations: u64,
    /// Evaluations that answered true (the webhook is called).
    pub r#true: u64,
    pub errors: u64,
    pub mean_cost: f64,
    pub max_cost: i64,
    pub mean_micros: f64,
    #[serde(default)]
    pub first_error: Option<String>,
    /// Each input's answer ("true", "false" or "error"), when asked for.
    #[serde(default)]
    pub answers: Vec<String>,
    /// Machine instructions per evaluation, counted by callgrind ([`instructions`]): the same
    /// figure on a busy machine as on an idle one.
    #[serde(skip)]
    pub instructions: Option<f64>,
}

/// The CRD rule's name in the table.
pub const CRD_RULE: &str = "CRD transition rule (b), as a condition";

/// The reference row's name: `celcost/floor.cel`, what any mutating condition that skips a
/// controller write soundly must read, with nothing proven.
pub const FLOOR: &str = "reference: what any skip of /mutate reads (celcost/floor.cel)";

/// Builds the evaluator (cached), runs the default policy's two conditions and the CRD rule
/// over the real mix `rounds` times, and returns a row per condition.
pub fn rows(repo: &Path, rounds: u32) -> anyhow::Result<Vec<CostRow>> {
    rows_of(repo, &measured(repo)?, rounds)
}

/// Draft conditions (one CEL text per file, named by the file) beside the rows of [`rows`],
/// over the real mix, with each one's instructions where valgrind is installed: what a
/// change to a condition would cost, before it is made.
pub fn drafts(repo: &Path, files: &[std::path::PathBuf]) -> anyhow::Result<Vec<CostRow>> {
    let mut conditions = measured(repo)?;
    for file in files {
        conditions.push(json!({"name": file.display().to_string(), "expression": cel_file(file)?}));
    }
    let mut rows = rows_of(repo, &conditions, 50)?;
    counted(repo, &conditions, &mut rows)?;
    Ok(rows)
}

fn rows_of(repo: &Path, conditions: &[Value], rounds: u32) -> anyhow::Result<Vec<CostRow>> {
    let job = json!({"conditions": conditions, "inputs": mix_inputs(repo)?, "rounds": rounds});
    Ok(serde_json::from_slice(&run(repo, &job)?)?)
}

/// The rows' conditions: the default policy's two, (b)'s CRD rule as a condition (a
/// transition rule runs only where there is an old value), and the floor reference.
fn measured(repo: &Path) -> anyhow::Result<Vec<Value>> {
    let rule = e2e::CEL_RULE
        .replace("oldSelf", "oldObject.status")
        .replace("self", "object.status");
    let mut conditions = default_conditions(&Config::default())?;
    conditions.push(
        json!({"name": CRD_RULE, "expression": format!("!has(oldObject.status) || ({rule})")}),
    );
    conditions.push(json!({"name": FLOOR, "expression": floor(repo)?}));
    Ok(conditions)
}

/// The text of `celcost/floor.cel`, the [`FLOOR`] row's condition.
pub fn floor(repo: &Path) -> anyhow::Result<String> {
    cel_file(&repo.join("crates/wfe-bench/celcost/floor.cel"))
}

/// A condition's CEL text, read from a file.
fn cel_file(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.trim().to_string())
}

/// The controller's writes of the real mix, each on the status before it.
fn mix_inputs(repo: &Path) -> anyhow::Result<Vec<Value>> {
    Ok(e2e::real_mix_pairs(repo)?
        .into_iter()
        .map(|(old, new)| input(fixtures::CONTROLLER, old, new))
        .collect())
}

/// Counts the machine instructions each row's condition takes per evaluation over the real
/// mix, with valgrind's callgrind: two runs of the evaluator, 2 and 42 rounds, one condition at
/// a time, the difference over the evaluations it adds, so that start-up and compilation
/// cancel out. The Go runtime runs on one thread without a collector; what it still does in
/// the background moves a run's count by about a million instructions, 1% of the difference
/// over 40 rounds. Leaves the rows as they are when valgrind is not installed.
pub fn instructions(repo: &Path, rows: &mut [CostRow]) -> anyhow::Result<()> {
    counted(repo, &measured(repo)?, rows)
}

fn counted(repo: &Path, conditions: &[Value], rows: &mut [CostRow]) -> anyhow::Result<()> {
    if !has_valgrind() {
        eprintln!("wfe-bench: no valgrind, no instruction counts");
        return Ok(());
    }
    let inputs = mix_inputs(repo)?;
    let bin = built(repo)?;
    for row in rows.iter_mut() {
        let Some(condition) = conditions.iter().find(|c| c["name"] == row.name.as_str()) else {
            continue;
        };
        let mut counted = Vec::new();
        for rounds in [2u64, 42] {
            let job = json!({"conditions": [condition], "inputs": inputs, "rounds": rounds});
            counted.push(callgrind(&bin, &job)?);
        }
        let evaluations = 40 * inputs.len() as u64;
        row.instructions = Some(counted[1].saturating_sub(counted[0]) as f64 / evaluations as f64);
    }
    Ok(())
}

/// Whether valgrind is installed, for [`instructions`].
pub fn has_valgrind() -> bool {
    Command::new("valgrind").arg("--version").output().is_ok()
}

/// The instructions one run of the evaluator on `job` took, as callgrind counts them. Valgrind
/// 3.19 now and then aborts on the Go runtime's signal handling, so a failed run is tried
/// again, twice.
fn callgrind(bin: &str, job: &Value) -> anyhow::Result<u64> {
    let mut tried = callgrind_once(bin, job);
    for _ in 0..2 {
        if tried.is_ok() {
            break;
        }
        tried = callgrind_once(bin, job);
    }
    tried
}

fn callgrind_once(bin: &str, job: &Value) -> anyhow::Result<u64> {
    let dir = tempfile::tempdir()?;
    let mut valgrind = Command::new("valgrind");
    valgrind
        .arg("--tool=callgrind")
        .arg(format!(
            "--callgrind-out-file={}",
            dir.path().join("out").display()
        ))
        .arg(bin)
        .env("GOGC", "off")
        .env("GOMAXPROCS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let out = fed(valgrind, job).context("running valgrind")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("callgrind failed: {stderr}");
    }
    stderr
        .lines()
        .find_map(|l| l.split("Collected :").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| anyhow!("no instruction count in callgrind's output: {stderr}"))
}

/// One write for the evaluator: `user` sends status `new` over `old` (none: no status yet).
pub fn input(user: &str, old: Option<Value>, new: Value) -> Value {
    let object = |status: Option<Value>| {
        let mut o = json!({"apiVersion": "kubernaut.ai/v1alpha1",
            "kind": "WorkflowExecution", "metadata": {"name": "wfe", "namespace": "bench"}});
        if let Some(s) = status {
            o["status"] = s;
        }
        o
    };
    json!({"user": user, "object": object(Some(new)), "oldObject": object(old)})
}

/// The default policy's two conditions on `inputs` (from [`input`]), once each: their rows,
/// with each input's answer.
pub fn answers(repo: &Path, inputs: &[Value]) -> anyhow::Result<Vec<CostRow>> {
    let job = json!({"conditions": default_conditions(&Config::default())?, "inputs": inputs,
        "rounds": 1, "answers": true});
    Ok(serde_json::from_slice(&run(repo, &job)?)?)
}

/// Each of the default policy's conditions compiled as an API server checks a new webhook
/// configuration, in the CEL environment of `compatibility` ("1.32": the oldest version a 1.33
/// API server stays compatible with): its name and the compile error, if any.
pub fn compile(repo: &Path, compatibility: &str) -> anyhow::Result<Vec<(String, Option<String>)>> {
    #[derive(Deserialize)]
    struct Compiled {
        name: String,
        #[serde(default)]
        error: Option<String>,
    }
    let conditions = default_conditions(&Config::default())?;
    let job =
        json!({"conditions": conditions, "inputs": [], "compatibilityVersion": compatibility});
    let out: Vec<Compiled> = serde_json::from_slice(&run(repo, &job)?)?;
    Ok(out.into_iter().map(|c| (c.name, c.error)).collect())
}

fn default_conditions(config: &Config) -> anyhow::Result<Vec<Value>> {
    let mutate = mutate_match_condition(config).ok_or_else(|| anyhow!("no controller"))?;
    Ok(vec![
        json!({"name": MUTATE_MATCH_CONDITION, "expression": mutate}),
        json!({"name": VALIDATE_MATCH_CONDITION, "expression": validate_match_condition(config)}),
    ])
}

/// Builds the evaluator (cached) and runs `job` through it; returns what it printed.
fn run(repo: &Path, job: &Value) -> anyhow::Result<Vec<u8>> {
    let bin = built(repo)?;
    let mut evaluator = Command::new(&bin);
    evaluator.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let out = fed(evaluator, job).with_context(|| format!("running {bin}"))?;
    if !out.status.success() {
        bail!("{bin} failed");
    }
    Ok(out.stdout)
}

/// Runs `command` with `job` on its standard input; what it left.
fn fed(mut command: Command, job: &Value) -> anyhow::Result<std::process::Output> {
    let mut child = command.stdin(Stdio::piped()).spawn()?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow!("no stdin"))?
        .write_all(job.to_string().as_bytes())?;
    Ok(child.wait_with_output()?)
}

/// Builds the evaluator (cached); its path.
fn built(repo: &Path) -> anyhow::Result<String> {
    let script = repo.join("crates/wfe-bench/celcost/build.sh");
    let built = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !built.status.success() {
        bail!("{} failed", script.display());
    }
    String::from_utf8_lossy(&built.stdout)
        .lines()
        .last()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{} printed no path", script.display()))
}
