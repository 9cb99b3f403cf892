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

use super::binary_cache::{self, BinaryCache};
use crate::fallback::{FetchRequest, Fetcher, Mode, error_chain};
use crate::hashing::tree::memory::Node;
use crate::hashing::{Hash, HashAlgo};
use crate::recipes::bridge::BridgeEntry;
use crate::recipes::store::RecipeStore;
use crate::recipes::{MAX_PLAIN, Recipe};
use crate::sources::{Source, SourceType};

/// File names of the archives recipes are made for.
const ARCHIVE_SUFFIXES: [&str; 13] = [
    ".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tbz", ".zip", ".whl", ".jar", ".crate",
    ".tar.Z",
];

/// What a downloadable source is, for capturing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Flat hash, an archive's name: recipe and bridge entry.
    Archive,
    /// Flat hash, any other file: content id (or recipe, if it turns out to be an archive).
    Plain,
    /// NAR hash: the tree's SWHID.
    Recursive,
}

/// A source to capture.
#[derive(Debug, Clone)]
pub struct Capture {
    pub kind: Kind,
    pub hash: Hash,
    pub urls: Vec<String>,
}

impl Capture {
    /// The capture a `url` source calls for, or why it has none.
    pub fn of(source: &Source) -> Result<Capture, &'static str> {
        if source.kind != SourceType::Url {
            return Err("a VCS source");
        }
        let integrity = source.integrity.as_deref().ok_or("no hash")?;
        let hash = Hash::parse(integrity, None).map_err(|_| "unreadable hash")?;
        let urls = source.urls.clone().unwrap_or_default();
        let kind = match source.output_hash_mode.as_deref() {
            Some("recursive") => Kind::Recursive,
            Some("flat") | None if urls.iter().any(|url| is_archive_url(url)) => Kind::Archive,
            Some("flat") | None => Kind::Plain,
            Some(_) => return Err("unknown hash mode"),
        };
        Ok(Capture { kind, hash, urls })
    }

    /// Where a finished capture is found in the recipe store's bridge index.
    pub fn bridge_key(&self) -> String {
        match self.kind {
            Kind::Recursive => format!("nar-{}/{}", self.hash.algo().name(), self.hash.to_hex()),
            Kind::Archive | Kind::Plain => format!("{}/{}", self.hash.algo().name(), self.hash.to_hex()),
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
pub struct HostLimits {
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl HostLimits {
    pub fn new(per_host: usize) -> HostLimits {
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

/// Memory that captures may hold at once, counted in MiB: making a recipe holds the file, its
/// unpacked tree and rebuilt copies, so a capture reserves [`MEMORY_PER_BYTE`] times its file's
/// size (at most the whole budget, so that a huge file runs alone rather than never).
pub struct MemoryBudget {
    mib: u32,
    semaphore: Arc<Semaphore>,
}

/// How much memory a capture is reckoned to need per byte of its file.
const MEMORY_PER_BYTE: u64 = 8;

impl MemoryBudget {
    pub fn new(mib: u32) -> MemoryBudget {
        let mib = mib.max(1);
        MemoryBudget { mib, semaphore: Arc::new(Semaphore::new(mib as usize)) }
    }

    async fn reserve(&self, file_size: u64) -> Option<OwnedSemaphorePermit> {
        let needed = (file_size * MEMORY_PER_BYTE).div_ceil(1 << 20).clamp(1, u64::from(self.mib));
        self.semaphore.clone().acquire_many_owned(needed as u32).await.ok()
    }
}

/// Time spent on one capture, waiting for bytes and computing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    pub download: Duration,
    pub compute: Duration,
}

/// What capturing needs.
pub struct Capturer<'a> {
    pub fetcher: &'a Fetcher,
    pub store: &'a RecipeStore,
    pub hashed_mirrors: &'a [String],
    pub binary_caches: &'a [BinaryCache],
    pub hosts: &'a HostLimits,
    pub memory: &'a MemoryBudget,
}

impl Capturer<'_> {
    /// Captures one source; returns the SWHID recorded (what SWH archives) or why not.
    pub async fn capture(
        &self,
        capture: &Capture,
        source: &Source,
        scratch: &Path,
        timings: &mut Timings,
    ) -> Result<String, String> {
        match capture.kind {
            Kind::Archive | Kind::Plain => {
                let (bytes, _reserved) = self.flat_bytes(capture, source, scratch, timings).await?;
                let started = Instant::now();
                // A URL need not say what it serves (crates.io's end in `/download`): a plain
                // file that turns out to be an archive gets a recipe too.
                let archive = capture.kind == Kind::Archive || looks_like_an_archive(&bytes);
                let made = if archive { recipe_of(bytes).await? } else { Err((String::new(), bytes)) };
                let stored = match made {
                    Ok((recipe, bytes, entry)) => {
                        self.store.put(&recipe, &bytes, &entry).map_err(|e| error_chain(&e))?;
                        Ok(recipe.tree)
                    }
                    // A compressed single file (`.patch.gz`) starts like an archive and is not
                    // one: it is a plain file after all.
                    Err((why, _)) if capture.kind == Kind::Archive => Err(why),
                    Err((_, bytes)) => {
                        let entry = BridgeEntry::of_content(&bytes);
                        self.store.put_entry(&entry).map_err(|e| error_chain(&e)).map(|()| entry.tree)
                    }
                };
                timings.compute += started.elapsed();
                stored
            }
            Kind::Recursive => self.recursive(capture, source, timings).await,
        }
    }

    /// A flat-hashed file's verified bytes: URLs, hashed mirrors, archive, then binary caches.
    async fn flat_bytes(
        &self,
        capture: &Capture,
        source: &Source,
        scratch: &Path,
        timings: &mut Timings,
    ) -> Result<(Vec<u8>, Option<OwnedSemaphorePermit>), String> {
        let file = scratch.join("file");
        let request = FetchRequest {
            hash: &capture.hash,
            mode: Mode::Flat,
            urls: &capture.urls,
            git_commit: None,
            hashed_mirrors: self.hashed_mirrors,
        };
        let started = Instant::now();
        let fetched = {
            let _permit = self.hosts.acquire(capture.urls.first()).await;
            self.fetcher.fetch(&request, &file).await
        };
        let result = match fetched {
            Ok(_) => {
                // Reserved before the file is read in: it stays on disk until memory allows.
                let size = std::fs::metadata(&file).map_or(0, |m| m.len());
                let reserved = self.memory.reserve(size).await;
                std::fs::read(&file).map(|bytes| (bytes, reserved)).map_err(|e| error_chain(&e))
            }
            Err(err) => {
                let why = error_chain(&err);
                match self.nar_from_binary_caches(source).await {
                    Ok(tree) => binary_cache::flat_file(tree, &capture.hash).map(|bytes| (bytes, None)),
                    Err(more) if more.is_empty() => Err(why),
                    Err(more) => Err(format!("{why}; {more}")),
                }
            }
        };
        timings.download += started.elapsed();
        result
    }

    /// A recursive source: unpack a download and compare NAR hashes, else the binary cache's NAR.
    async fn recursive(&self, capture: &Capture, source: &Source, timings: &mut Timings) -> Result<String, String> {
        let mut tried = Vec::new();
        if capture.hash.algo() != HashAlgo::Sha256 {
            return Err(format!("{}: only sha256 NAR hashes are bridged", capture.hash.to_sri()));
        }
        let expected = capture.hash.to_hex();
        for url in capture.urls.iter().filter(|url| is_archive_url(url)) {
            let started = Instant::now();
            let downloaded = {
                let _permit = self.hosts.acquire(Some(url)).await;
                self.fetcher.download(url, MAX_PLAIN as u64).await
            };
            timings.download += started.elapsed();
            let bytes = match downloaded {
                Ok(bytes) => bytes,
                Err(err) => {
                    tried.push(error_chain(&err));
                    continue;
                }
            };
            let started = Instant::now();
            let made = recipe_of(bytes).await;
            timings.compute += started.elapsed();
            let (recipe, bytes, entry) = match made {
                Ok(Ok(made)) => made,
                Ok(Err((why, _))) | Err(why) => {
                    tried.push(format!("{url}: {why}"));
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
            self.store.put(&recipe, &bytes, &entry).map_err(|e| error_chain(&e))?;
            return Ok(unpacked.swhid);
        }
        let started = Instant::now();
        let from_cache = self.nar_from_binary_caches(source).await;
        timings.download += started.elapsed();
        match from_cache.and_then(|tree| binary_cache::recursive_tree(tree, &capture.hash)) {
            Ok(tree) => {
                let entry = BridgeEntry::of_tree(&tree);
                self.store.put_entry(&entry).map_err(|e| error_chain(&e))?;
                Ok(entry.tree)
            }
            Err(why) => {
                tried.extend(Some(why).filter(|why| !why.is_empty()));
                if tried.is_empty() {
                    tried.push("no URL names an archive, and no binary cache has its NAR".into());
                }
                Err(tried.join("; "))
            }
        }
    }

    /// The source's NAR from the first binary cache that has it; an empty error when no cache
    /// was asked (none configured, or the entry names no store path).
    async fn nar_from_binary_caches(&self, source: &Source) -> Result<Node, String> {
        let mut tried = Vec::new();
        for cache in self.binary_caches {
            let info = match cache.narinfo(self.fetcher, source).await {
                Ok(Some(info)) => info,
                Ok(None) => continue,
                Err(err) => {
                    tried.push(error_chain(&err));
                    continue;
                }
            };
            match cache.tree(self.fetcher, &info).await {
                Ok(tree) => return Ok(tree),
                Err(err) => tried.push(error_chain(&err)),
            }
        }
        Err(tried.join("; "))
    }
}

/// Makes a file's recipe and bridge entry on a blocking thread; the file comes back either way
/// (a file that is no archive after all is still a plain file). The outer error is a panic.
async fn recipe_of(bytes: Vec<u8>) -> Result<Result<(Recipe, Vec<u8>, BridgeEntry), (String, Vec<u8>)>, String> {
    blocking(move || match Recipe::create(&bytes) {
        Ok((recipe, tree)) => {
            let entry = BridgeEntry::of(&bytes, &tree, &recipe.tree);
            Ok(Ok((recipe, bytes, entry)))
        }
        Err(e) => Ok(Err((format!("no recipe: {}", error_chain(&e)), bytes))),
    })
    .await
}

/// Runs CPU-bound work off the async threads; a panic is an error, not a crash.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|panic| Err(format!("capturing panicked: {panic}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_captured_by_hash_mode_and_file_name() {
        let kind = |json: serde_json::Value| Capture::of(&serde_json::from_value(json).unwrap()).map(|c| c.kind);
        let sri = "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=";
        let url = |u: &str, mode: &str| serde_json::json!({"type": "url", "urls": [u], "integrity": sri, "outputHashMode": mode});
        assert_eq!(kind(url("https://x/a-1.tar.gz?download", "flat")), Ok(Kind::Archive));
        assert_eq!(kind(url("https://x/a.whl", "flat")), Ok(Kind::Archive));
        assert_eq!(kind(url("https://x/fix.patch", "flat")), Ok(Kind::Plain));
        assert_eq!(kind(url("https://x/archive/v1.tar.gz", "recursive")), Ok(Kind::Recursive));
        assert_eq!(kind(serde_json::json!({"type": "url", "urls": ["https://x/a"]})), Err("no hash"));
        assert_eq!(kind(serde_json::json!({"type": "git", "integrity": sri})), Err("a VCS source"));
    }

    #[tokio::test]
    async fn a_capture_waits_for_memory_and_a_huge_one_runs_alone() {
        let budget = MemoryBudget::new(100);
        // 10 MiB reckoned at 80 MiB: a second one must wait for the first.
        let first = budget.reserve(10 << 20).await.unwrap();
        assert_eq!(first.num_permits(), 80);
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), budget.reserve(10 << 20)).await;
        assert!(waiting.is_err(), "two captures went over the budget");
        drop(first);
        // Larger than the whole budget: it gets all of it, not never.
        let huge = budget.reserve(1 << 40).await.unwrap();
        assert_eq!(huge.num_permits(), 100);
        drop(huge);
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
