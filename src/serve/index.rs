//! The substituter's index: which store paths it can answer for, built from sources.json files.
//!
//! Quirks:
//! - a binary cache is asked by the 32-character hash part of a store path alone, so that is the
//!   key; entries without `nixStorePath` (Guix's, older files) get the path Nix would give them
//!   (see [`SourceRequest::of_source`]);
//! - two entries with one store path are one source (its hash and name are in the path); the
//!   first one read is kept;
//! - a feed that cannot be read keeps its previous entries: a half-written or unreachable file
//!   must not empty a running server's index.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use crate::download::{BodyLimits, read_within};
use crate::error_chain::error_chain;
use crate::plan::SourceRequest;
use crate::sources::{ReadSources, SourcesError};
use crate::store::StorePath;

/// Where a sources.json comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourcesFeed {
    /// A local file, read again when its length or modification time changes.
    File(PathBuf),
    /// A published one (`publish` puts it on the site), downloaded again every
    /// [`URL_REFRESH`].
    Url(url::Url),
}

impl SourcesFeed {
    /// `http://…` or `https://…` is a URL; anything else a file.
    pub fn parse(input: &str) -> SourcesFeed {
        match url::Url::parse(input) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => SourcesFeed::Url(url),
            _ => SourcesFeed::File(PathBuf::from(input)),
        }
    }
}

impl std::fmt::Display for SourcesFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourcesFeed::File(path) => write!(f, "{}", path.display()),
            SourcesFeed::Url(url) => write!(f, "{url}"),
        }
    }
}

/// How often a file feed is checked for changes.
pub const FILE_POLL: Duration = Duration::from_secs(2);
/// How often a URL feed is downloaded again.
pub const URL_REFRESH: Duration = Duration::from_secs(600);
/// The largest sources.json a URL feed may send (Nixpkgs' is about 60 MB).
const MAX_FEED_BYTES: u64 = 1 << 30;

/// Why a feed could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    #[error(transparent)]
    Sources(#[from] SourcesError),
    #[error("failed to download {url}")]
    Download {
        url: url::Url,
        #[source]
        source: reqwest::Error,
    },
    #[error("failed to download {url}: {status}")]
    Status { url: url::Url, status: reqwest::StatusCode },
    #[error("failed to download {url}")]
    Body {
        url: url::Url,
        #[source]
        source: crate::download::BodyError,
    },
}

/// One source the substituter can answer for.
#[derive(Debug, Clone)]
pub struct IndexedSource {
    pub store_path: StorePath,
    pub request: SourceRequest,
}

/// What each feed gave, last time it was read.
#[derive(Debug, Default)]
struct FeedState {
    entries: Vec<IndexedSource>,
    /// (length, modification time) of a file feed when it was read.
    seen: Option<(u64, SystemTime)>,
}

/// The store paths the substituter answers for, by hash part.
#[derive(Debug, Default)]
pub struct SourceIndex {
    feeds: Vec<SourcesFeed>,
    states: RwLock<Vec<FeedState>>,
    by_hash_part: RwLock<HashMap<String, IndexedSource>>,
}

impl SourceIndex {
    /// An index of `feeds`, empty until [`SourceIndex::refresh`] reads them.
    pub fn new(feeds: Vec<SourcesFeed>) -> SourceIndex {
        let states = feeds.iter().map(|_| FeedState::default()).collect();
        SourceIndex { feeds, states: RwLock::new(states), by_hash_part: RwLock::new(HashMap::new()) }
    }

    pub fn feeds(&self) -> &[SourcesFeed] {
        &self.feeds
    }

    /// The source whose store path has this hash part.
    pub fn get(&self, hash_part: &str) -> Option<IndexedSource> {
        self.by_hash_part.read().expect("no thread panics holding it").get(hash_part).cloned()
    }

    pub fn len(&self) -> usize {
        self.by_hash_part.read().expect("no thread panics holding it").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the feeds that changed (files) or are due (`urls_due`), and rebuilds the index if
    /// any did. Returns what could not be read, by feed; those keep their previous entries.
    pub async fn refresh(&self, http: &reqwest::Client, urls_due: bool) -> Vec<(SourcesFeed, FeedError)> {
        let mut failures = Vec::new();
        let mut changed = false;
        for (i, feed) in self.feeds.iter().enumerate() {
            let read = match feed {
                SourcesFeed::File(path) => {
                    let seen = file_stamp(path);
                    let state_seen = self.states.read().expect("no thread panics holding it")[i].seen;
                    if seen.is_some() && seen == state_seen {
                        continue;
                    }
                    let path = path.clone();
                    let read = tokio::task::spawn_blocking(move || crate::sources::read_file(&path))
                        .await
                        .expect("reading a file does not panic");
                    read.map(|read| (read, seen)).map_err(FeedError::from)
                }
                SourcesFeed::Url(_) if !urls_due => continue,
                SourcesFeed::Url(url) => download(http, url).await.map(|read| (read, None)),
            };
            match read {
                Ok((read, seen)) => {
                    let entries = entries_of(&read);
                    self.states.write().expect("no thread panics holding it")[i] = FeedState { entries, seen };
                    changed = true;
                }
                Err(err) => failures.push((feed.clone(), err)),
            }
        }
        if changed {
            let states = self.states.read().expect("no thread panics holding it");
            let mut index = HashMap::new();
            for entry in states.iter().flat_map(|state| &state.entries) {
                index.entry(entry.store_path.hash_part()).or_insert_with(|| entry.clone());
            }
            *self.by_hash_part.write().expect("no thread panics holding it") = index;
        }
        failures
    }

    /// Keeps the index up to date for as long as the server runs, reporting feeds that fail.
    pub async fn follow(self: std::sync::Arc<SourceIndex>, http: reqwest::Client) {
        let mut since_urls = Duration::ZERO;
        loop {
            tokio::time::sleep(FILE_POLL).await;
            since_urls += FILE_POLL;
            let urls_due = since_urls >= URL_REFRESH;
            if urls_due {
                since_urls = Duration::ZERO;
            }
            let before = self.len();
            for (feed, err) in self.refresh(&http, urls_due).await {
                eprintln!("warning: keeping the previous index of {feed}: {}", error_chain(&err));
            }
            let after = self.len();
            if after != before {
                eprintln!("the substituter's index now has {after} store paths (was {before})");
            }
        }
    }
}

fn file_stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.len(), metadata.modified().ok()?))
}

async fn download(http: &reqwest::Client, url: &url::Url) -> Result<ReadSources, FeedError> {
    let response =
        http.get(url.clone()).send().await.map_err(|source| FeedError::Download { url: url.clone(), source })?;
    if !response.status().is_success() {
        return Err(FeedError::Status { url: url.clone(), status: response.status() });
    }
    let bytes = read_within(response, BodyLimits::of_size(MAX_FEED_BYTES))
        .await
        .map_err(|source| FeedError::Body { url: url.clone(), source })?;
    let name = PathBuf::from(url.as_str());
    tokio::task::spawn_blocking(move || crate::sources::read_bytes(&bytes, &name))
        .await
        .expect("parsing does not panic")
        .map_err(FeedError::from)
}

/// The entries of a sources.json a substituter can answer for: those with a hash and a store
/// path (given or computed).
fn entries_of(read: &ReadSources) -> Vec<IndexedSource> {
    read.file
        .sources
        .iter()
        .filter_map(|source| {
            let request = SourceRequest::of_source(source).ok()?;
            let store_path = request.store_path.clone()?;
            Some(IndexedSource { store_path, request })
        })
        .collect()
}
