//! `swh-bridge publish`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use swh_bridge::publish::{Publication, publish};
use swh_bridge::workspace::{Settings, Workspace};

use super::read_sources;

/// Publish a recipe store as a static site (recipes, bridge index, sources.json, stats and an
/// index page) that any web server can serve and `fetch --recipes URL` reads.
#[derive(clap::Args)]
pub struct PublishArgs {
    /// The recipe store (a directory) to publish.
    #[arg(long)]
    recipes: PathBuf,
    /// The site's directory (created if need be).
    #[arg(long)]
    out: PathBuf,
    /// The sources.json the recipes were captured from, published beside them.
    #[arg(long)]
    sources: Option<PathBuf>,
    /// The state database, for the statistics [default: state.sqlite in the data directory, if
    /// it exists].
    #[arg(long)]
    state: Option<PathBuf>,
    /// Print the statistics as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: PublishArgs) -> Result<ExitCode> {
    let workspace = Workspace::open(Settings::default())?;
    let state = workspace.open_existing_state(args.state.as_deref())?;
    let revision = match &args.sources {
        Some(path) => read_sources(path)?.file.revision,
        None => None,
    };
    let publication = Publication {
        recipes: &args.recipes,
        out: &args.out,
        sources: args.sources.as_deref().map(|path| (path, revision.as_deref())),
        state: state.as_ref(),
    };
    let report = publish(&publication)?;
    if args.json {
        outln!("{}", serde_json::to_string(&report.stats)?);
    } else {
        eprintln!(
            "published {} recipes to {}: {} files written, {} unchanged",
            report.stats.recipes,
            args.out.display(),
            report.written,
            report.unchanged
        );
    }
    Ok(ExitCode::SUCCESS)
}
