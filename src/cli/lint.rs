//! `wfe-admission lint`: before a policy change guards live objects, what in its phase table
//! would strand an object or a writer, against the policy it replaces and, with a cluster, the
//! stored objects it would strand. Exit 0 clean, 1 findings, 2 a file that does not load (or a
//! cluster that cannot be read).

use std::path::PathBuf;
use std::process::ExitCode;

use kube::api::ListParams;

use crate::policy::Policy;
use crate::policy::lint::{self, Finding};
use crate::policy::transitions::PhaseValue;

#[derive(Debug, clap::Args)]
pub struct LintArgs {
    /// The policy file to check (default: the WorkflowExecution policy).
    #[arg(long, env = "WFE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The policy it replaces: phases it has and the new one lacks are findings.
    #[arg(long)]
    pub against: Option<PathBuf>,
    /// Also list the stored objects the policy would leave with no legal move, read with this
    /// kubeconfig.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Like --kubeconfig, with the usual credentials (in-cluster service account,
    /// $KUBECONFIG, ~/.kube/config): the chart's upgrade hook.
    #[arg(long)]
    pub cluster: bool,
    /// With --against: findings the replaced policy has too are printed as `already` and do
    /// not count, so that only what the change brings fails (the chart's upgrade hook).
    #[arg(long, requires = "against")]
    pub only_new: bool,
}

/// The stored objects of the guarded resource in a phase with no way out under each of
/// `policies` (one listing for all).
async fn stranded(
    policies: &[&Policy],
    kubeconfig: Option<&std::path::Path>,
) -> Result<Vec<Vec<Finding>>, String> {
    let client = super::kube::client(kubeconfig).await?;
    let policy = policies.first().ok_or("no policy")?;
    let r = &policy.config.resource;
    let api_version = format!("{}/{}", r.group, r.version);
    let api = crate::status::api_for(&client, policy, &api_version, &r.kind, None);
    let mut found = vec![Vec::new(); policies.len()];
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api
            .list(&params)
            .await
            .map_err(|e| format!("cannot list {}: {e}", r.resource))?;
        for o in &page.items {
            let status = o.data.get("status").and_then(serde_json::Value::as_object);
            let name = format!(
                "{}/{}",
                o.metadata.namespace.as_deref().unwrap_or("-"),
                o.metadata.name.as_deref().unwrap_or("")
            );
            for (p, out) in policies.iter().zip(found.iter_mut()) {
                let phases = &p.phases;
                let phase = phases.current(PhaseValue::read(status, &phases.field));
                out.extend(lint::stranded(p, &name, phase));
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(next) => params = params.continue_token(&next),
            None => return Ok(found),
        }
    }
}

pub fn run(args: LintArgs) -> ExitCode {
    let fail = |e: String| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    };
    let policy = match super::load_policy(args.config.as_deref()) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let against = match args
        .against
        .as_deref()
        .map(|p| super::load_policy(Some(p)))
        .transpose()
    {
        Ok(a) => a,
        Err(e) => return fail(format!("--against: {e}")),
    };
    let mut found = lint::lint(&policy, against.as_ref());
    let mut before = match (&against, args.only_new) {
        (Some(old), true) => lint::lint(old, None),
        _ => Vec::new(),
    };
    if args.cluster || args.kubeconfig.is_some() {
        let mut policies = vec![&policy];
        policies.extend(against.as_ref().filter(|_| args.only_new));
        let kubeconfig = args.kubeconfig.as_deref();
        let listed = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| rt.block_on(stranded(&policies, kubeconfig)));
        match listed {
            Ok(mut each) => {
                before.extend(each.drain(1..).flatten());
                found.extend(each.into_iter().flatten());
            }
            Err(e) => return fail(e),
        }
    }
    let (already, new): (Vec<Finding>, Vec<Finding>) =
        found.into_iter().partition(|f| before.contains(f));
    for f in &new {
        println!("lint: {}: {}", f.kind, f.message);
    }
    for f in &already {
        println!("lint: already ({}): {}", f.kind, f.message);
    }
    if already.is_empty() {
        println!("lint: {} finding(s)", new.len());
    } else {
        println!(
            "lint: {} finding(s), {} already in the policy it replaces",
            new.len(),
            already.len()
        );
    }
    if new.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
