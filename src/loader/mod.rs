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

pub mod binary_cache;
pub mod capture;
pub mod save;
pub mod state;

use std::time::Instant;

use futures_util::StreamExt;

use crate::fallback::Fetcher;
use crate::recipes::store::RecipeStore;
use crate::sources::Source;
use binary_cache::BinaryCache;
use capture::{Capture, Capturer, HostLimits, Kind, MemoryBudget, Timings};
use save::{SaveSummary, Saver, VcsSource};
use state::{State, StateError, Status};

/// What the loader did with one downloadable source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Recorded this run; the SWHID of what SWH archives.
    Captured {
        swhid: String,
    },
    /// Captured by an earlier run (or found in the store).
    AlreadyCaptured,
    Failed {
        error: String,
    },
    /// Nothing to capture.
    Skipped {
        why: &'static str,
    },
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
    /// `archive`, `file`, `recursive`, or `-` for a source that is not captured.
    pub kind: &'static str,
    pub outcome: Outcome,
    pub timings: Timings,
}

#[derive(Debug, thiserror::Error)]
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

pub struct Loader<'a> {
    pub fetcher: &'a Fetcher,
    pub store: &'a RecipeStore,
    pub state: &'a State,
    pub hashed_mirrors: &'a [String],
    pub binary_caches: &'a [BinaryCache],
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
        let capturer = Capturer {
            fetcher: self.fetcher,
            store: self.store,
            hashed_mirrors: self.hashed_mirrors,
            binary_caches: self.binary_caches,
            hosts: &hosts,
            memory: &memory,
        };
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
            Err(why) => return Ok(Report { kind: "-", outcome: Outcome::Skipped { why }, timings }),
        };
        let kind = match capture.kind {
            Kind::Archive => "archive",
            Kind::Plain => "file",
            Kind::Recursive => "recursive",
        };
        let report = |outcome| Ok(Report { kind, outcome, timings });
        let integrity = capture.hash.to_sri();
        if self.state.get(&integrity)?.is_some_and(|record| record.status == "captured") {
            return report(Outcome::AlreadyCaptured);
        }
        // A run killed after storing but before recording: the bridge entry is written last.
        if let Ok(Some(entry)) = self.store.bridge(&capture.bridge_key()).await {
            let swhid = match (capture.kind, entry.unpacked) {
                (Kind::Recursive, Some(unpacked)) => unpacked.swhid,
                _ => entry.tree,
            };
            self.state.record(&integrity, Status::Captured, &swhid)?;
            return report(Outcome::AlreadyCaptured);
        }
        let scratch = tempfile::tempdir().map_err(LoadError::Scratch)?;
        let started = Instant::now();
        let captured = capturer.capture(&capture, source, scratch.path(), &mut timings).await;
        // Whatever was not waiting for bytes or hashing was spent on the store and the state.
        timings.compute += started.elapsed().saturating_sub(timings.download + timings.compute);
        let outcome = match captured {
            Ok(swhid) => {
                self.state.record(&integrity, Status::Captured, &swhid)?;
                Outcome::Captured { swhid }
            }
            Err(error) => {
                self.state.record(&integrity, Status::Failed, &error)?;
                Outcome::Failed { error }
            }
        };
        Ok(Report { kind, outcome, timings })
    }
}
