//! `swh-bridge sources validate|diff|stats`.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::json;
use swh_bridge::sources::{Clipped, diff, stats, validate};

use super::{read_sources, show_counts};

#[derive(Subcommand)]
pub enum SourcesCommand {
    /// Check every entry and report each problem with its index and field.
    Validate {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Sources added, removed and changed from OLD to NEW.
    Diff {
        old: PathBuf,
        new: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Counts by type, hash mode and algorithm, host, scheme and file type.
    Stats {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: SourcesCommand) -> Result<ExitCode> {
    match command {
        SourcesCommand::Validate { file, json } => {
            let bytes = std::fs::read(&file).with_context(|| format!("failed to read {}", file.display()))?;
            let report = validate::validate_bytes(&bytes)
                .with_context(|| format!("failed to parse {} as JSON", file.display()))?;
            if json {
                let problems: Vec<_> = report.problems.iter().map(|p| p.to_string()).collect();
                outln!("{}", json!({ "entries": report.entries, "problems": problems }));
            } else {
                for problem in &report.problems {
                    outln!("{}: {problem}", file.display());
                }
                eprintln!("{} entries, {} problems", report.entries, report.problems.len());
            }
            Ok(if report.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        SourcesCommand::Diff { old, new, json } => {
            let (old_read, new_read) = (read_sources(&old)?, read_sources(&new)?);
            let changes = diff::diff(&old_read.file.sources, &new_read.file.sources);
            let mut out = io::stdout().lock();
            if json {
                serde_json::to_writer(&mut out, &changes)?;
                writeln!(out)?;
            } else {
                for source in &changes.added {
                    writeln!(out, "+ {} {}", Clipped(&source.identity()), Clipped(source.primary_url().unwrap_or("")))?;
                }
                for source in &changes.removed {
                    writeln!(out, "- {} {}", Clipped(&source.identity()), Clipped(source.primary_url().unwrap_or("")))?;
                }
                for change in &changes.changed {
                    writeln!(out, "~ {} ({})", Clipped(&change.identity), change.fields.join(", "))?;
                }
                eprintln!(
                    "{} added, {} removed, {} changed",
                    changes.added.len(),
                    changes.removed.len(),
                    changes.changed.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SourcesCommand::Stats { file, json } => {
            let read = read_sources(&file)?;
            let counts = stats::stats(&read);
            if json {
                outln!("{}", serde_json::to_string(&counts)?);
            } else {
                outln!("sources: {} (and {} without an origin)", counts.sources, counts.without_origin);
                outln!("by type: {}", show_counts(&counts.by_type));
                outln!("by hash mode: {}", show_counts(&counts.by_hash_mode));
                outln!("by hash algorithm: {}", show_counts(&counts.by_hash_algo));
                outln!("url sources by scheme: {}", show_counts(&counts.by_scheme));
                outln!("url sources by file type: {}", show_counts(&counts.by_file_type));
                outln!("hosts: {}", counts.hosts);
                for (host, n) in &counts.top_hosts {
                    outln!("  {n:>8}  {host}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
