//! The Kubernetes client for events and the webhook's own writes, and the setup shared by the
//! subcommands that talk to the API server once (`repair`, `verify`).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::policy::Policy;

/// The flags of every subcommand that runs a policy against a cluster (`serve`, `repair`,
/// `verify`), declared once.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyAndCluster {
    /// Policy file (YAML); defaults to the WorkflowExecution policy. `serve` reloads it when it
    /// or its folder changes.
    #[arg(long, env = "WFE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Kubeconfig (default: in-cluster credentials, $KUBECONFIG, ~/.kube/config).
    #[arg(long, env = "WFE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

/// The webhook's own mutating and validating configurations (one name may be both), which
/// `serve` keeps in self-managed mode and `disarm` makes fail open.
#[derive(Debug, Clone, clap::Args)]
pub struct OwnConfigurations {
    /// The webhook's own mutating and validating configurations (one name may be both).
    #[arg(
        long,
        env = "WFE_WEBHOOK_CONFIGURATIONS",
        value_delimiter = ',',
        default_value = "wfe-admission"
    )]
    pub webhook_configurations: Vec<String>,
}

/// From `--kubeconfig`, else the usual inference (in-cluster service account, `$KUBECONFIG`,
/// `~/.kube/config`).
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, String> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes credentials found: {e}"))?,
    };
    Client::try_from(config).map_err(|e| format!("cannot build the Kubernetes client: {e}"))
}

/// Runs a one-shot subcommand on a current-thread runtime with its policy (`--config`, else the
/// default) and client (`--kubeconfig`, else inferred). `body` says whether everything it did
/// succeeded (exit 0) or not (1); exit 2, with the reason on stderr, when it could not do its
/// job or the policy or client cannot be had.
pub fn run_with_cluster<F, Fut>(
    config: Option<&Path>,
    kubeconfig: Option<&Path>,
    body: F,
) -> ExitCode
where
    F: FnOnce(Policy, Client) -> Fut,
    Fut: Future<Output = Result<bool, String>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async {
        let prepared = async {
            let policy = super::load_policy(config)?;
            Ok::<_, String>((policy, client(kubeconfig).await?))
        };
        let done = match prepared.await {
            Ok((policy, client)) => body(policy, client).await,
            Err(e) => Err(e),
        };
        match done {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        }
    })
}
