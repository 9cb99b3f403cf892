//! `swh-bridge prefetch`.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;
use swh_bridge::error_chain::error_chain;
use swh_bridge::fallback::prefetch::{MissingSource, prefetch_source};
use swh_bridge::store::NixStore;

use super::{ArchiveArgs, progress};

/// Add the sources that building derivations needs, and the store lacks, to the Nix store:
/// fetched by hash, verified, and placed at the output paths Nix expects.
#[derive(clap::Args)]
pub struct PrefetchArgs {
    /// Derivations (`.drv` store paths, as `nix-instantiate` prints them).
    #[arg(required = true)]
    drvs: Vec<String>,
    /// The Nix store to add to, as Nix's `--store` (a directory is a chroot store).
    #[arg(long)]
    store: Option<String>,
    #[command(flatten)]
    archive: ArchiveArgs,
    /// Print one JSON object per source instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: PrefetchArgs) -> Result<ExitCode> {
    let store = NixStore::new(args.store.clone());
    let missing = store.missing_fixed_outputs(&args.drvs).context("failed to read the derivations' closure")?;
    let workspace = args.archive.workspace()?;
    let fetcher = workspace.fetcher();
    let scratch = workspace.scratch_dir();
    std::fs::create_dir_all(&scratch).with_context(|| format!("failed to create {}", scratch.display()))?;
    let bar = progress("{spinner} fetching {pos}/{len} missing sources {elapsed} {msg}");
    bar.set_length(missing.len() as u64);
    let (mut added, mut failed, mut requests) = (0, 0, 0);
    let mut stdout = io::stdout().lock();
    for (drv, derivation) in &missing {
        let Some(source) = MissingSource::of(drv, derivation) else { continue };
        let result = match source {
            Ok(source) => {
                bar.set_message(source.name().to_owned());
                prefetch_source(&fetcher, &store, &source, &scratch).await.map(|report| (source, report))
            }
            Err(err) => Err(err),
        };
        bar.inc(1);
        let line = match result {
            Ok((source, report)) => {
                added += 1;
                requests += report.archive_requests;
                if args.json {
                    json!({"drv": drv, "output": source.output, "status": "added", "origin": report.origin,
                           "way": report.way, "archive_requests": report.archive_requests, "notes": report.notes})
                    .to_string()
                } else {
                    format!(
                        "added {} from {} ({} archive requests)",
                        source.output, report.origin, report.archive_requests
                    )
                }
            }
            Err(err) => {
                failed += 1;
                let reason = error_chain(&err).replace('\n', " ");
                if args.json {
                    json!({"drv": drv, "status": "failed", "error": reason}).to_string()
                } else {
                    format!("failed {drv}: {reason}")
                }
            }
        };
        bar.suspend(|| writeln!(stdout, "{line}"))?;
    }
    bar.finish_and_clear();
    eprintln!("{} missing sources: {added} added, {failed} failed ({requests} archive requests)", missing.len());
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
