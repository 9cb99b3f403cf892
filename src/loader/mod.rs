//! The loader: making sure every source of a sources.json ends up archived and recoverable.
//!
//! Software Heritage archives URL sources on its own schedule, from the published sources.json;
//! the loader does the rest:
//! - VCS sources ([`save`]): revisions the archive lacks get a Save Code Now request for their
//!   origin, within the API's quota, never twice for the same need;
//! - downloadable sources ([`capture`]): what SWH throws away or cannot index is recorded while
//!   upstream still serves it: recipes and bridge entries for archives, content ids for plain
//!   files, tree SWHIDs for NAR hashes.
//!
//! Captures run `jobs` at once (downloads at most `per_host` at once per host; recipes are made
//! on blocking threads); [`state`] records every outcome, so a rerun, even after `kill -9`,
//! skips what is done and retries what failed.

pub mod capture;
pub mod save;

use std::time::Instant;

use futures_util::StreamExt;

use crate::error_chain::error_chain;
use crate::fallback::Fetcher;
use crate::hashing::Swhid;
use crate::recipes::store::RecipeStore;
use crate::sources::Source;
use crate::state::{CaptureStatus, State, StateError};
use capture::{Capture, Capturer, HostLimits, Kind, MemoryBudget, NotCapturable, Timings};
use save::{SaveSummary, Saver, VcsSource};

/// What the loader did with one downloadable source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Recorded this run; the SWHID of what SWH archives.
    Captured { swhid: Swhid },
    /// Captured by an earlier run (or found in the store).
    AlreadyCaptured,
    /// Why not, on one line.
    Failed { error: String },
    /// Nothing to capture.
    Skipped { why: NotCapturable },
}

impl Outcome {
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Captured { .. } => "captured",
            Outcome::AlreadyCaptured => "already captured",
            Outcome::Failed { .. } => "failed",
            Outcome::Skipped { .. } => "skipped",
        }
    }
}

/// One source's outcome and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// What the source is captured as (`None`: it is not).
    pub kind: Option<Kind>,
    pub outcome: Outcome,
    pub timings: Timings,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Save(#[from] save::SaveError),
    #[error("failed to make a scratch directory")]
    Scratch(#[source] std::io::Error),
}

/// How much to do at once.
#[derive(Debug, Clone, Copy)]
pub struct Concurrency {
    /// Sources captured at once.
    pub jobs: usize,
    /// Downloads at once from one host.
    pub per_host: usize,
    /// Save Code Now requests per hour.
    pub saves_per_hour: u64,
    /// Memory the captures may hold at once, in MiB (see [`capture::MemoryBudget`]).
    pub memory_mib: u32,
}

/// The sources of `sources` a run with `--since` loads: those added or changed since `previous`,
/// and those an earlier run failed on or never reached.
pub fn since(sources: Vec<Source>, previous: &[Source], state: &State) -> Result<Vec<Source>, StateError> {
    let diff = crate::sources::diff::diff(previous, &sources);
    let changed = diff.changed.iter().map(|change| change.new);
    let fresh: std::collections::HashSet<String> =
        diff.added.iter().copied().chain(changed).map(Source::identity).collect();
    let mut chosen = Vec::new();
    for source in sources {
        let unfinished = match Capture::of(&source) {
            Ok(capture) => {
                state.capture(&capture.request.hash)?.is_none_or(|record| record.status == CaptureStatus::Failed)
            }
            Err(_) => false,
        };
        if unfinished || fresh.contains(&source.identity()) {
            chosen.push(source);
        }
    }
    Ok(chosen)
}

/// What loading needs: the fetcher (its plans give the bytes: URLs, hashed mirrors, the
/// archive, binary caches), the recipe store it writes, and the state.
pub struct Loader<'a> {
    pub fetcher: &'a Fetcher,
    pub store: &'a RecipeStore,
    pub state: &'a State,
    pub concurrency: Concurrency,
}

impl Loader<'_> {
    /// Saves the VCS sources' origins where needed (see [`save`]); `now` in unix seconds.
    pub async fn save(&self, sources: &[Source], now: i64) -> Result<SaveSummary, LoadError> {
        let vcs: Vec<VcsSource> = sources.iter().filter_map(VcsSource::of).filter_map(Result::ok).collect();
        let saver =
            Saver { archive: self.fetcher.archive(), state: self.state, per_hour: self.concurrency.saves_per_hour };
        Ok(saver.run(&vcs, now).await?)
    }

    /// Captures every downloadable source, `jobs` at once, calling `each` with the index of
    /// every source (VCS ones included, as skipped) as it finishes.
    pub async fn capture_all(&self, sources: &[Source], mut each: impl FnMut(usize, Report)) -> Result<(), LoadError> {
        let hosts = HostLimits::new(self.concurrency.per_host);
        let memory = MemoryBudget::new(self.concurrency.memory_mib);
        let capturer = Capturer { fetcher: self.fetcher, store: self.store, hosts: &hosts, memory: &memory };
        let capturer = &capturer;
        let mut reports = futures_util::stream::iter(sources.iter().enumerate())
            .map(|(index, source)| async move { (index, self.capture(capturer, source).await) })
            .buffer_unordered(self.concurrency.jobs.max(1));
        while let Some((index, report)) = reports.next().await {
            each(index, report?);
        }
        Ok(())
    }

    async fn capture(&self, capturer: &Capturer<'_>, source: &Source) -> Result<Report, LoadError> {
        let mut timings = Timings::default();
        let capture = match Capture::of(source) {
            Ok(capture) => capture,
            Err(why) => return Ok(Report { kind: None, outcome: Outcome::Skipped { why }, timings }),
        };
        let kind = Some(capture.kind);
        let report = |outcome| Ok(Report { kind, outcome, timings });
        let hash = &capture.request.hash;
        if self.state.capture(hash)?.is_some_and(|record| record.status == CaptureStatus::Captured) {
            return report(Outcome::AlreadyCaptured);
        }
        // A run killed after storing but before recording: the bridge entry is written last.
        if let Ok(Some(entry)) = self.store.bridge(&capture.bridge_key()).await {
            let swhid = match (capture.kind, entry.unpacked) {
                (Kind::Recursive, Some(unpacked)) => unpacked.swhid,
                _ => entry.tree,
            };
            self.state.record_captured(hash, &swhid)?;
            return report(Outcome::AlreadyCaptured);
        }
        let scratch = crate::atomic::scratch_dir_in(&std::env::temp_dir(), "load").map_err(LoadError::Scratch)?;
        let started = Instant::now();
        let captured = capturer.capture(&capture, scratch.path(), &mut timings).await;
        // Whatever was not waiting for bytes or hashing was spent on the store and the state.
        timings.compute += started.elapsed().saturating_sub(timings.download + timings.compute);
        let outcome = match captured {
            Ok(swhid) => {
                self.state.record_captured(hash, &swhid)?;
                Outcome::Captured { swhid }
            }
            Err(err) => {
                let error = error_chain(&err);
                self.state.record_capture_failure(hash, &error)?;
                Outcome::Failed { error }
            }
        };
        Ok(Report { kind, outcome, timings })
    }
}
