//! `swh-bridge serve`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use swh_bridge::serve::index::{SourceIndex, SourcesFeed};
use swh_bridge::serve::{ServeOptions, Server};

use super::ArchiveArgs;

/// Run a hashed mirror and a Nix substituter: every flat-hashed download whose upstream is gone,
/// and every fixed output of the sources.json files given with --sources, is answered from
/// Software Heritage, verified (nix.conf: `extra-substituters = http://ADDR`, or
/// `hashed-mirrors = http://ADDR/`).
#[derive(clap::Args)]
pub struct ServeArgs {
    /// The address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Fetches from the archive that may run at once.
    #[arg(long, default_value_t = 4)]
    max_resolutions: usize,
    /// Seconds a request waits for its source to be found before answering 404 (the search goes
    /// on, and a later request finds it cached).
    #[arg(long, default_value_t = 120)]
    resolve_timeout: u64,
    /// Seconds a hash found missing is answered 404 without asking the archive again.
    #[arg(long, default_value_t = 600)]
    negative_ttl: u64,
    /// Close a connection whose request headers have not all arrived after this many seconds
    /// (a stalled client, or an idle keep-alive connection).
    #[arg(long, default_value_t = swh_bridge::serve::DEFAULT_HEADER_TIMEOUT.as_secs())]
    header_timeout: u64,
    /// A sources.json (a file, read again when it changes, or an http(s) URL such as a site
    /// `publish` made, downloaded again every 10 minutes) whose fixed outputs the substituter
    /// answers for (repeatable).
    #[arg(long = "sources", value_name = "FILE|URL")]
    sources: Vec<String>,
    #[command(flatten)]
    archive: ArchiveArgs,
}

pub async fn run(args: ServeArgs) -> Result<ExitCode> {
    let workspace = args.archive.workspace()?;
    let options = ServeOptions {
        max_resolutions: args.max_resolutions,
        resolve_timeout: Duration::from_secs(args.resolve_timeout),
        negative_ttl: Duration::from_secs(args.negative_ttl),
    };
    let feeds = args.sources.iter().map(|feed| SourcesFeed::parse(feed)).collect();
    let index = Arc::new(SourceIndex::new(feeds));
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .build()
        .context("failed to make an HTTP client")?;
    if let Some((feed, err)) = index.refresh(&http, true).await.into_iter().next() {
        return Err(anyhow::Error::new(err).context(format!("failed to read the sources {feed}")));
    }
    tokio::spawn(index.clone().follow(http));
    let server = Arc::new(Server::new(
        workspace.mirror_fetcher(),
        workspace.cache(),
        workspace.serve_scratch_dir(),
        options,
        index.clone(),
    ));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("failed to listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    eprintln!("serving a hashed mirror on http://{address}/ (nix.conf: hashed-mirrors = http://{address}/)");
    if !index.feeds().is_empty() {
        eprintln!(
            "and a substituter for {} store paths (nix.conf: extra-substituters = http://{address})",
            index.len()
        );
    }
    swh_bridge::serve::run(server, listener, Duration::from_secs(args.header_timeout))
        .await
        .context("the server failed")?;
    Ok(ExitCode::SUCCESS)
}
