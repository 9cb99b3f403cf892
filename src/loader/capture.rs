//! Capturing what only a download can give, while upstream still serves it:
//! - a flat-hashed archive (tarball, zip, wheel, jar, crate): its recipe and bridge entry;
//! - a flat-hashed plain file: its content SWHID (a bridge entry under its flat hashes, so that
//!   a hash the archive cannot look up, sha512 say, still leads to the content);
//! - a recursive source: its tree's SWHID under its NAR hash, from the archive it unpacks
//!   (fetchzip: the recipe too, since the file is at hand) or from the binary cache's NAR.
//!
//! Bytes come from the source's URLs, then hashed mirrors, then the archive (all through the
//! [`Fetcher`], verified), then the binary caches' NARs (verified against the narinfo and the
//! source's hash). A recursive source's download is verified by what it unpacks to.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error_chain::error_chain;
use crate::fallback::binary_cache;
use crate::fallback::{FetchError, Fetcher};
use crate::hashing::tree::memory::Node;
use crate::hashing::{HashAlgo, HashMode, Swhid};
use crate::plan::{SourceRequest, Unaskable};
use crate::recipes::bridge::{BridgeEntry, BridgeKey};
use crate::recipes::store::{RecipeStore, StoreError};
use crate::recipes::{ARCHIVE_SUFFIXES, Footprint, MAX_PLAIN, Recipe, RecipeError};
use crate::sources::{Source, SourceType};

/// What a downloadable source is, for capturing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Flat hash, an archive's name: recipe and bridge entry.
    Archive,
    /// Flat hash, any other file: content id (or recipe, if it turns out to be an archive).
    Plain,
    /// NAR hash: the tree's SWHID.
    Recursive,
}

impl Kind {
    /// `archive`, `file` or `recursive`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Archive => "archive",
            Kind::Plain => "file",
            Kind::Recursive => "recursive",
        }
    }
}

/// Why a source is not captured at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotCapturable {
    #[error("a VCS source")]
    Vcs,
    #[error(transparent)]
    Unaskable(#[from] Unaskable),
}

/// Why a capture failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CaptureError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("failed to read the downloaded file")]
    Read(#[source] std::io::Error),
    #[error("no recipe")]
    NoRecipe(#[source] RecipeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "capturing needs about {needed_mib} MiB of memory, more than the budget of {budget_mib} MiB (--memory-budget)"
    )]
    OverBudget { needed_mib: u64, budget_mib: u32 },
    #[error("capturing panicked: {0}")]
    Panicked(String),
    #[error("{hash}: only sha256 NAR hashes are bridged")]
    NotSha256 { hash: String },
    /// A recursive source none of whose ways gave its tree: each says why.
    #[error("{}", tried.join("; "))]
    NoTree { tried: Vec<String> },
}

/// A source to capture.
#[derive(Debug, Clone)]
pub(crate) struct Capture {
    pub kind: Kind,
    pub request: SourceRequest,
}

impl Capture {
    /// The capture a `url` source calls for, or why it has none.
    pub(crate) fn of(source: &Source) -> Result<Capture, NotCapturable> {
        if source.kind != SourceType::Url {
            return Err(NotCapturable::Vcs);
        }
        let request = SourceRequest::of_source(source)?;
        let kind = match request.mode {
            HashMode::Recursive => Kind::Recursive,
            HashMode::Flat if request.urls.iter().any(|url| is_archive_url(url)) => Kind::Archive,
            HashMode::Flat => Kind::Plain,
        };
        Ok(Capture { kind, request })
    }

    /// Where a finished capture is found in the recipe store's bridge index.
    pub(crate) fn bridge_key(&self) -> BridgeKey {
        match self.kind {
            Kind::Recursive => BridgeKey::NarSha256(self.request.hash.clone()),
            Kind::Archive | Kind::Plain => BridgeKey::Flat(self.request.hash.clone()),
        }
    }
}

/// Whether a file starts as the archives recipes are made for do (gzip, xz, bzip2, zip, tar).
fn looks_like_an_archive(bytes: &[u8]) -> bool {
    let magic: [&[u8]; 4] = [b"\x1f\x8b", b"\xfd7zXZ\x00", b"BZh", b"PK\x03\x04"];
    magic.iter().any(|m| bytes.starts_with(m)) || bytes.get(257..262) == Some(b"ustar")
}

fn is_archive_url(url: &str) -> bool {
    let path = url::Url::parse(url).map(|u| u.path().to_owned()).unwrap_or_else(|_| url.to_owned());
    ARCHIVE_SUFFIXES.iter().any(|suffix| path.ends_with(suffix))
}

/// At most so many downloads at once from one host.
pub(crate) struct HostLimits {
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl HostLimits {
    pub(crate) fn new(per_host: usize) -> HostLimits {
        HostLimits { per_host: per_host.max(1), hosts: Mutex::new(HashMap::new()) }
    }

    async fn acquire(&self, url: Option<&String>) -> Option<OwnedSemaphorePermit> {
        let host = url.and_then(|u| url::Url::parse(u).ok()).and_then(|u| u.host_str().map(str::to_owned))?;
        let semaphore = self
            .hosts
            .lock()
            .expect("no thread panics holding it")
            .entry(host)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
            .clone();
        semaphore.acquire_owned().await.ok()
    }
}

/// Memory that captures may hold at once, counted in MiB. A capture reserves what it will hold
/// at its peak before it reads its file in: for an archive, what making its recipe takes
/// ([`Footprint::peak`], reckoned on what the file unpacks to, not what it weighs); for a plain
/// file, its size; for a binary cache's NAR, the sizes its narinfo gives. A capture that needs
/// more than the whole budget is refused, so the budget is a bound.
pub(crate) struct MemoryBudget {
    mib: u32,
    semaphore: Arc<Semaphore>,
}

impl MemoryBudget {
    pub(crate) fn new(mib: u32) -> MemoryBudget {
        let mib = mib.max(1);
        MemoryBudget { mib, semaphore: Arc::new(Semaphore::new(mib as usize)) }
    }

    /// Waits until `bytes` fit beside the other captures' reservations; refuses at once what
    /// could never fit.
    async fn reserve(&self, bytes: u64) -> Result<OwnedSemaphorePermit, CaptureError> {
        let needed = bytes.div_ceil(1 << 20).max(1);
        if needed > u64::from(self.mib) {
            return Err(CaptureError::OverBudget { needed_mib: needed, budget_mib: self.mib });
        }
        Ok(self
            .semaphore
            .clone()
            .acquire_many_owned(needed as u32)
            .await
            .expect("the budget's semaphore is never closed"))
    }
}

/// A downloaded file read into memory under a reservation of what capturing it holds.
struct Held {
    bytes: Vec<u8>,
    /// How making its recipe goes, for a file that is (or is named as) an archive.
    footprint: Option<Result<Footprint, RecipeError>>,
    _reserved: OwnedSemaphorePermit,
}

/// Time spent on one capture, waiting for bytes and computing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    pub download: Duration,
    pub compute: Duration,
}

/// What capturing needs.
pub(crate) struct Capturer<'a> {
    pub fetcher: &'a Fetcher,
    pub store: &'a RecipeStore,
    pub hosts: &'a HostLimits,
    pub memory: &'a MemoryBudget,
}

impl Capturer<'_> {
    /// Captures one source; returns the SWHID recorded (what SWH archives).
    pub(crate) async fn capture(
        &self,
        capture: &Capture,
        scratch: &Path,
        timings: &mut Timings,
    ) -> Result<Swhid, CaptureError> {
        match capture.kind {
            Kind::Archive | Kind::Plain => {
                let Held { bytes, footprint, _reserved } = self.flat_bytes(capture, scratch, timings).await?;
                let started = Instant::now();
                let made = match footprint {
                    Some(Ok(footprint)) => recipe_of(bytes, footprint).await?,
                    Some(Err(why)) => Err((Some(why), bytes)),
                    None => Err((None, bytes)),
                };
                let stored = match made {
                    Ok((recipe, bytes, entry)) => self.store.put(&recipe, &bytes, &entry).map(|_| recipe.tree),
                    // A compressed single file (`.patch.gz`) starts like an archive and is not
                    // one: it is a plain file after all.
                    Err((Some(why), _)) if capture.kind == Kind::Archive => return Err(CaptureError::NoRecipe(why)),
                    Err((_, bytes)) => {
                        let entry = BridgeEntry::of_content(&bytes);
                        self.store.put_entry(&entry).map(|()| entry.tree)
                    }
                };
                timings.compute += started.elapsed();
                Ok(stored?)
            }
            Kind::Recursive => self.recursive(capture, scratch, timings).await,
        }
    }

    /// A flat-hashed file's verified bytes, by the fetcher's plan (URLs, hashed mirrors, the
    /// archive, binary caches).
    async fn flat_bytes(&self, capture: &Capture, scratch: &Path, timings: &mut Timings) -> Result<Held, CaptureError> {
        let file = scratch.join("file");
        let started = Instant::now();
        let fetched = {
            let _permit = self.hosts.acquire(capture.request.urls.first()).await;
            self.fetcher.fetch(&capture.request, &file).await
        };
        timings.download += started.elapsed();
        fetched?;
        self.hold(&file, capture.kind == Kind::Archive).await
    }

    /// Reads a downloaded file in once memory allows what capturing it will hold: it stays on
    /// disk, measured through a read-only mapping, until then. A URL need not say what it serves
    /// (crates.io's end in `/download`), so a file that starts like an archive is measured as
    /// one even when `archive` (its name says so) is false.
    async fn hold(&self, file: &Path, archive: bool) -> Result<Held, CaptureError> {
        let path = file.to_owned();
        let measured = tokio::task::spawn_blocking(move || {
            let opened = std::fs::File::open(&path)?;
            let len = opened.metadata()?.len();
            if len == 0 {
                return Ok((0, archive.then(|| Footprint::of(&[]))));
            }
            // SAFETY: the file is this capture's own, in its scratch directory: nothing else
            // writes it while it is mapped.
            let mapped = unsafe { memmap2::Mmap::map(&opened)? };
            let archive = archive || looks_like_an_archive(&mapped);
            Ok((len, archive.then(|| Footprint::of(&mapped))))
        })
        .await
        .map_err(|panic| CaptureError::Panicked(panic.to_string()))?;
        let (len, footprint) = measured.map_err(CaptureError::Read)?;
        let needed = match &footprint {
            Some(Ok(footprint)) => footprint.peak(),
            _ => len,
        };
        let reserved = self.memory.reserve(needed).await?;
        let bytes = std::fs::read(file).map_err(CaptureError::Read)?;
        Ok(Held { bytes, footprint, _reserved: reserved })
    }

    /// A recursive source: unpack a download and compare NAR hashes, else the binary cache's NAR.
    async fn recursive(&self, capture: &Capture, scratch: &Path, timings: &mut Timings) -> Result<Swhid, CaptureError> {
        let request = &capture.request;
        if request.hash.algo() != HashAlgo::Sha256 {
            return Err(CaptureError::NotSha256 { hash: request.hash.to_sri() });
        }
        let mut tried = Vec::new();
        let expected = request.hash.to_hex();
        for (n, url) in request.urls.iter().filter(|url| is_archive_url(url)).enumerate() {
            let started = Instant::now();
            let file = scratch.join(format!("archive-{n}"));
            let downloaded = {
                let _permit = self.hosts.acquire(Some(url)).await;
                self.fetcher.download_to(url, &file, MAX_PLAIN as u64).await
            };
            timings.download += started.elapsed();
            let held = match downloaded {
                Ok(()) => self.hold(&file, true).await,
                Err(err) => Err(err.into()),
            };
            let _ = std::fs::remove_file(&file);
            let (bytes, footprint, _reserved) = match held {
                Ok(Held { bytes, footprint: Some(Ok(footprint)), _reserved }) => (bytes, footprint, _reserved),
                Ok(Held { footprint: Some(Err(why)), .. }) => {
                    tried.push(format!("{url}: no recipe: {}", error_chain(&why)));
                    continue;
                }
                Ok(Held { footprint: None, .. }) => unreachable!("measured as an archive"),
                Err(err) => {
                    tried.push(error_chain(&err));
                    continue;
                }
            };
            let started = Instant::now();
            let made = recipe_of(bytes, footprint).await;
            timings.compute += started.elapsed();
            let (recipe, bytes, entry) = match made {
                Ok(Ok(made)) => made,
                Ok(Err((why, _))) => {
                    let why = why.map_or_else(|| "no recipe".to_owned(), |e| format!("no recipe: {}", error_chain(&e)));
                    tried.push(format!("{url}: {why}"));
                    continue;
                }
                Err(err) => {
                    tried.push(format!("{url}: {err}"));
                    continue;
                }
            };
            let unpacked = entry.unpacked.clone().expect("an archive's entry has its unpacked tree");
            if unpacked.nar_sha256 != expected {
                tried.push(format!(
                    "{url} unpacks to a tree whose NAR sha256 is {}, not {expected} (a postFetch step changes it?)",
                    unpacked.nar_sha256
                ));
                continue;
            }
            self.store.put(&recipe, &bytes, &entry)?;
            return Ok(unpacked.swhid);
        }
        let started = Instant::now();
        let from_cache = self.tree_from_binary_caches(request).await;
        timings.download += started.elapsed();
        match from_cache {
            Ok(tree) => {
                let entry = BridgeEntry::of_tree(&tree);
                self.store.put_entry(&entry)?;
                Ok(entry.tree)
            }
            Err(more) => {
                tried.extend(more);
                if tried.is_empty() {
                    tried.push("no URL names an archive, and no binary cache has its NAR".into());
                }
                Err(CaptureError::NoTree { tried })
            }
        }
    }

    /// The source's tree from the first binary cache that has its NAR, checked against its NAR
    /// hash; else why each cache asked could not give it (none, when no cache was asked).
    async fn tree_from_binary_caches(&self, request: &SourceRequest) -> Result<Node, Vec<String>> {
        let mut tried = Vec::new();
        let store_path = request.store_path.as_ref().map_or_else(|| "the source".to_owned(), ToString::to_string);
        for cache in &self.fetcher.planner().binary_caches {
            let info = match cache.narinfo(request.store_path.as_ref(), request.narinfo.as_deref()).await {
                Ok(Some(info)) => info,
                Ok(None) => continue,
                Err(err) => {
                    tried.push(error_chain(&err));
                    continue;
                }
            };
            let _reserved = match self.memory.reserve(info.memory_bound()).await {
                Ok(reserved) => reserved,
                Err(err) => {
                    tried.push(error_chain(&err));
                    continue;
                }
            };
            let tree = cache
                .tree(&info)
                .await
                .and_then(|tree| binary_cache::source_of(tree, &request.hash, HashMode::Recursive, &store_path));
            match tree {
                Ok(tree) => return Ok(tree),
                Err(err) => tried.push(error_chain(&err)),
            }
        }
        Err(tried)
    }
}

/// A file's recipe and bridge entry, or, when it is no archive after all, why not and the file
/// back (it is still a plain file).
type Made = Result<(Recipe, Vec<u8>, BridgeEntry), (Option<RecipeError>, Vec<u8>)>;

/// Makes a file's recipe and bridge entry on a blocking thread. The outer error is a panic.
async fn recipe_of(bytes: Vec<u8>, footprint: Footprint) -> Result<Made, CaptureError> {
    let made = tokio::task::spawn_blocking(move || match Recipe::create_measured(&bytes, &footprint) {
        Ok((recipe, tree)) => {
            let entry = BridgeEntry::of(&bytes, &tree, recipe.tree);
            Ok((recipe, bytes, entry))
        }
        Err(e) => Err((Some(e), bytes)),
    });
    made.await.map_err(|panic| CaptureError::Panicked(panic.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_captured_by_hash_mode_and_file_name() {
        let kind = |json: serde_json::Value| Capture::of(&serde_json::from_value(json).unwrap()).map(|c| c.kind);
        use crate::plan::Unaskable;
        let sri = "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=";
        let url = |u: &str, mode: &str| serde_json::json!({"type": "url", "urls": [u], "integrity": sri, "outputHashMode": mode});
        assert_eq!(kind(url("https://x/a-1.tar.gz?download", "flat")), Ok(Kind::Archive));
        assert_eq!(kind(url("https://x/a.whl", "flat")), Ok(Kind::Archive));
        assert_eq!(kind(url("https://x/fix.patch", "flat")), Ok(Kind::Plain));
        assert_eq!(kind(url("https://x/archive/v1.tar.gz", "recursive")), Ok(Kind::Recursive));
        assert_eq!(
            kind(serde_json::json!({"type": "url", "urls": ["https://x/a"]})),
            Err(NotCapturable::Unaskable(Unaskable::NoHash))
        );
        assert_eq!(kind(serde_json::json!({"type": "git", "integrity": sri})), Err(NotCapturable::Vcs));
    }

    #[tokio::test]
    async fn a_capture_waits_for_memory_and_one_larger_than_the_budget_is_refused() {
        let budget = MemoryBudget::new(100);
        let first = budget.reserve(80 << 20).await.unwrap();
        assert_eq!(first.num_permits(), 80);
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), budget.reserve(30 << 20)).await;
        assert!(waiting.is_err(), "two captures went over the budget");
        drop(first);
        assert_eq!(budget.reserve(100 << 20).await.unwrap().num_permits(), 100);
        let refused = budget.reserve((100 << 20) + 1).await.unwrap_err();
        assert_eq!(
            refused.to_string(),
            "capturing needs about 101 MiB of memory, more than the budget of 100 MiB (--memory-budget)"
        );
        assert_eq!(budget.reserve(0).await.unwrap().num_permits(), 1);
    }

    #[test]
    fn archives_are_recognised_by_their_first_bytes() {
        let mut tar = vec![0u8; 512];
        tar[257..263].copy_from_slice(b"ustar\0");
        for archive in [&b"\x1f\x8b\x08\x00"[..], b"\xfd7zXZ\x00\x00", b"BZh91AY", b"PK\x03\x04\x14", &tar] {
            assert!(looks_like_an_archive(archive), "{archive:?}");
        }
        for plain in [&b"--- a/x\n+++ b/x\n"[..], b"", b"PK", &[0u8; 600]] {
            assert!(!looks_like_an_archive(plain), "{plain:?}");
        }
    }
}
