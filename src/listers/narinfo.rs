//! What binary caches know of a listing's sources. nixpkgs-swh's post-processing adds each
//! source's narinfo (cache.nixos.org's) and the narinfo's `Last-Modified`; SWH's nixguix lister
//! (2025 onwards) then archives a source that has one from the cache's NAR, which outlives
//! upstream, instead of from its URLs.
//!
//! Quirks of that lister (swh.lister 7.4.0) that shape what is written here:
//! - an entry of type `url` with no `urls` is skipped before its narinfo is looked at, so a fixed
//!   output with no URL of its own (vendored cargo, Go or npm dependencies) is listed with the
//!   NAR's URL as its one URL: the lister then makes the NAR its origin, a `tarball-directory`
//!   visit with the `nar` checksum layout;
//! - the origin is the lister's own cache root (`nixos_cache_url`) joined to the narinfo's
//!   `URL`, whichever cache the narinfo came from;
//! - SWH's loaders unpack `.nar`, `.nar.xz` and `.nar.bz2`, not `.nar.zst`.
//!
//! A cache that cannot be reached (offline, blocked, down) would otherwise cost a timeout per
//! source, hours on a whole Nixpkgs: after a few failures in a row it is no longer asked.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::StreamExt;

use super::normalise::UrlLess;
use crate::error_chain::error_chain;
use crate::fallback::binary_cache::{BinaryCache, BinaryCacheError, NarinfoDocument};
use crate::sources::{Source, SourceType, SourcesFile};
use crate::store::StorePath;

/// Narinfo lookups at once.
const CONCURRENT_LOOKUPS: usize = 32;
/// Lookup errors kept for the summary (the rest are only counted).
const KEPT_ERRORS: usize = 20;
/// Failures in a row (no answer between them) after which a cache is no longer asked.
pub const GIVE_UP_AFTER: usize = 8;

/// What the lookups found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NarinfoSummary {
    /// Store paths asked about.
    pub asked: usize,
    /// Sources that got a narinfo.
    pub found: usize,
    /// URL-less outputs listed because a cache has their NAR.
    pub url_less_listed: usize,
    /// Lookups that failed (not "not cached"): how many, and the first few.
    pub failures: usize,
    pub errors: Vec<String>,
    /// Caches no longer asked after failing again and again.
    pub given_up: Vec<url::Url>,
}

/// A cache, and how many of its lookups in a row have failed.
struct Asked<'a> {
    cache: &'a BinaryCache,
    failures_in_a_row: AtomicUsize,
}

impl Asked<'_> {
    fn given_up(&self) -> bool {
        self.failures_in_a_row.load(Ordering::Relaxed) >= GIVE_UP_AFTER
    }
}

/// Adds to each source of `file` that has a store path and no narinfo yet the narinfo of the
/// first of `caches` that has it, and lists the `url_less` outputs a cache has. `progress` is
/// told how many lookups are done, of how many.
pub async fn annotate(
    file: &mut SourcesFile,
    url_less: &[UrlLess],
    caches: &[BinaryCache],
    progress: &(dyn Fn(usize, usize) + Sync),
) -> NarinfoSummary {
    /// Whom a lookup is for: a source of the file (by index), or a URL-less output.
    enum For<'a> {
        Source(usize),
        UrlLess(&'a UrlLess),
    }
    let sources =
        file.sources.iter().enumerate().filter(|(_, source)| source.narinfo.is_none()).filter_map(|(index, source)| {
            Some((For::Source(index), StorePath::parse(source.nix_store_path.as_deref()?).ok()?))
        });
    let outputs = url_less
        .iter()
        .filter_map(|output| Some((For::UrlLess(output), StorePath::parse(output.store_path.as_deref()?).ok()?)));
    let wanted: Vec<(For, StorePath)> = sources.chain(outputs).collect();
    let total = wanted.len();
    let mut summary = NarinfoSummary { asked: total, ..NarinfoSummary::default() };
    let asked: Vec<Asked> =
        caches.iter().map(|cache| Asked { cache, failures_in_a_row: AtomicUsize::new(0) }).collect();
    let asked = &asked;
    let mut lookups = futures_util::stream::iter(wanted)
        .map(|(whom, path)| async move { (whom, lookup(asked, &path).await) })
        .buffer_unordered(CONCURRENT_LOOKUPS);
    progress(0, total);
    let (mut done, mut listed) = (0, Vec::new());
    while let Some((whom, found)) = lookups.next().await {
        done += 1;
        progress(done, total);
        match (found, whom) {
            (Ok(Some(document)), For::Source(index)) => {
                summary.found += 1;
                let source = &mut file.sources[index];
                source.narinfo = Some(document.text);
                source.last_modified = document.last_modified;
            }
            (Ok(Some(document)), For::UrlLess(output)) => listed.push(url_less_source(output, document)),
            (Ok(None), _) => {}
            (Err(err), _) => {
                summary.failures += 1;
                if summary.errors.len() < KEPT_ERRORS {
                    summary.errors.push(err);
                }
            }
        }
    }
    drop(lookups);
    summary.given_up = asked.iter().filter(|a| a.given_up()).map(|a| a.cache.root().clone()).collect();
    summary.url_less_listed = listed.len();
    file.sources.extend(listed);
    file.sources.sort_by(|a, b| a.nix_store_path.cmp(&b.nix_store_path));
    summary
}

/// The narinfo of the first cache that has `path` (`None`: none has it); an error only if no
/// cache has it and one of them could not be asked (or was given up).
async fn lookup(caches: &[Asked<'_>], path: &StorePath) -> Result<Option<NarinfoDocument>, String> {
    let mut failure = None;
    for asked in caches {
        if asked.given_up() {
            failure.get_or_insert_with(|| {
                format!("{} no longer asked: it failed {GIVE_UP_AFTER} times in a row", asked.cache.root())
            });
            continue;
        }
        let answer = asked.cache.narinfo_document(path).await;
        let answered = !matches!(answer, Err(BinaryCacheError::Download { .. }));
        match answered {
            true => asked.failures_in_a_row.store(0, Ordering::Relaxed),
            false => _ = asked.failures_in_a_row.fetch_add(1, Ordering::Relaxed),
        }
        match answer {
            Ok(document) => return Ok(Some(document)),
            Err(BinaryCacheError::NotCached { .. }) => {}
            Err(err) => {
                failure.get_or_insert_with(|| error_chain(&err));
            }
        }
    }
    failure.map_or(Ok(None), Err)
}

/// The entry of a URL-less output a cache has: its NAR's URL is the only place it can come from.
fn url_less_source(output: &UrlLess, document: NarinfoDocument) -> Source {
    let mut source = Source::new(SourceType::Url, &output.hash, output.mode);
    source.urls = Some(vec![document.nar_url.to_string()]);
    source.nix_store_path = output.store_path.clone();
    source.narinfo = Some(document.text);
    source.last_modified = document.last_modified;
    source
}
