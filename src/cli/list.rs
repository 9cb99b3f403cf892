//! `swh-bridge list`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;
use swh_bridge::fallback::DEFAULT_UPSTREAM_TIMEOUT;
use swh_bridge::fallback::binary_cache::BinaryCache;
use swh_bridge::listers::narinfo::{self, GIVE_UP_AFTER, NarinfoSummary};
use swh_bridge::listers::nixpkgs::{self, DEFAULT_ATTRIBUTE_TIMEOUT, ListOptions, Listing, RawEvaluation};
use swh_bridge::workspace::NIXOS_BINARY_CACHE;

use super::{progress, show_counts, write_output};

/// List the sources a Nixpkgs revision needs, as sources.json: the fixed-output derivations in
/// the build closure of its packages, instantiated with real Nix.
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
    /// Instantiate for this system (repeatable: the union is listed) [default: the package set's
    /// own default; all-tarballs.nix is used only then].
    #[arg(long = "system")]
    systems: Vec<String>,
    /// Evaluator processes to run at once (each imports the package set once).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// The Nix store to instantiate into, as Nix's `--store` [default: a throwaway one in a
    /// temporary directory].
    #[arg(long)]
    store: Option<String>,
    /// Seconds one root attribute may take to evaluate before it counts as failed.
    #[arg(long, default_value_t = DEFAULT_ATTRIBUTE_TIMEOUT.as_secs())]
    attribute_timeout: u64,
    /// Binary caches to ask for each source's narinfo (repeatable; the first that has it wins)
    /// [default: cache.nixos.org].
    #[arg(long = "binary-cache")]
    binary_caches: Vec<url::Url>,
    /// Do not ask binary caches for narinfos.
    #[arg(long, conflicts_with = "binary_caches")]
    no_narinfo: bool,
    /// Where to write sources.json.
    #[arg(short, long)]
    output: PathBuf,
    /// Also keep the evaluation's raw output here.
    #[arg(long)]
    save_raw: Option<PathBuf>,
    /// Post-process a raw evaluation saved with --save-raw instead of evaluating.
    #[arg(long, conflicts_with_all = ["nixpkgs", "rev", "attrs", "systems", "store"])]
    from_raw: Option<PathBuf>,
    /// Print the summary as JSON on standard output.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ListArgs) -> Result<ExitCode> {
    let mut listing = match (&args.from_raw, &args.nixpkgs) {
        (Some(raw), _) => {
            let bytes = std::fs::read(raw).with_context(|| format!("failed to read {}", raw.display()))?;
            let evaluation: RawEvaluation =
                serde_json::from_slice(&bytes).with_context(|| format!("failed to parse {}", raw.display()))?;
            Listing::from_raw(evaluation)
        }
        (None, Some(path)) => {
            let options = ListOptions {
                nixpkgs: path.clone(),
                rev: args.rev.clone(),
                attrs: args.attrs.clone(),
                jobs: args.jobs,
                systems: args.systems.clone(),
                store: args.store.clone(),
                attribute_timeout: Duration::from_secs(args.attribute_timeout),
            };
            let bar = progress("{spinner} evaluating {pos}/{len} root attributes {elapsed}");
            let listed = nixpkgs::list(&options, &|done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            });
            bar.finish_and_clear();
            listed.with_context(|| format!("failed to list {}", path.display()))?
        }
        (None, None) => unreachable!("clap requires NIXPKGS or --from-raw"),
    };
    if let Some(raw_path) = &args.save_raw {
        write_output(raw_path, |out| serde_json::to_writer(out, &listing.raw).map_err(std::io::Error::other))?;
    }
    let narinfos = match args.no_narinfo {
        true => None,
        false => {
            let mut caches = args.binary_caches.clone();
            if caches.is_empty() {
                caches.push(url::Url::parse(NIXOS_BINARY_CACHE).expect("a valid URL"));
            }
            let caches: Vec<BinaryCache> =
                caches.iter().map(|root| BinaryCache::new(root, DEFAULT_UPSTREAM_TIMEOUT)).collect();
            let bar = progress("{spinner} asking binary caches for narinfos: {pos}/{len} {elapsed}");
            let summary = super::asynchronously(async {
                Ok(narinfo::annotate(&mut listing.file, &listing.url_less, &caches, &|done, total| {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                })
                .await)
            })?;
            bar.finish_and_clear();
            Some(summary)
        }
    };
    write_output(&args.output, |out| swh_bridge::sources::write(&listing.file, out).map_err(std::io::Error::other))?;
    report(&args, &listing, narinfos.as_ref())?;
    // The process ends here: freeing a listing's millions of small allocations one by one took a
    // fifth of `list --from-raw`'s time, for memory the exit returns anyway.
    std::mem::forget(listing);
    Ok(ExitCode::SUCCESS)
}

fn report(args: &ListArgs, listing: &Listing, narinfos: Option<&NarinfoSummary>) -> Result<()> {
    let counts = swh_bridge::sources::stats::kinds_of(&listing.file.sources);
    let failure = |f: &nixpkgs::FailedAttribute| {
        let system = f.system.as_deref().map(|s| format!(" ({s})")).unwrap_or_default();
        format!("{}{system}: {}", f.attribute, f.reason.as_deref().unwrap_or("(reason not looked up)"))
    };
    if args.json {
        let failed: Vec<_> = listing
            .failed
            .iter()
            .map(|f| json!({ "attribute": f.attribute, "system": f.system, "reason": f.reason }))
            .collect();
        let rejected: Vec<_> = listing.rejected.iter().map(|r| r.to_string()).collect();
        let narinfos = narinfos.map(|n| {
            json!({"asked": n.asked, "found": n.found, "url_less_listed": n.url_less_listed,
                   "failures": n.failures, "errors": n.errors, "given_up": n.given_up})
        });
        outln!(
            "{}",
            json!({
                "sources": listing.file.sources.len(),
                "roots": listing.roots,
                "by_system": listing.by_system,
                "by_type": counts.by_type,
                "by_hash_mode": counts.by_hash_mode,
                "url_less": listing.url_less,
                "failed": failed,
                "rejected": rejected,
                "unknown_mirrors": listing.unknown_mirrors,
                "warnings": listing.warnings,
                "narinfo": narinfos,
            })
        );
        return Ok(());
    }
    for warning in &listing.warnings {
        eprintln!("warning: {warning}");
    }
    eprintln!(
        "{} sources from {} root attributes written to {}",
        listing.file.sources.len(),
        listing.roots,
        args.output.display()
    );
    eprintln!("  by system: {}", show_counts(&listing.by_system));
    eprintln!("  by type: {}", show_counts(&counts.by_type));
    eprintln!("  by hash mode: {}", show_counts(&counts.by_hash_mode));
    if let Some(n) = narinfos {
        eprintln!(
            "  narinfos: {} of {} store paths in a binary cache ({} URL-less outputs listed from their NAR); {} lookups failed",
            n.found + n.url_less_listed,
            n.asked,
            n.url_less_listed,
            n.failures
        );
        for cache in &n.given_up {
            eprintln!("    {cache} was no longer asked after {GIVE_UP_AFTER} failures in a row");
        }
        for error in &n.errors {
            eprintln!("    {error}");
        }
    }
    if !listing.url_less.is_empty() {
        eprintln!("  {} fixed outputs have no URL (only a binary cache can have them):", listing.url_less.len());
        for output in &listing.url_less {
            eprintln!("    {} {} ({})", output.store_path.as_deref().unwrap_or("?"), output.hash, output.mode);
        }
    }
    if !listing.failed.is_empty() {
        eprintln!("  {} attributes failed to evaluate and were skipped:", listing.failed.len());
        for f in &listing.failed {
            eprintln!("    {}", failure(f));
        }
    }
    if !listing.rejected.is_empty() {
        eprintln!("  {} fixed-output derivations could not be described:", listing.rejected.len());
        for rejected in &listing.rejected {
            eprintln!("    {rejected}");
        }
    }
    if !listing.unknown_mirrors.is_empty() {
        eprintln!(
            "  {} URLs name a mirror site mirrors.nix lacks, and are kept as they are:",
            listing.unknown_mirrors.len()
        );
        for url in &listing.unknown_mirrors {
            eprintln!("    {url}");
        }
    }
    Ok(())
}
