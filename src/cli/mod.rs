//! Subcommands: serve, check, certs, repair, verify, match-conditions, disarm, lint, replay.

pub mod certs;
pub mod check;
pub mod conditions;
pub mod disarm;
pub mod kube;
pub mod lint;
pub(crate) mod policy_reload;
pub mod repair;
pub mod replay;
pub mod serve;
pub mod verify;

use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "wfe-admission",
    version,
    about = "Admission webhook guarding the status lifecycle of WorkflowExecution resources"
)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "WFE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax, e.g. `info` or `wfe_admission=debug`).
    #[arg(long, global = true, env = "WFE_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the mutating and validating webhooks over HTTPS.
    Serve(Box<serve::ServeArgs>),
    /// Offline verdict for an UPDATE of the status from OLD to NEW, as the API server would ask.
    Check(check::CheckArgs),
    /// Write a CA and a serving certificate (ca.crt, ca.key, tls.crt, tls.key) into a folder.
    Certs(certs::CertsArgs),
    /// Fix stored objects whose derived status fields are missing or stale (one write each).
    Repair(repair::RepairArgs),
    /// Check, with dry-run status writes to one stored object, that the API server calls both
    /// webhooks (exit 0), not (1), or could not tell (2).
    Verify(verify::VerifyArgs),
    /// Print the built-in CEL match conditions of both webhooks for a policy.
    MatchConditions(conditions::MatchConditionsArgs),
    /// Make the webhook's own configurations fail open (failurePolicy Ignore): the chart's
    /// pre-delete hook, and an emergency exit while no webhook answers.
    Disarm(disarm::DisarmArgs),
    /// Find what a policy's phase table would strand: phases no object reaches or none leaves,
    /// phases removed since --against, writers that can move nothing, and (--kubeconfig) the
    /// stored objects left with no legal move. Exit 0 clean, 1 findings, 2 a file that does
    /// not load.
    Lint(lint::LintArgs),
    /// Judge the status writes an API-server audit log recorded with a policy, and say where
    /// its verdict differs from the recorded one. Exit 0 all agree, 1 one differs, 2 a log
    /// or policy that does not load.
    Replay(replay::ReplayArgs),
}

pub fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Prints `text` on stdout. A reader that went away (`| head`) is not an error worth a panic;
/// any other failure is returned.
pub fn print(text: &str) -> Result<(), String> {
    use std::io::Write as _;
    match write!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.to_string()),
        _ => Ok(()),
    }
}

/// Prints `value` as pretty JSON and a newline on stdout, as [`print`] does.
pub fn print_json(value: &impl serde::Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    print(&format!("{text}\n"))
}

/// The default policy, or the file's.
pub fn load_config(path: Option<&Path>) -> Result<Config, crate::config::ConfigError> {
    match path {
        Some(p) => Config::from_file(p),
        None => Ok(Config::default()),
    }
}

/// The default policy, or the file's, compiled; the reason as text when it does not load.
pub fn load_policy(path: Option<&Path>) -> Result<crate::policy::Policy, String> {
    let config = load_config(path).map_err(|e| e.to_string())?;
    crate::policy::Policy::new(config).map_err(|e| e.to_string())
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => {
            let format = if args.dev && std::env::var_os("WFE_LOG_FORMAT").is_none() {
                LogFormat::Text
            } else {
                cli.log_format
            };
            init_logging(format, &cli.log);
            serve::run(*args)
        }
        Command::Check(args) => check::run(args),
        Command::Certs(args) => certs::run(args),
        Command::MatchConditions(args) => conditions::run(args),
        Command::Repair(args) => {
            init_logging(cli.log_format, &cli.log);
            repair::run(args)
        }
        Command::Verify(args) => verify::run(args),
        Command::Lint(args) => lint::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Disarm(args) => {
            init_logging(cli.log_format, &cli.log);
            disarm::run(args)
        }
    }
}
