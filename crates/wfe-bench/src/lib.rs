//! `wfe-bench`: every figure beside a reference measured in the same run.
//!
//! The throughput rows load the real admission router and the *ceiling* (the same TLS stack
//! answering a precomputed AdmissionReview without parsing the request) one after the other,
//! in the same process, so that their ratio survives a noisy machine. The memory and start
//! rows run the real binary as a child process; the end-to-end rows go through a real
//! kube-apiserver when its binaries are cached; the status-manager rows count API writes.

#![forbid(unsafe_code)]

pub mod celcost;
pub mod control_plane;
pub mod cpu;
pub mod e2e;
pub mod fixtures;
pub mod inproc;
pub mod load;
pub mod policy;
pub mod process;
pub mod proof;
pub mod report;
pub mod statusmgr;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use axum::body::Bytes;

use load::{LoadResult, LoadSpec, Proto, Req, Target};
use report::{E2eRow, Report, ThroughputRow};

/// Whether to run the kube-apiserver rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum E2e {
    /// When the control-plane binaries are cached, and not with `--quick`.
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    pub e2e: E2e,
    pub out: PathBuf,
    pub server_bin: Option<PathBuf>,
    /// The repository (for the control-plane scripts and the CRD).
    pub repo: PathBuf,
    /// Only the throughput rows whose `"<endpoint> <protocol> c=<n>"` contains this (the
    /// ceiling always runs); for profiling one row.
    pub only: Option<String>,
}

/// Durations of one mode.
struct Plan {
    warmup: Duration,
    window: Duration,
    /// Throughput rows run in this many interleaved rounds of `warmup` + `window` each.
    rounds: usize,
    policy_budget: Duration,
    status_updates: usize,
    e2e_updates: u64,
    e2e_window: Duration,
    /// kubernaut lifecycles replayed per mode in the real-mix rows.
    lifecycles: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                warmup: Duration::from_millis(50),
                window: Duration::from_millis(150),
                rounds: 1,
                policy_budget: Duration::from_millis(100),
                status_updates: 8,
                e2e_updates: 20,
                lifecycles: 4,
                e2e_window: Duration::from_millis(500),
            }
        } else {
            Self {
                // Five rounds of every row in turn: a burst of background load hits the
                // ceiling and the rows compared with it alike.
                warmup: Duration::from_millis(100),
                window: Duration::from_millis(400),
                rounds: 5,
                policy_budget: Duration::from_secs(1),
                status_updates: 48,
                // (c) and (e) differ by well under a millisecond on a ~5 ms update, which
                // bursts of load on this VM move by as much: many samples, modes taking turns
                // update by update.
                e2e_updates: 1200,
                lifecycles: 90,
                e2e_window: Duration::from_secs(3),
            }
        }
    }
}

pub const CONCURRENCY: [usize; 3] = [1, 16, 64];

/// Reference rows: the ceiling plus parsing alone, the old way and the handler's way.
pub const PARSE_BEFORE: &str = "ceiling + parse as DynamicObject (before)";
pub const PARSE_NOW: &str = "ceiling + parse as /mutate does";
pub const SCAN_ONLY: &str = "ceiling + scan the JSON, nothing built";

fn runtime(name: &str, threads: &cpu::Threads) -> anyhow::Result<tokio::runtime::Runtime> {
    let threads = threads.clone();
    tokio::runtime::Builder::new_multi_thread()
        .thread_name(name)
        .on_thread_start(move || threads.register_current())
        .enable_all()
        .build()
        .context("tokio runtime")
}

fn mix_for(path: &str) -> Arc<Vec<Req>> {
    Arc::new(
        fixtures::mix()
            .into_iter()
            .map(|(_, body)| Req {
                path: path.to_string(),
                body: Bytes::from(body),
            })
            .collect(),
    )
}

/// Alternating /validate and /mutate, as the API server calls both for each write.
fn mixed() -> Arc<Vec<Req>> {
    Arc::new(
        fixtures::mix()
            .into_iter()
            .flat_map(|(_, body)| {
                let body = Bytes::from(body);
                ["/validate", "/mutate"].map(|path| Req {
                    path: path.to_string(),
                    body: body.clone(),
                })
            })
            .collect(),
    )
}

/// CPU time of the server and client threads over a row's runs, and the requests they answered
/// (warm-up included: the CPU time covers it too).
#[derive(Debug, Clone, Copy, Default)]
struct CpuSpent {
    server: Option<Duration>,
    client: Option<Duration>,
    answered: u64,
}

impl CpuSpent {
    fn add(
        &mut self,
        before: (Option<Duration>, Option<Duration>),
        after: (Option<Duration>, Option<Duration>),
        run: &LoadResult,
    ) {
        let delta = |b: Option<Duration>, a: Option<Duration>, sum: Option<Duration>| {
            Some(sum.unwrap_or_default() + a?.checked_sub(b?)?)
        };
        self.server = delta(before.0, after.0, self.server);
        self.client = delta(before.1, after.1, self.client);
        self.answered += run.answered;
    }

    /// Microseconds of server and client CPU per answered request (NaN when unknown).
    fn per_request(&self) -> (f64, f64) {
        let per = |d: Option<Duration>| match d {
            Some(d) if self.answered > 0 => d.as_secs_f64() * 1e6 / self.answered as f64,
            _ => f64::NAN,
        };
        (per(self.server), per(self.client))
    }
}

fn check(what: &str, r: &LoadResult) -> anyhow::Result<()> {
    match &r.first_error {
        Some(e) if r.requests == 0 => Err(anyhow!("{what}: every request failed: {e}")),
        _ => Ok(()),
    }
}

/// Runs everything, prints the table and the summary line, writes the file.
pub fn run(options: &Options) -> anyhow::Result<Report> {
    let plan = Plan::new(options.quick);
    let mut report = Report::new(options.quick);
    report.only = options.only.clone();
    let (server_threads, client_threads) = (cpu::Threads::default(), cpu::Threads::default());
    let servers = runtime("bench-server", &server_threads)?;
    let clients = runtime("bench-client", &client_threads)?;

    // The policy step alone, before any thread is busy.
    eprintln!("wfe-bench: policy step in process");
    report.policy = policy::timings(plan.policy_budget)?;

    // --- throughput: ceiling, /validate, /mutate, side by side ----------------------------
    let bundle = inproc::bundle()?;
    let admission = servers.block_on(inproc::start_admission(&bundle))?;
    // The ceiling answers with what /validate answers for a legal progress update.
    let answer = {
        let policy = wfe_admission::policy::Policy::new(wfe_admission::config::Config::default())?;
        let body = serde_json::to_vec(&fixtures::review(
            fixtures::Case::Progress,
            fixtures::Size::Small,
        ))?;
        let request = wfe_admission::server::admission::parse_review_as::<
            wfe_admission::server::status_object::StatusObject,
        >(&body)
        .map_err(|e| anyhow!(e))?;
        let verdict = wfe_admission::policy::review::validate(&policy, &request);
        Bytes::from(serde_json::to_vec(
            &wfe_admission::server::admission::respond(&request.uid, &verdict),
        )?)
    };
    let start = |parse| servers.block_on(inproc::Ceiling::start(&bundle, answer.clone(), parse));
    let ceiling = start(inproc::Parse::None)?;
    let parsing = start(inproc::Parse::Lean)?;
    let parsing_before = start(inproc::Parse::Dynamic)?;
    let scanning = start(inproc::Parse::Scan)?;
    let admission_target = Target::new(admission.addr, &bundle.ca_cert)?;
    let ceiling_target = Target::new(ceiling.addr, &bundle.ca_cert)?;
    let parsing_target = Target::new(parsing.addr, &bundle.ca_cert)?;
    let before_target = Target::new(parsing_before.addr, &bundle.ca_cert)?;
    let scan_target = Target::new(scanning.addr, &bundle.ca_cert)?;
    let wanted = |name: &str, proto: Proto, c: usize| {
        options
            .only
            .as_deref()
            .is_none_or(|only| format!("{name} {} c={c}", proto.as_str()).contains(only))
    };
    let (validate_mix, mutate_mix) = (mix_for("/validate"), mix_for("/mutate"));
    for proto in [Proto::H1, Proto::H2] {
        for c in CONCURRENCY {
            let spec = LoadSpec {
                proto,
                concurrency: c,
                warmup: plan.warmup,
                window: plan.window,
            };
            eprintln!("wfe-bench: {} c={c}", proto.as_str());
            let rows = [
                ("ceiling", &ceiling_target, &validate_mix),
                (PARSE_BEFORE, &before_target, &validate_mix),
                (SCAN_ONLY, &scan_target, &validate_mix),
                (PARSE_NOW, &parsing_target, &validate_mix),
                ("/validate", &admission_target, &validate_mix),
                ("/mutate", &admission_target, &mutate_mix),
            ];
            let rows: Vec<_> = rows
                .into_iter()
                .filter(|(name, _, _)| *name == "ceiling" || wanted(name, proto, c))
                .collect();
            let mut runs: Vec<LoadResult> = vec![LoadResult::default(); rows.len()];
            let mut spent: Vec<CpuSpent> = vec![CpuSpent::default(); rows.len()];
            for _ in 0..plan.rounds {
                for (((name, target, mix), total), cpu) in
                    rows.iter().zip(runs.iter_mut()).zip(spent.iter_mut())
                {
                    let before = (server_threads.cpu(), client_threads.cpu());
                    let run = clients.block_on(load::run(target, &spec, Arc::clone(mix)))?;
                    check(name, &run)?;
                    cpu.add(before, (server_threads.cpu(), client_threads.cpu()), &run);
                    total.merge(run);
                }
            }
            let reference = runs[0].rps();
            for (((name, _, _), run), cpu) in rows.iter().zip(&runs).zip(&spent) {
                let mut row = ThroughputRow::new(name, proto, c, run, reference);
                (row.server_cpu_us, row.client_cpu_us) = cpu.per_request();
                report.throughput.push(row);
            }
        }
    }
    servers.block_on(ceiling.shutdown());
    servers.block_on(parsing.shutdown());
    servers.block_on(parsing_before.shutdown());
    servers.block_on(scanning.shutdown());
    servers.block_on(admission.shutdown());

    // --- the real binary: start, idle and peak memory --------------------------------------
    eprintln!("wfe-bench: wfe-admission serve as a child process");
    let binary = process::server_binary(options.server_bin.as_deref())?;
    let spec = LoadSpec {
        proto: Proto::H1,
        concurrency: 64,
        // One long run: the peak of the heap, not of a slice.
        warmup: plan.warmup * 4,
        window: plan.window * plan.rounds as u32,
    };
    report.process = Some(clients.block_on(process::measure(&binary, &spec, mixed()))?);

    // --- the kube-apiserver rows ----------------------------------------------------------
    let bins = e2e::cached_binaries();
    let want_e2e = match options.e2e {
        E2e::On => true,
        E2e::Off => false,
        E2e::Auto => !options.quick && bins.is_some(),
    };
    let mut status_done = false;
    if want_e2e {
        let bins = bins.ok_or_else(|| {
            anyhow!("--e2e: no cached kube-apiserver; run tests/e2e/control-plane/build.sh")
        })?;
        eprintln!("wfe-bench: starting the control plane");
        let outcome = e2e::BenchCluster::start(&options.repo, &bins).and_then(|cp| {
            let outcome = clients.block_on(run_e2e(&servers, &cp, options, &plan, &mut report));
            drop(cp);
            outcome
        });
        match outcome {
            Ok(()) => status_done = true,
            // Asked for explicitly: a failure is the answer.
            Err(e) if options.e2e == E2e::On => return Err(e),
            // Found by auto-detection: say so and go on without those rows.
            Err(e) => {
                eprintln!("wfe-bench: warning: the kube-apiserver rows failed, skipped: {e:#}");
                report.e2e.clear();
                report.e2e_start_ms = None;
                report.e2e_hooks.clear();
                report.e2e_skipped = Some(format!("{e:#}"));
            }
        }
    }
    if status_done {
        eprintln!("wfe-bench: the match conditions' CEL cost in kube-apiserver's evaluator");
        let rounds = if options.quick { 1 } else { 50 };
        report.cel_costs = celcost::rows(&options.repo, rounds)?;
        if !options.quick {
            eprintln!("wfe-bench: the match conditions' instructions (callgrind)");
            celcost::instructions(&options.repo, &mut report.cel_costs)?;
        }
    }
    if !status_done {
        eprintln!("wfe-bench: status manager against the in-memory API");
        let name = "wfe-bench-status";
        let mut object = fixtures::object(
            fixtures::Size::Small,
            fixtures::statuses(fixtures::Case::Progress, fixtures::Size::Small).0,
        );
        object["metadata"]["name"] = serde_json::json!(name);
        let rows = clients.block_on(async {
            let (_client, api) = statusmgr::memory_api(name, object);
            statusmgr::rows(
                &api,
                name,
                &[1, 4, 16],
                plan.status_updates,
                "in-memory API (1 ms per call)",
            )
            .await
        })?;
        report.status = rows;
    }
    report.finish();
    let text = report.markdown();
    print!("{text}");
    if let Some(dir) = options.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&options.out, &text)
        .with_context(|| format!("write {}", options.out.display()))?;
    println!("{}", report.summary());
    drop(clients);
    servers.shutdown_timeout(Duration::from_secs(1));
    Ok(report)
}

/// kubernaut's real lifecycles (the controller's writes of tests/data/kubernaut/writes.yaml),
/// one new object each, modes (a), (b), (c) and (e) taking turns lifecycle by lifecycle.
async fn lifecycle_rows(
    admin: &kube::Client,
    controller: &kube::Client,
    ours: &wfe_admission::metrics::Metrics,
    options: &Options,
    plan: &Plan,
    report: &mut Report,
) -> anyhow::Result<()> {
    use e2e::Mode;
    const MODES: [Mode; 4] = [Mode::None, Mode::Cel, Mode::Webhooks, Mode::Floor];
    let mix = e2e::real_mix(&options.repo)?;
    eprintln!(
        "wfe-bench: kubernaut's real lifecycles, {} per mode, modes taking turns",
        plan.lifecycles
    );
    for (k, mode) in MODES.into_iter().enumerate() {
        e2e::replay_lifecycle(
            admin,
            controller,
            mode,
            &format!("wfe-bench-warm{k}"),
            &mix[0],
        )
        .await?;
    }
    let (api_before, ours_before) = (e2e::apiserver_metrics(admin).await, ours.encode());
    let mut writes = vec![Vec::new(); MODES.len()];
    let mut lifecycles = vec![Vec::new(); MODES.len()];
    for r in 0..plan.lifecycles {
        let lifecycle = &mix[r % mix.len()];
        for k in 0..MODES.len() {
            let at = (r + k) % MODES.len();
            let name = format!("wfe-bench-lifecycle-{r}");
            let replayed =
                e2e::replay_lifecycle(admin, controller, MODES[at], &name, lifecycle).await?;
            writes[at].extend(replayed.writes);
            lifecycles[at].push(replayed.lifecycle);
        }
    }
    let (api_after, ours_after) = (e2e::apiserver_metrics(admin).await, ours.encode());
    for (i, mode) in MODES.into_iter().enumerate() {
        writes[i].sort_unstable();
        lifecycles[i].sort_unstable();
        report.lifecycle.push(report::LifecycleRow {
            mode: mode.label(),
            writes: writes[i].len() as u64,
            lifecycles: lifecycles[i].len() as u64,
            write_p50_ms: percentile_ms(&writes[i], 0.5),
            write_p99_ms: percentile_ms(&writes[i], 0.99),
            lifecycle_p50_ms: percentile_ms(&lifecycles[i], 0.5),
            lifecycle_p99_ms: percentile_ms(&lifecycles[i], 0.99),
        });
    }
    let api = e2e::Scrapes::between(&api_before, &api_after);
    let ours = e2e::Scrapes::between(&ours_before, &ours_after);
    let written = writes[2].len().max(1) as f64;
    report
        .lifecycle_hooks
        .extend(hook_figures(Mode::Webhooks, &api, &ours, written));
    Ok(())
}

/// Each webhook of `mode` between two scrapes: its calls per update, the API server's mean call
/// and match-condition evaluation (by webhook name), our handler's mean time and share of
/// patched answers (by endpoint).
fn hook_figures(
    mode: e2e::Mode,
    api: &e2e::Scrapes<'_>,
    ours: &e2e::Scrapes<'_>,
    updates: f64,
) -> Vec<report::HookFigures> {
    const HANDLER_METRIC: &str = "wfe_admission_request_duration_seconds";
    const ANSWERS_METRIC: &str = "wfe_admission_requests_total";
    const MATCH_METRIC: &str = "apiserver_admission_match_condition_evaluation_seconds";
    e2e::hooks(mode)
        .into_iter()
        .map(|(endpoint, hook)| {
            let filter = format!("name=\"{hook}\"");
            let ours_label = format!("endpoint=\"{}\"", endpoint.trim_start_matches('/'));
            let calls = api.grew(&format!("{}_count", e2e::APISERVER_WEBHOOK_METRIC), &filter);
            report::HookFigures {
                mode: mode.label(),
                endpoint,
                calls_per_update: calls / updates,
                apiserver_ms: api.mean_ms(e2e::APISERVER_WEBHOOK_METRIC, &filter),
                match_ms: api.mean_ms(MATCH_METRIC, &filter),
                handler_ms: ours.mean_ms(HANDLER_METRIC, &ours_label),
                patched: (mode != e2e::Mode::Floor).then(|| {
                    let patched = format!("{ours_label},outcome=\"patched\"");
                    let answers = ours.grew(ANSWERS_METRIC, &ours_label);
                    ours.grew(ANSWERS_METRIC, &patched) / answers.max(1.0)
                }),
            }
        })
        .collect()
}

fn percentile_ms(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1e6
}

async fn run_e2e(
    servers: &tokio::runtime::Runtime,
    cp: &e2e::BenchCluster,
    options: &Options,
    plan: &Plan,
    report: &mut Report,
) -> anyhow::Result<()> {
    use e2e::Mode;
    report.e2e_start_ms = Some(cp.start_ms);
    let admin = cp.admin().await?;
    let controller = cp.controller()?;
    e2e::install(&admin, &options.repo).await?;
    // The webhooks, served by this process with a pair the API server trusts (its own CA).
    let pki = cp.workdir().join("pki");
    let ca_cert = std::fs::read_to_string(pki.join("ca.crt")).context("control-plane CA")?;
    let ca_key = std::fs::read_to_string(pki.join("ca.key")).context("control-plane CA key")?;
    let (cert, key) = wfe_admission::certgen::sign_with(
        &ca_cert,
        &ca_key,
        &wfe_admission::certgen::default_hosts(),
        wfe_admission::certgen::Validity::days(1),
        false,
    )?;
    let bundle = wfe_admission::certgen::Bundle {
        ca_cert: ca_cert.clone(),
        ca_key,
        cert,
        key,
    };
    let webhook = servers
        .spawn({
            let bundle = bundle.clone();
            async move { inproc::start_admission_with(&bundle, e2e::webhook_config()).await }
        })
        .await??;
    let echo = servers
        .spawn({
            let bundle = bundle.clone();
            async move { inproc::Ceiling::serve(&bundle, inproc::echo_router()).await }
        })
        .await??;
    let writers = 8;
    let mut singles = Vec::new();
    let mut pools = Vec::new();
    for mode in Mode::ALL {
        singles.push(e2e::create_object(&admin, &controller, mode, "wfe-bench-0").await?);
        let mut pool = Vec::new();
        for w in 0..writers {
            pool.push(
                e2e::create_object(&admin, &controller, mode, &format!("wfe-bench-w{w}")).await?,
            );
        }
        pools.push(pool);
    }
    let probe = e2e::create_object(&admin, &controller, Mode::Webhooks, "wfe-bench-probe").await?;
    e2e::check_cel_rule(&controller, &singles[1]).await?;
    eprintln!("wfe-bench: registering the webhooks");
    e2e::register_webhooks(
        &admin,
        &controller,
        (webhook.addr.port(), echo.addr.port()),
        &ca_cert,
        &probe,
    )
    .await?;

    let mut objects: Vec<(Mode, kube::core::DynamicObject)> =
        Mode::ALL.into_iter().zip(singles).collect();
    // Warm every path (connections, informers, CEL compilation) first.
    e2e::interleaved(&controller, &mut objects, 5).await?;
    let (api_before, ours_before) = (
        e2e::apiserver_metrics(&admin).await,
        webhook.metrics.encode(),
    );
    eprintln!(
        "wfe-bench: e2e, {} updates per mode, modes taking turns",
        plan.e2e_updates
    );
    let mut latencies = e2e::interleaved(&controller, &mut objects, plan.e2e_updates).await?;
    let (api_after, ours_after) = (
        e2e::apiserver_metrics(&admin).await,
        webhook.metrics.encode(),
    );
    let mut rps = [0.0f64; Mode::ALL.len()];
    for (i, mode) in Mode::ALL.into_iter().enumerate() {
        let pool = std::mem::take(&mut pools[i]);
        let (r, back) = e2e::throughput(&controller, mode, pool, plan.e2e_window).await?;
        rps[i] = r;
        pools[i] = back;
    }
    for (i, mode) in Mode::ALL.into_iter().enumerate() {
        let l = &mut latencies[i];
        l.sort_unstable();
        let mean_s = l.iter().sum::<u64>() as f64 / l.len().max(1) as f64 / 1e9;
        report.e2e.push(E2eRow {
            mode: mode.label(),
            updates: l.len() as u64,
            p50_ms: percentile_ms(l, 0.5),
            p99_ms: percentile_ms(l, 0.99),
            rps_c1: if mean_s > 0.0 { 1.0 / mean_s } else { 0.0 },
            rps_c8: rps[i],
        });
    }

    let api = e2e::Scrapes::between(&api_before, &api_after);
    let ours = e2e::Scrapes::between(&ours_before, &ours_after);
    // Per webhook of (c) to (f): calls per update, the API server's mean call and match-condition
    // evaluation, from its own metrics (by webhook name), and our handler's mean time and share
    // of patched answers (by endpoint, our modes together).
    for (i, mode) in Mode::ALL.into_iter().enumerate() {
        let updates = latencies[i].len().max(1) as f64;
        report
            .e2e_hooks
            .extend(hook_figures(mode, &api, &ours, updates));
    }

    lifecycle_rows(&admin, &controller, &webhook.metrics, options, plan, report).await?;

    // The status manager against the real API server (no admission on that group).
    eprintln!("wfe-bench: status manager against the kube-apiserver");
    let name = "wfe-bench-status";
    e2e::create_object(&admin, &controller, Mode::None, name).await?;
    let api: kube::Api<kube::core::DynamicObject> = kube::Api::namespaced_with(
        controller.clone(),
        "kubernaut-system",
        &Mode::None.resource(),
    );
    report.status = statusmgr::rows(
        &api,
        name,
        &[1, 4, 16],
        plan.status_updates,
        "kube-apiserver",
    )
    .await?;
    e2e::unregister_webhooks(&admin).await;
    let _ = servers.spawn(webhook.shutdown()).await;
    let _ = servers.spawn(echo.shutdown()).await;
    Ok(())
}
