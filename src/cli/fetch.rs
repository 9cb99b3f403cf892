//! `swh-bridge fetch`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use serde_json::json;
use swh_bridge::hashing::{Hash, HashAlgo, HashMode, ObjectType, Swhid};
use swh_bridge::plan::SourceRequest;
use swh_bridge::store::StorePath;

use super::{ArchiveArgs, read_sources};

/// Get a source back by its hash, from its URLs, hashed mirrors, Software Heritage or Nix binary
/// caches, verified.
#[derive(clap::Args)]
pub struct FetchArgs {
    /// The hash: SRI, `algo:…`, or bare with --algo.
    hash: String,
    #[arg(long, value_enum, default_value_t = FetchMode::Flat)]
    mode: FetchMode,
    /// Algorithm of a bare hash.
    #[arg(long)]
    algo: Option<HashAlgo>,
    /// Upstream URLs to try first (repeatable).
    #[arg(long = "url")]
    urls: Vec<String>,
    /// Where to put the file or tree; it must not exist [default: ./NAME].
    #[arg(short, long, required_unless_present = "name")]
    output: Option<PathBuf>,
    /// The source's name (its store name): the output's file name when -o is not given, and,
    /// with the hash, its store path, under which binary caches keep it.
    #[arg(long)]
    name: Option<String>,
    /// For --mode recursive of a git checkout taken as committed: its full commit id.
    #[arg(long)]
    git_commit: Option<String>,
    /// Take what is known of the source (hash mode, URLs, commit, store path, narinfo) from its
    /// entry in this sources.json, the one with this hash.
    #[arg(long, conflicts_with_all = ["mode", "urls", "git_commit"])]
    sources: Option<PathBuf>,
    #[command(flatten)]
    archive: ArchiveArgs,
    /// Print what was fetched, from where, as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FetchMode {
    /// The hash of the file's bytes (fetchurl).
    Flat,
    /// The NAR hash of a tree (fetchzip, fetchgit, …).
    Recursive,
}

pub async fn run(args: FetchArgs) -> Result<ExitCode> {
    let hash = Hash::parse(&args.hash, args.algo)?;
    let mode = match args.mode {
        FetchMode::Flat => HashMode::Flat,
        FetchMode::Recursive => HashMode::Recursive,
    };
    let output = match (args.output, &args.name) {
        (Some(output), _) => output,
        (None, Some(name)) if !name.is_empty() && !name.contains('/') && name != "." && name != ".." => {
            PathBuf::from(name)
        }
        (None, name) => bail!("--name {name:?} cannot name a file: give -o OUT"),
    };
    let request = match &args.sources {
        None => {
            let git_commit = args
                .git_commit
                .as_deref()
                .map(|commit| Swhid::from_hex(ObjectType::Revision, commit))
                .transpose()
                .context("--git-commit takes a full commit id, 40 lowercase hex digits")?;
            // A name Nix would refuse names no store path, so no binary cache has the source under it.
            let store_path = args.name.as_deref().and_then(|name| StorePath::fixed_output(name, &hash, mode).ok());
            SourceRequest { hash, mode, urls: args.urls, git_commit, store_path, narinfo: None }
        }
        Some(path) => {
            let read = read_sources(path)?;
            let entry = read.file.sources.iter().find(|source| {
                source.integrity.as_deref().and_then(|integrity| Hash::parse(integrity, None).ok()).as_ref()
                    == Some(&hash)
            });
            let Some(entry) = entry else { bail!("{} has no source with hash {hash}", path.display()) };
            SourceRequest::of_source(entry)
                .with_context(|| format!("{hash} in {} cannot be fetched", path.display()))?
        }
    };
    let fetcher = args.archive.workspace()?.fetcher();
    let report = fetcher.fetch(&request, &output).await.with_context(|| format!("failed to fetch {}", request.hash))?;
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    if args.json {
        let report = json!({"hash": request.hash.to_sri(), "output": output, "origin": report.origin,
                            "way": report.way, "archive_requests": report.archive_requests, "notes": report.notes});
        outln!("{report}");
    }
    eprintln!(
        "fetched {} from {} to {} ({} archive requests)",
        request.hash,
        report.origin,
        output.display(),
        report.archive_requests
    );
    Ok(ExitCode::SUCCESS)
}
