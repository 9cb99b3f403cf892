//! `swh-bridge list`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;
use swh_bridge::listers::nixpkgs::{self, ListOptions, RawEvaluation};

use super::{progress, show_counts, write_output};

/// List the sources a Nixpkgs revision needs, as sources.json, by evaluating it with Nix.
#[derive(clap::Args)]
pub struct ListArgs {
    /// A Nixpkgs checkout, or a git repository with --rev.
    #[arg(required_unless_present = "from_raw")]
    nixpkgs: Option<PathBuf>,
    /// The revision to list (checked out into a temporary directory).
    #[arg(long)]
    rev: Option<String>,
    /// Start from this attribute path instead of the default roots (repeatable).
    #[arg(long = "attr")]
    attrs: Vec<String>,
    /// Evaluator processes to run at once.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Where to write sources.json.
    #[arg(short, long)]
    output: PathBuf,
    /// Also keep the evaluation's raw output here.
    #[arg(long)]
    save_raw: Option<PathBuf>,
    /// Post-process a raw evaluation saved with --save-raw instead of evaluating.
    #[arg(long, conflicts_with_all = ["nixpkgs", "rev", "attrs"])]
    from_raw: Option<PathBuf>,
    /// Print the summary as JSON on standard output.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ListArgs) -> Result<ExitCode> {
    let listing = match (&args.from_raw, &args.nixpkgs) {
        (Some(raw), _) => {
            let bytes = std::fs::read(raw).with_context(|| format!("failed to read {}", raw.display()))?;
            let evaluation: RawEvaluation =
                serde_json::from_slice(&bytes).with_context(|| format!("failed to parse {}", raw.display()))?;
            nixpkgs::Listing::from_raw(evaluation)
        }
        (None, Some(path)) => {
            let options = ListOptions { nixpkgs: path.clone(), rev: args.rev, attrs: args.attrs, jobs: args.jobs };
            // One chunk can take minutes: the spinner keeps moving meanwhile.
            let bar = progress("{spinner} evaluating {pos}/{len} chunks of roots {elapsed}");
            let listing = nixpkgs::list(&options, &|done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            });
            bar.finish_and_clear();
            listing.with_context(|| format!("failed to list {}", path.display()))?
        }
        (None, None) => unreachable!("clap requires NIXPKGS or --from-raw"),
    };
    if let Some(raw_path) = &args.save_raw {
        write_output(raw_path, |out| serde_json::to_writer(out, &listing.raw).map_err(std::io::Error::other))?;
    }
    write_output(&args.output, |out| swh_bridge::sources::write(&listing.file, out).map_err(std::io::Error::other))?;

    let counts = swh_bridge::sources::stats::stats_of(&listing.file.sources, 0);
    if args.json {
        let failed: Vec<_> =
            listing.failed.iter().map(|f| json!({ "attribute": f.attribute, "reason": f.reason })).collect();
        let rejected: Vec<_> = listing.rejected.iter().map(|r| r.to_string()).collect();
        println!(
            "{}",
            json!({
                "sources": listing.file.sources.len(),
                "roots": listing.roots,
                "by_type": counts.by_type,
                "by_hash_mode": counts.by_hash_mode,
                "failed": failed,
                "rejected": rejected,
                "unknown_mirrors": listing.unknown_mirrors,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "{} sources from {} root attributes written to {}",
        listing.file.sources.len(),
        listing.roots,
        args.output.display()
    );
    eprintln!("  by type: {}", show_counts(&counts.by_type));
    eprintln!("  by hash mode: {}", show_counts(&counts.by_hash_mode));
    if !listing.failed.is_empty() {
        eprintln!("  {} attributes failed to evaluate and were skipped:", listing.failed.len());
        for failure in &listing.failed {
            eprintln!("    {}: {}", failure.attribute, failure.reason.as_deref().unwrap_or("(reason not looked up)"));
        }
    }
    if !listing.rejected.is_empty() {
        eprintln!("  {} fixed-output derivations could not be described:", listing.rejected.len());
        for rejected in &listing.rejected {
            eprintln!("    {rejected}");
        }
    }
    if !listing.unknown_mirrors.is_empty() {
        eprintln!("  {} URLs name a mirror site mirrors.nix lacks, and were dropped:", listing.unknown_mirrors.len());
        for url in &listing.unknown_mirrors {
            eprintln!("    {url}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
