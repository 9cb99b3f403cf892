//! The loader: making sure the sources of a sources.json stay recoverable once upstream is gone.
//!
//! So far it does the part only we can do: while a flat-hashed archive (tarball, zip, wheel,
//! jar, crate) can still be downloaded, capture its recipe and bridge index entry into a recipe
//! store. Each source is fetched (its URLs, then hashed mirrors, then the archive), verified
//! against its hash by the fetcher, made a recipe of (which rebuilds it at once), and stored;
//! [`state`] records the outcome, so a rerun skips what is done and retries what failed.
//! Save Code Now for VCS origins is not done yet: such sources are counted as skipped.

pub mod state;

use std::path::Path;

use crate::fallback::{FetchRequest, Fetcher, Mode, error_chain};
use crate::hashing::Hash;
use crate::recipes::Recipe;
use crate::recipes::bridge::BridgeEntry;
use crate::recipes::store::RecipeStore;
use crate::sources::Source;
use state::{State, StateError, Status};

/// File names of the archives recipes are made for.
const ARCHIVE_SUFFIXES: [&str; 13] = [
    ".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tbz", ".zip", ".whl", ".jar", ".crate",
    ".tar.Z",
];

/// What the loader did with one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Recipe and bridge index entry stored; the tree's SWHID.
    Captured {
        tree: String,
    },
    /// Captured by an earlier run (or found in the store).
    AlreadyCaptured,
    Failed {
        error: String,
    },
    /// Not a flat-hashed archive: nothing to capture (yet).
    Skipped {
        why: &'static str,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("failed to make a scratch directory")]
    Scratch(#[source] std::io::Error),
}

/// A source's flat hash and URLs, if it is an archive whose recipe can be captured.
fn archive_of(source: &Source) -> Result<(Hash, Vec<String>), &'static str> {
    if source.output_hash_mode.as_deref().is_some_and(|mode| mode != "flat") {
        return Err("recursive hash");
    }
    let integrity = source.integrity.as_deref().ok_or("no hash")?;
    let hash = Hash::parse(integrity, None).map_err(|_| "unreadable hash")?;
    let urls = source.urls.clone().unwrap_or_default();
    let is_archive = urls.iter().any(|url| {
        let path = url::Url::parse(url).map(|u| u.path().to_owned()).unwrap_or_else(|_| url.clone());
        ARCHIVE_SUFFIXES.iter().any(|suffix| path.ends_with(suffix))
    });
    if !is_archive {
        return Err("not an archive");
    }
    Ok((hash, urls))
}

pub struct Loader<'a> {
    pub fetcher: &'a Fetcher,
    pub store: &'a RecipeStore,
    pub state: &'a State,
    pub hashed_mirrors: &'a [String],
}

impl Loader<'_> {
    /// Captures the recipe of one source (see the module docs).
    pub async fn capture(&self, source: &Source) -> Result<Outcome, LoadError> {
        let (hash, urls) = match archive_of(source) {
            Ok(found) => found,
            Err(why) => return Ok(Outcome::Skipped { why }),
        };
        let integrity = hash.to_sri();
        if self.state.get(&integrity)?.is_some_and(|record| record.status == "captured") {
            return Ok(Outcome::AlreadyCaptured);
        }
        // A run killed after storing the recipe but before recording it.
        if let Ok(Some(recipe)) = self.store.get(&hash).await {
            self.state.record(&integrity, Status::Captured, &recipe.tree)?;
            return Ok(Outcome::AlreadyCaptured);
        }
        let scratch = tempfile::tempdir().map_err(LoadError::Scratch)?;
        let outcome = match self.download_and_store(&hash, &urls, scratch.path()).await {
            Ok(tree) => {
                self.state.record(&integrity, Status::Captured, &tree)?;
                Outcome::Captured { tree }
            }
            Err(error) => {
                self.state.record(&integrity, Status::Failed, &error)?;
                Outcome::Failed { error }
            }
        };
        Ok(outcome)
    }

    /// Fetches the file (verified), makes its recipe and stores it; returns the tree's SWHID or
    /// why not.
    async fn download_and_store(&self, hash: &Hash, urls: &[String], scratch: &Path) -> Result<String, String> {
        let file = scratch.join("file");
        let request =
            FetchRequest { hash, mode: Mode::Flat, urls, git_commit: None, hashed_mirrors: self.hashed_mirrors };
        self.fetcher.fetch(&request, &file).await.map_err(|e| error_chain(&e))?;
        let bytes = std::fs::read(&file).map_err(|e| error_chain(&e))?;
        let (recipe, tree) = Recipe::create(&bytes).map_err(|e| format!("no recipe: {}", error_chain(&e)))?;
        let entry = BridgeEntry::of(&bytes, &tree);
        self.store.put(&recipe, &bytes, &entry).map_err(|e| error_chain(&e))?;
        Ok(recipe.tree)
    }
}
