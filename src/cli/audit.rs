//! `swh-bridge audit`.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::ValueEnum;
use swh_bridge::audit::report::{AuditReport, Change};
use swh_bridge::audit::{Auditor, Summary, verify_sample};

use super::{ArchiveArgs, progress, read_sources, show_counts, unix_now, write_output};

/// Report how much of a sources.json Software Heritage has, and how much `fetch` can give back
/// bit for bit (and why not), in few API requests: JSON, Markdown or HTML.
#[derive(clap::Args)]
pub struct AuditArgs {
    /// The sources.json to audit.
    sources: PathBuf,
    #[arg(long, value_enum, default_value_t = AuditFormat::Json)]
    format: AuditFormat,
    /// Where to write the report [default: standard output].
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Fetch this many recoverable sources, picked at random, to check the audit's word.
    #[arg(long, default_value_t = 0)]
    verify_sample: usize,
    /// The random pick's seed [default: the time].
    #[arg(long)]
    seed: Option<u64>,
    /// Seconds a cached verdict other than "recoverable" is trusted (recoverable ones always are).
    #[arg(long, default_value_t = 86_400)]
    max_age: i64,
    /// The state database holding cached verdicts and earlier audits [default: state.sqlite in
    /// the data directory].
    #[arg(long)]
    state: Option<PathBuf>,
    #[command(flatten)]
    archive: ArchiveArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum AuditFormat {
    Json,
    Md,
    Html,
}

pub async fn run(args: AuditArgs) -> Result<ExitCode> {
    let read = read_sources(&args.sources)?;
    let workspace = args.archive.workspace()?;
    let state = workspace.open_state(args.state.as_deref())?;
    let now = unix_now();
    let client = workspace.archive_client();
    let planner = workspace.planner();
    let bar = progress("{spinner} looking sources up one by one: {pos}/{len} {elapsed}");
    let on_progress = |done: usize, of: usize| {
        bar.set_length(of as u64);
        bar.set_position(done as u64);
    };
    let auditor =
        Auditor { archive: &client, planner: &planner, state: &state, max_age: args.max_age, progress: &on_progress };
    let sources = &read.file.sources;
    let audited = auditor.audit(sources, now).await?;
    bar.finish_and_clear();
    // The sample is fetched from the archive itself, not from what the cache kept.
    let verifier = workspace.archive_only_fetcher();
    let verified = match args.verify_sample {
        0 => Vec::new(),
        n => verify_sample(&verifier, sources, &audited, n, args.seed.unwrap_or(now as u64)).await,
    };
    let summary = Summary::of(&audited);
    let file = std::fs::canonicalize(&args.sources).unwrap_or_else(|_| args.sources.clone()).display().to_string();
    let change = Change::record(&state, &file, read.file.revision.as_deref(), &summary, &audited, now)?;
    let unfinished = audited.iter().any(|a| a.verdict.is_unfinished());
    let report = AuditReport {
        file,
        revision: read.file.revision.clone(),
        generated_at: now,
        archive_requests: client.requests(),
        verification_requests: verifier.archive().requests(),
        summary,
        change,
        verified,
        sources: audited,
    };
    let rendered = match args.format {
        AuditFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        AuditFormat::Md => report.markdown(),
        AuditFormat::Html => report.html(),
    };
    match &args.output {
        Some(path) => write_output(path, |out| out.write_all(rendered.as_bytes()))?,
        None => io::stdout().lock().write_all(rendered.as_bytes())?,
    }
    eprintln!(
        "{} sources: {}; {} archive requests ({} verdicts from the cache)",
        report.summary.sources,
        show_counts(&report.summary.by_status),
        report.archive_requests,
        report.summary.cached
    );
    let failed_checks = report.verified.iter().filter(|v| !v.ok).count();
    if !report.verified.is_empty() {
        eprintln!(
            "checked by fetching: {} of {} sampled sources came back",
            report.verified.len() - failed_checks,
            report.verified.len()
        );
    }
    if unfinished {
        eprintln!("the audit is unfinished: the archive could not be asked about every source");
    }
    Ok(if failed_checks > 0 || unfinished { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
