//! `wfe-admission replay`: what a policy would have done to the status writes an API-server
//! audit log recorded, and where that differs from what the API server did. Exit 0 when
//! every judged write agrees, 1 when one differs, 2 when the log or policy cannot be read.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;

use crate::policy::Policy;
use crate::replay::audit::Event;
use crate::replay::{self, Options, Record, Report};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Audit events as JSON lines (the log backend's format); `-` reads stdin.
    #[arg(long)]
    pub audit_log: PathBuf,
    /// The policy to judge with (default: the WorkflowExecution policy).
    #[arg(long, env = "WFE_CONFIG")]
    pub config: Option<PathBuf>,
    /// `text`: a table; `json`: one record per line. Both end with the summary line.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Only this object, as NAMESPACE/NAME (a trailing `*` matches a prefix); repeat the flag.
    #[arg(long = "object")]
    pub objects: Vec<String>,
    /// Report only the writes from this time on (RFC 3339), e.g. when the webhook was
    /// installed; earlier ones still rebuild the history.
    #[arg(long)]
    pub since: Option<jiff::Timestamp>,
    #[command(flatten)]
    pub own: super::kube::OwnConfigurations,
}

/// Audit events read one line at a time, so that a week of log is never held at once. The
/// first line that is not an event ends the iteration and is kept in `error`, naming the line.
pub struct Events<R> {
    lines: std::io::Lines<R>,
    source: String,
    line: usize,
    pub error: Option<String>,
}

impl<R: std::io::BufRead> Events<R> {
    pub fn new(reader: R, source: &str) -> Self {
        Self {
            lines: reader.lines(),
            source: source.to_string(),
            line: 0,
            error: None,
        }
    }

    fn parse(&self, line: &str) -> Result<Event, String> {
        let at = format!("{}:{}", self.source, self.line);
        let event: Event =
            serde_json::from_str(line).map_err(|e| format!("{at}: not an audit event: {e}"))?;
        if event.api_version != "audit.k8s.io/v1" {
            return Err(format!(
                "{at}: apiVersion {:?}; replay reads audit.k8s.io/v1 events",
                event.api_version
            ));
        }
        Ok(event)
    }
}

impl<R: std::io::BufRead> Iterator for Events<R> {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        if self.error.is_some() {
            return None;
        }
        loop {
            self.line += 1;
            let line = match self.lines.next()? {
                Ok(line) => line,
                Err(e) => {
                    self.error = Some(format!("cannot read {}: {e}", self.source));
                    return None;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            match self.parse(&line) {
                Ok(event) => return Some(event),
                Err(e) => {
                    self.error = Some(e);
                    return None;
                }
            }
        }
    }
}

/// All the events of `reader`, or the first line that is not one.
pub fn read_events(reader: impl std::io::BufRead, source: &str) -> Result<Vec<Event>, String> {
    let mut events = Events::new(reader, source);
    let all: Vec<Event> = events.by_ref().collect();
    events.error.map_or(Ok(all), Err)
}

fn open(args: &ReplayArgs) -> Result<(Policy, Events<Box<dyn std::io::BufRead>>), String> {
    let policy = super::load_policy(args.config.as_deref())?;
    let path = args.audit_log.display().to_string();
    let (reader, source): (Box<dyn std::io::BufRead>, String) = if path == "-" {
        let stdin = std::io::BufReader::new(std::io::stdin());
        (Box::new(stdin), "stdin".into())
    } else {
        let file =
            std::fs::File::open(&args.audit_log).map_err(|e| format!("cannot read {path}: {e}"))?;
        (Box::new(std::io::BufReader::new(file)), path)
    };
    Ok((policy, Events::new(reader, &source)))
}

fn agrees_text(r: &Record) -> &'static str {
    match r.agrees {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "-",
    }
}

/// The records as a table a person reads, widest column first to last.
pub fn table(report: &Report) -> String {
    let header = [
        "TIME", "OBJECT", "USER", "WRITER", "VERB", "MOVE", "RECORDED", "REPLAYED", "AGREES",
        "REASON",
    ];
    let rows: Vec<[String; 10]> = report
        .records
        .iter()
        .map(|r| {
            let verb = if r.dry_run {
                format!("{} (dry run)", r.verb)
            } else {
                r.verb.clone()
            };
            [
                r.time.clone(),
                r.object.clone(),
                r.user.clone(),
                r.writer.clone(),
                verb,
                r.phase_move.clone().unwrap_or_else(|| "-".into()),
                r.recorded.into(),
                r.replayed.into(),
                agrees_text(r).into(),
                r.reason.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

pub fn run(args: ReplayArgs) -> ExitCode {
    let (policy, mut events) = match open(&args) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let options = Options {
        configurations: args.own.webhook_configurations.clone(),
        objects: args.objects.clone(),
        since: args.since,
    };
    let report = replay::replay(&policy, events.by_ref(), &options);
    if let Some(e) = events.error {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let body = match args.output {
        Output::Text => table(&report),
        Output::Json => report
            .records
            .iter()
            .map(|r| serde_json::to_string(r).map(|l| l + "\n"))
            .collect::<Result<String, _>>()
            .unwrap_or_default(),
    };
    if let Err(e) = super::print(&format!("{body}{}\n", report.summary())) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if report.differ() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
