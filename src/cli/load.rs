//! `swh-bridge load` and `load status`.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::json;
use swh_bridge::loader::save::Saver;
use swh_bridge::loader::{Concurrency, Loader, Outcome, since};

use super::{ArchiveArgs, counts_by_name, progress, read_sources, show_counts, unix_now};

/// Make a sources.json's sources recoverable: Save Code Now for VCS revisions the archive lacks
/// (within the quota), and, while they can still be downloaded, recipes, content ids and tree
/// SWHIDs into the recipe store (--recipes DIR). Resumable: the state is kept in SQLite, and a
/// rerun skips what is done. `load status` follows the save requests.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct LoadArgs {
    #[command(subcommand)]
    command: Option<LoadCommand>,
    /// The sources.json to load.
    #[arg(required = true)]
    sources: Option<PathBuf>,
    /// Load only the sources added or changed since this earlier sources.json (and those an
    /// earlier run failed on or never reached).
    #[arg(long)]
    since: Option<PathBuf>,
    /// The state database [default: state.sqlite in the data directory].
    #[arg(long)]
    state: Option<PathBuf>,
    /// Sources captured at once.
    #[arg(short, long, default_value_t = 4)]
    jobs: usize,
    /// Downloads at once from one host.
    #[arg(long, default_value_t = 2)]
    per_host: usize,
    /// Save Code Now requests per hour (the archive allows about 10); the rest wait, queued,
    /// for a later run.
    #[arg(long, default_value_t = 10)]
    saves_per_hour: u64,
    /// Memory the captures may hold at once, in MiB: an archive is reckoned by what it unpacks
    /// to (measured before it is unpacked: file + tar stream + tree, and the encoder tried), a
    /// plain file by its size; a capture waits for room, and one that needs more than the whole
    /// budget is refused.
    #[arg(long, default_value_t = 4096)]
    memory_budget: u32,
    /// Do not use the NixOS project's copies: tarballs.nixos.org (as a hashed mirror) and
    /// cache.nixos.org (as a binary cache), which are used by default.
    #[arg(long)]
    no_nixos_mirrors: bool,
    #[command(flatten)]
    archive: ArchiveArgs,
    /// Print one JSON object per source, then the summary as one, instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum LoadCommand {
    /// Poll the open Save Code Now requests, ask the archive which waiting revisions it now has,
    /// and show every request's status.
    Status {
        /// The state database [default: state.sqlite in the data directory].
        #[arg(long)]
        state: Option<PathBuf>,
        #[command(flatten)]
        archive: ArchiveArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(args: LoadArgs) -> Result<ExitCode> {
    if let Some(LoadCommand::Status { state, archive, json }) = args.command {
        return status(state, archive, json).await;
    }
    let mut settings = args.archive.settings();
    settings.nixos_copies = !args.no_nixos_mirrors;
    let workspace = swh_bridge::workspace::Workspace::open(settings)?;
    let store = workspace.writable_recipe_store()?;
    let read = read_sources(&args.sources.expect("clap requires it without a subcommand"))?;
    let state = workspace.open_state(args.state.as_deref())?;
    let sources = match &args.since {
        None => read.file.sources,
        Some(previous) => since(read.file.sources, &read_sources(previous)?.file.sources, &state)?,
    };
    let fetcher = workspace.fetcher();
    let loader = Loader {
        fetcher: &fetcher,
        store: &store,
        state: &state,
        concurrency: Concurrency {
            jobs: args.jobs,
            per_host: args.per_host,
            saves_per_hour: args.saves_per_hour,
            memory_mib: args.memory_budget,
        },
    };
    let started = Instant::now();
    let saved = loader.save(&sources, unix_now()).await?;

    let bar = progress("{spinner} loading {pos}/{len} sources {elapsed} {msg}");
    bar.set_length(sources.len() as u64);
    let mut counts = BTreeMap::<String, usize>::new();
    let (mut download, mut compute) = (Duration::ZERO, Duration::ZERO);
    let mut stdout = io::stdout().lock();
    let mut write_failed = false;
    loader
        .capture_all(&sources, |index, report| {
            bar.inc(1);
            download += report.timings.download;
            compute += report.timings.compute;
            let status = report.outcome.status();
            *counts.entry(status.to_owned()).or_insert(0) += 1;
            let integrity = sources[index].integrity.as_deref().unwrap_or("");
            let kind = report.kind.map_or("-", |kind| kind.name());
            let detail = match &report.outcome {
                Outcome::Captured { swhid } => swhid.to_string(),
                Outcome::AlreadyCaptured => String::new(),
                Outcome::Failed { error } => error.clone(),
                Outcome::Skipped { why } => why.to_string(),
            };
            let line = if args.json {
                let line =
                    json!({"index": index, "integrity": integrity, "kind": kind, "status": status, "detail": detail});
                Some(line.to_string())
            } else {
                matches!(report.outcome, Outcome::Captured { .. } | Outcome::Failed { .. })
                    .then(|| format!("{status} {kind} {integrity}: {detail}"))
            };
            if let Some(line) = line {
                write_failed |= bar.suspend(|| writeln!(stdout, "{line}")).is_err();
            }
        })
        .await?;
    bar.finish_and_clear();
    if write_failed {
        bail!("failed to write to standard output");
    }
    let requests = fetcher.archive().requests();
    let failed = counts.contains_key("failed") || !saved.errors.is_empty();
    let submitted: Vec<_> = saved
        .submitted
        .iter()
        .map(|(o, s)| json!({"visit_type": o.visit_type, "url": o.url, "status": s.name()}))
        .collect();
    let queued: Vec<_> = saved.queued.iter().map(|o| json!({"visit_type": o.visit_type, "url": o.url})).collect();
    let summary = json!({
        "sources": sources.len(),
        "captures": counts,
        "vcs": {
            "archived": saved.archived,
            "waiting": saved.waiting,
            "submitted": submitted,
            "reconciled": saved.reconciled,
            "queued": queued,
            "rate_limited": saved.rate_limited,
            "errors": saved.errors,
        },
        "seconds": {"wall": started.elapsed().as_secs_f64(), "download": download.as_secs_f64(), "compute": compute.as_secs_f64()},
        "archive_requests": requests,
    });
    if args.json {
        writeln!(stdout, "{}", json!({ "summary": summary }))?;
    } else {
        for error in &saved.errors {
            eprintln!("error: {error}");
        }
        if let Some(why) = &saved.rate_limited {
            eprintln!("note: Save Code Now stopped early: {why}");
        }
        eprintln!("{} sources: {}", sources.len(), show_counts(&counts));
        eprintln!(
            "VCS revisions: {} archived, {} waiting; save requests: {} sent, {} settled from an interrupted run, {} queued",
            saved.archived,
            saved.waiting,
            saved.submitted.len(),
            saved.reconciled,
            saved.queued.len()
        );
        eprintln!(
            "{:.1} s: {:.1} s waiting on downloads, {:.1} s computing (summed over {} jobs); {requests} archive requests",
            started.elapsed().as_secs_f64(),
            download.as_secs_f64(),
            compute.as_secs_f64(),
            args.jobs
        );
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

async fn status(state: Option<PathBuf>, archive: ArchiveArgs, json: bool) -> Result<ExitCode> {
    let workspace = archive.workspace()?;
    let state = workspace.open_state(state.as_deref())?;
    let client = workspace.archive_client();
    let saver = Saver { archive: &client, state: &state, per_hour: 0 };
    let errors = saver.refresh().await?;
    let saves = state.saves(false)?;
    let mut by_status = BTreeMap::<&str, usize>::new();
    for save in &saves {
        *by_status.entry(save.status().name()).or_insert(0) += 1;
    }
    let revisions = counts_by_name(state.revision_counts()?, |status| status.name());
    let captures = counts_by_name(state.capture_counts()?, |status| status.name());
    let mut stdout = io::stdout().lock();
    if json {
        let requests: Vec<_> = saves
            .iter()
            .map(|save| {
                json!({"visit_type": save.origin.visit_type, "url": save.origin.url, "id": save.request_id,
                       "status": save.status().name(), "request_status": save.request.name(),
                       "task_status": save.task_status, "note": save.note,
                       "submitted_at": save.submitted_at})
            })
            .collect();
        let answer = json!({"requests": requests, "saves": by_status, "revisions": revisions,
                            "captures": captures, "errors": errors});
        writeln!(stdout, "{answer}")?;
    } else {
        for save in &saves {
            let id = save.request_id.map_or_else(|| "-".to_owned(), |id| id.to_string());
            let status: &str = save.status().name();
            writeln!(stdout, "{status:<10} {id:>8} {} {}", save.origin.visit_type, save.origin.url)?;
        }
        for error in &errors {
            eprintln!("error: {error}");
        }
        eprintln!("save requests: {}", show_counts(&by_status));
        eprintln!("VCS revisions: {}; captures: {}", show_counts(&revisions), show_counts(&captures));
    }
    Ok(if errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
