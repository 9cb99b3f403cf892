//! Pre-seeding the Nix store with the sources a build is missing: each fixed-output derivation
//! whose output is not in the store is fetched through the [`Fetcher`] (its own URLs first, then
//! the archive) and added with `nix-store --add-fixed`, which must give it exactly the
//! derivation's output path. Nix then sees the output as valid and never runs the fetcher.

use std::path::Path;

use super::fetch::{FetchError, FetchReport, Fetcher};
use crate::hashing::{Hash, HashAlgo, HashMode, ObjectType, Swhid};
use crate::plan::{SourceRequest, as_committed};
use crate::store::{Derivation, NixStore, StoreError, StorePath};

/// A source the store is missing, as its fixed-output derivation describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingSource {
    pub drv: String,
    /// The output path the derivation promises.
    pub output: String,
    /// What to fetch: the hash, the derivation's download URLs (`urls`, else `url`; `mirror://`
    /// ones left out: the fetcher cannot expand them, and the archive is asked by hash anyway),
    /// the commit of a git checkout taken as committed, the output path for binary caches.
    pub request: SourceRequest,
}

/// Why a missing source could not be added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrefetchError {
    #[error("{drv} has a fixed output whose hash cannot be read: {reason}")]
    UnreadableHash { drv: String, reason: String },
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("failed to make a scratch directory in {}", dir.display())]
    Scratch {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("nix-store added the source as {added}, but {drv} expects {expected}")]
    WrongPath { drv: String, added: String, expected: String },
}

impl MissingSource {
    /// The source of a fixed-output derivation (`None` for any other derivation).
    pub fn of(drv: &str, derivation: &Derivation) -> Option<Result<MissingSource, PrefetchError>> {
        let output = derivation.fixed_output()?;
        let unreadable = |reason: String| PrefetchError::UnreadableHash { drv: drv.to_owned(), reason };
        let (mode, algo) = match output.hash_algo.strip_prefix("r:") {
            Some(algo) => (HashMode::Recursive, algo),
            None => (HashMode::Flat, output.hash_algo.as_str()),
        };
        let source = algo
            .parse::<HashAlgo>()
            .map_err(|e| unreadable(e.to_string()))
            .and_then(|algo| Hash::parse(&output.hash, Some(algo)).map_err(|e| unreadable(e.to_string())))
            .map(|hash| {
                let env = |name: &str| derivation.env.get(name).map(String::as_str).filter(|value| !value.is_empty());
                let urls = env("urls")
                    .or_else(|| env("url"))
                    .map(|urls| {
                        urls.split_whitespace().filter(|u| !u.starts_with("mirror://")).map(str::to_owned).collect()
                    })
                    .unwrap_or_default();
                // fetchgit's derivations say what they add to or take from the commit's tree.
                let committed = as_committed(
                    env("fetchSubmodules").is_some_and(|v| v == "1"),
                    env("sparseCheckout").is_some(),
                    env("postFetch").is_some(),
                );
                let git_commit = env("rev")
                    .filter(|_| committed)
                    .and_then(|rev| Swhid::from_hex(ObjectType::Revision, &rev.to_ascii_lowercase()).ok());
                let request = SourceRequest {
                    hash,
                    mode,
                    urls,
                    git_commit,
                    store_path: StorePath::parse(&output.path).ok(),
                    narinfo: None,
                };
                MissingSource { drv: drv.to_owned(), output: output.path.clone(), request }
            });
        Some(source)
    }

    /// The store path's name: what follows the hash part of its base name.
    pub fn name(&self) -> &str {
        let base = self.output.rsplit('/').next().unwrap_or_default();
        base.split_once('-').map_or(base, |(_, name)| name)
    }
}

/// Fetches `source` into a scratch directory under `scratch`, adds it to `store`, and checks
/// that Nix placed it at the derivation's output path.
pub async fn prefetch_source(
    fetcher: &Fetcher,
    store: &NixStore,
    source: &MissingSource,
    scratch: &Path,
) -> Result<FetchReport, PrefetchError> {
    let dir = crate::atomic::scratch_dir_in(scratch, "prefetch")
        .map_err(|source| PrefetchError::Scratch { dir: scratch.to_owned(), source })?;
    // nix-store --add-fixed names the store path after the file.
    let fetched = dir.path().join(source.name());
    let report = fetcher.fetch(&source.request, &fetched).await?;
    let request = &source.request;
    let added = store.add_fixed(request.mode == HashMode::Recursive, request.hash.algo(), &fetched)?;
    if added != source.output {
        return Err(PrefetchError::WrongPath { drv: source.drv.clone(), added, expected: source.output.clone() });
    }
    Ok(report)
}
