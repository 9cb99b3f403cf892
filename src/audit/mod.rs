//! The audit: for each source of a sources.json, whether Software Heritage has it and whether
//! `fetch` can give it back bit for bit, and why not, in as few API requests as can tell.
//!
//! A verdict answers the lookups of the source's [`Plan`], the same plan `fetch` executes, and
//! nothing else: the first of the archive's ways whose lookup says it can give the source makes
//! it recoverable (and says how); with none, a way that found it in an unusable form makes it
//! archived but not recoverable, and a binary cache's way makes it recoverable only from a
//! binary cache (kept apart: the audit is about the archive). Upstream URLs are not asked.
//!
//! How the lookups are answered, cheapest first:
//! 1. without a request: a source that cannot be asked for (no hash, say) cannot be told; a
//!    verdict cached for the same plan is reused (a recoverable one for good, since the archive
//!    keeps what it has; others for `max_age`). A plan's key names what its ways were made of,
//!    so a recipe or bridge entry added since makes a new plan, asked afresh;
//! 2. every plan puts first the ways whose object is named in advance (a bridged content, a
//!    recipe's tree, a git commit, a bridged tree): their SWHIDs go to `/known/` in bulk, 1,000
//!    a request, and a known one settles its source;
//! 3. only then are the other ways' lookups asked, one request each, in the plan's order, and
//!    only for plans still open; plans alike (sources sharing a hash) are asked about once;
//! 4. a rate limit or an unreachable archive stops the lookups: what is left cannot be told
//!    because of the archive, which leaves the audit unfinished.
//!
//! A content an ExtID names is checked with `/known/`, which says no for a content the archive
//! skipped (over 100 MiB; the API answers 404 for it, and lists it in directories as `absent`).
//! A tree's contents are not walked, so a tree holding a skipped file is reported recoverable
//! though `fetch` fails on it. `--verify-sample` fetches a sample through the real fetcher.

pub mod report;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::archive::ArchiveClient;
use crate::error_chain::error_chain;
use crate::fallback::Fetcher;
use crate::hashing::Swhid;
use crate::plan::{Answer, Finding, Holder, Lookup, Plan, Planner, SourceRequest, Target, Unusable, WayKind, ask};
use crate::sources::stats::UrlFacets;
use crate::sources::{Clipped, Source};
use crate::state::{State, StateError};

/// How a recoverable source comes back, in the report's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum How {
    /// The file is a content of the archive.
    RawContent,
    /// A `nar-<algo>` ExtID names the tree.
    NarExtid,
    /// The bridge index names the content or tree, and the archive has it.
    BridgeIndex,
    /// The archive has the tarball's tree, and the store its recipe.
    RecipeAndDirectory,
    /// The archive has the git commit, whose tree is the source.
    GitRevision,
}

impl How {
    /// How a source given back by a way of `kind` is described (`None` for the ways that are
    /// not the archive's).
    pub(crate) fn of(kind: WayKind) -> Option<How> {
        match kind {
            WayKind::ContentByHash | WayKind::ChecksumExtId => Some(How::RawContent),
            WayKind::NarExtId => Some(How::NarExtid),
            WayKind::BridgedContent | WayKind::BridgedTree => Some(How::BridgeIndex),
            WayKind::RecipeTree => Some(How::RecipeAndDirectory),
            WayKind::GitCommit => Some(How::GitRevision),
            WayKind::Upstream | WayKind::HashedMirror | WayKind::BinaryCache => None,
        }
    }
}

/// Why a source cannot be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unasked {
    /// The source itself cannot be asked for (no hash, an unknown hash mode).
    Input,
    /// The archive could not be asked (a rate limit, an outage): the audit is unfinished.
    Archive,
}

/// A verdict's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Status {
    Recoverable,
    BinaryCacheOnly,
    ArchivedNotRecoverable,
    NotArchived,
    CannotTell,
}

impl Status {
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Status::Recoverable => "recoverable",
            Status::BinaryCacheOnly => "binary_cache_only",
            Status::ArchivedNotRecoverable => "archived_not_recoverable",
            Status::NotArchived => "not_archived",
            Status::CannotTell => "cannot_tell",
        }
    }
}

/// One source's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verdict {
    /// The archive gives it back, by the first way of its plan that can.
    Recoverable {
        how: How,
        way: WayKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        swhid: Option<Swhid>,
    },
    /// Not from the archive (`why`: what the archive has of it), but a binary cache has it.
    BinaryCacheOnly {
        why: String,
        cache: String,
    },
    ArchivedNotRecoverable {
        why: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        swhid: Option<Swhid>,
    },
    NotArchived,
    CannotTell {
        why: String,
        because: Unasked,
    },
}

impl Verdict {
    pub(crate) fn status(&self) -> Status {
        match self {
            Verdict::Recoverable { .. } => Status::Recoverable,
            Verdict::BinaryCacheOnly { .. } => Status::BinaryCacheOnly,
            Verdict::ArchivedNotRecoverable { .. } => Status::ArchivedNotRecoverable,
            Verdict::NotArchived => Status::NotArchived,
            Verdict::CannotTell { .. } => Status::CannotTell,
        }
    }

    /// The how or why, for grouping.
    pub(crate) fn detail(&self) -> String {
        match self {
            Verdict::Recoverable { how, .. } => {
                serde_json::to_value(how).expect("a how serialises").as_str().unwrap_or("").to_owned()
            }
            // Clipped: a map key of the report, and a why can quote an entry's megabytes.
            Verdict::ArchivedNotRecoverable { why, .. }
            | Verdict::CannotTell { why, .. }
            | Verdict::BinaryCacheOnly { why, .. } => Clipped(why).to_string(),
            Verdict::NotArchived => String::new(),
        }
    }

    /// Whether the archive could not be asked about the source: an audit with such a verdict
    /// is unfinished (it is no baseline for the next, and it fails).
    pub fn is_unfinished(&self) -> bool {
        matches!(self, Verdict::CannotTell { because: Unasked::Archive, .. })
    }

    /// Whether the verdict may be kept for the next audit: only what the archive answered.
    fn is_answer(&self) -> bool {
        !matches!(self, Verdict::CannotTell { .. })
    }
}

/// Why an archived form cannot give a source back, as the verdict says it.
fn why_unusable(unusable: &Unusable) -> (&'static str, Swhid) {
    match unusable {
        Unusable::TarballWithoutRecipe(swhid) => ("tarball archived unpacked, and no recipe", *swhid),
        Unusable::Skipped(swhid) => ("content skipped by the archive (over 100 MiB)", *swhid),
    }
}

/// One audited source.
#[derive(Debug, Clone, Serialize)]
pub struct Audited {
    pub index: usize,
    pub kind: String,
    pub hash_mode: String,
    /// File type (url sources) or the VCS.
    pub file_type: String,
    pub host: String,
    pub integrity: Option<String>,
    pub url: Option<String>,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Whether the verdict came from the state database's cache.
    pub cached: bool,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error(transparent)]
    State(#[from] StateError),
}

/// Fresh verdicts are written to the state at least this often, and every so many.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);
const CHECKPOINT_VERDICTS: usize = 100;

/// What to audit with.
pub struct Auditor<'a> {
    pub archive: &'a ArchiveClient,
    /// Makes the plans: the recipe store and binary caches the audit counts on.
    pub planner: &'a Planner,
    pub state: &'a State,
    /// How long a verdict other than recoverable is trusted, in seconds.
    pub max_age: i64,
    /// Told (done, of) as sources are looked up one by one, the slow part.
    pub progress: &'a dyn Fn(usize, usize),
}

impl Auditor<'_> {
    /// Audits every source; `now` in unix seconds. A rate limit that cannot be waited out
    /// leaves the rest as "cannot tell", saying until when.
    pub async fn audit(&self, sources: &[Source], now: i64) -> Result<Vec<Audited>, AuditError> {
        let mut verdicts: Vec<Option<(Verdict, bool)>> = vec![None; sources.len()];
        // Plans still open, by key: sources whose plans are alike are asked about once.
        let mut open: BTreeMap<String, (Plan, Vec<usize>)> = BTreeMap::new();
        for (index, source) in sources.iter().enumerate() {
            let request = match SourceRequest::of_source(source) {
                Ok(request) => request,
                Err(why) => {
                    verdicts[index] =
                        Some((Verdict::CannotTell { why: why.to_string(), because: Unasked::Input }, false));
                    continue;
                }
            };
            let plan = self.planner.plan(&request).await;
            let key = plan.audit_key();
            match self.cached(&key, now)? {
                Some(verdict) => verdicts[index] = Some((verdict, true)),
                None => open.entry(key).or_insert_with(|| (plan, Vec::new())).1.push(index),
            }
        }

        // The archive's objects named in advance, in bulk.
        let mut named: Vec<Swhid> = open
            .values()
            .flat_map(|(plan, _)| plan.ways().iter().filter(|way| way.holder() == Holder::Archive))
            .filter_map(|way| match way.lookup() {
                Some(Lookup::Known(swhid)) => Some(swhid),
                _ => None,
            })
            .collect();
        named.sort();
        named.dedup();
        let mut stopped: Option<String> = None;
        let known = match self.archive.known(&named).await {
            Ok(known) => known,
            Err(err) => {
                stopped = Some(error_chain(&err));
                HashMap::new()
            }
        };

        // Plans the bulk answer settles first, then the others one lookup at a time.
        let (settled, rest): (Vec<_>, Vec<_>) = open.into_iter().partition(|(_, (plan, _))| {
            plan.ways()
                .iter()
                .any(|way| matches!(way.lookup(), Some(Lookup::Known(swhid)) if known.get(&swhid) == Some(&true)))
        });
        let mut fresh = Vec::new();
        let mut kept_at = Instant::now();
        let lookups = rest.len();
        let in_order = settled
            .into_iter()
            .map(|plan| (None, plan))
            .chain(rest.into_iter().enumerate().map(|(done, plan)| (Some(done), plan)));
        for (done, (key, (plan, indexes))) in in_order {
            if let Some(done) = done {
                (self.progress)(done, lookups);
            }
            let verdict = self.walk(&plan, &known, &mut stopped).await;
            if verdict.is_answer() {
                fresh.push((key, verdict.clone()));
            }
            for index in indexes {
                verdicts[index] = Some((verdict.clone(), false));
            }
            // Kept as the audit goes, so that a run killed midway loses at most a few seconds'
            // requests: the next run finds the rest cached.
            if fresh.len() >= CHECKPOINT_VERDICTS || kept_at.elapsed() >= CHECKPOINT_INTERVAL {
                self.state.keep_verdicts(&fresh, now)?;
                fresh.clear();
                kept_at = Instant::now();
            }
        }
        self.state.keep_verdicts(&fresh, now)?;

        Ok(sources
            .iter()
            .zip(verdicts)
            .enumerate()
            .map(|(index, (source, verdict))| {
                let (verdict, cached) = verdict.expect("every source has a verdict");
                let facets = UrlFacets::of(source);
                Audited {
                    index,
                    kind: source.kind.name().to_owned(),
                    // Clipped: a map key of the report, and an entry can hold megabytes.
                    hash_mode: Clipped(source.output_hash_mode.as_deref().unwrap_or("unknown")).to_string(),
                    file_type: facets
                        .as_ref()
                        .map_or_else(|| source.kind.name().to_owned(), |f| f.file_type.to_owned()),
                    host: facets.map(|f| f.host).unwrap_or_else(|| vcs_host(source)),
                    integrity: source.integrity.clone(),
                    url: source.primary_url().map(str::to_owned),
                    verdict,
                    cached,
                }
            })
            .collect())
    }

    /// Answers the plan's lookups in order until a way gives the source (see the module docs).
    async fn walk(&self, plan: &Plan, known: &HashMap<Swhid, bool>, stopped: &mut Option<String>) -> Verdict {
        let cannot_tell = |why: &str| Verdict::CannotTell { why: why.to_owned(), because: Unasked::Archive };
        let mut unusable = Vec::new();
        for way in plan.ways().iter().filter(|way| way.holder() == Holder::Archive) {
            let answer = match (way.lookup(), stopped.as_deref()) {
                (Some(Lookup::Known(swhid)), None) => Answer::Known(known.get(&swhid).copied().unwrap_or(false)),
                (Some(_), Some(why)) => return cannot_tell(why),
                (Some(lookup), None) => match ask(self.archive, way, &lookup, &plan.request).await {
                    Ok(answer) => answer,
                    Err(err) => {
                        let why = error_chain(&err);
                        // Asking on would only wait the same way for every source left.
                        if err.archive_unreachable() {
                            *stopped = Some(why.clone());
                        }
                        return cannot_tell(&why);
                    }
                },
                (None, _) => continue,
            };
            let recoverable = |swhid| {
                let how = How::of(way.kind()).expect("an archive's way has a how");
                Verdict::Recoverable { how, way: way.kind(), swhid }
            };
            match plan.judge(way, answer, &unusable) {
                Finding::Found(target) => return recoverable(target_swhid(&target)),
                Finding::FoundIfKept(content) => {
                    let kept = match self.archive.known(std::slice::from_ref(&content)).await {
                        Ok(known) => known.get(&content).copied().unwrap_or(false),
                        Err(err) => {
                            let why = error_chain(&err);
                            if err.is_unreachable() {
                                *stopped = Some(why.clone());
                            }
                            return cannot_tell(&why);
                        }
                    };
                    match kept {
                        true => return recoverable(Some(content)),
                        false => unusable.push(Unusable::Skipped(content)),
                    }
                }
                Finding::Absent => {}
                Finding::Unusable(why) => unusable.push(why),
            }
        }
        let archived = match unusable.first().map(why_unusable) {
            Some((why, swhid)) => Verdict::ArchivedNotRecoverable { why: why.to_owned(), swhid: Some(swhid) },
            None => Verdict::NotArchived,
        };
        for way in plan.ways().iter().filter(|way| way.holder() == Holder::BinaryCache) {
            let Some(lookup) = way.lookup() else { continue };
            // A cache that cannot be asked leaves the archive's verdict as it is.
            let Ok(answer) = ask(self.archive, way, &lookup, &plan.request).await else { continue };
            if let Finding::Found(_) = plan.judge(way, answer, &unusable) {
                let why = match &archived {
                    Verdict::ArchivedNotRecoverable { why, .. } => why.clone(),
                    _ => "not archived".to_owned(),
                };
                return Verdict::BinaryCacheOnly { why, cache: way.describe() };
            }
        }
        archived
    }

    fn cached(&self, key: &str, now: i64) -> Result<Option<Verdict>, AuditError> {
        let Some((verdict, checked_at)) = self.state.verdict::<Verdict>(key)? else { return Ok(None) };
        let fresh = matches!(verdict, Verdict::Recoverable { .. }) || now - checked_at < self.max_age;
        Ok(fresh.then_some(verdict))
    }
}

fn target_swhid(target: &Target) -> Option<Swhid> {
    match target {
        Target::Content(swhid) | Target::Tree(swhid) | Target::Commit(swhid) | Target::Rebuilt(swhid) => Some(*swhid),
        Target::Url(_) | Target::Nar(_) => None,
    }
}

/// Fetches `count` recoverable sources, picked at random by `seed`, through `fetcher` (which
/// should use no cache, hashed mirror or binary cache: the sample checks the archive), to check
/// that "recoverable" means a fetch succeeds, by the way the audit said.
pub async fn verify_sample(
    fetcher: &Fetcher,
    sources: &[Source],
    audited: &[Audited],
    count: usize,
    seed: u64,
) -> Vec<report::Verification> {
    let mut recoverable: Vec<&Audited> =
        audited.iter().filter(|a| matches!(a.verdict, Verdict::Recoverable { .. })).collect();
    // A xorshift shuffle: reproducible from the seed, and no dependency for it.
    let mut state = seed | 1;
    for i in (1..recoverable.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        recoverable.swap(i, (state % (i as u64 + 1)) as usize);
    }
    let mut checks = Vec::new();
    for audited in recoverable.into_iter().take(count) {
        let mut request =
            SourceRequest::of_source(&sources[audited.index]).expect("a recoverable source can be asked for");
        request.urls.clear();
        let (ok, detail) = match tempfile::tempdir() {
            Err(err) => (false, format!("failed to make a scratch directory: {err}")),
            Ok(scratch) => match fetcher.fetch(&request, &scratch.path().join("out")).await {
                Ok(report) => (true, report.origin),
                Err(err) => (false, error_chain(&err)),
            },
        };
        checks.push(report::Verification { index: audited.index, integrity: request.hash.to_sri(), ok, detail });
    }
    checks
}

fn vcs_host(source: &Source) -> String {
    source
        .primary_url()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(|host| Clipped(host).to_string()))
        .unwrap_or_default()
}

/// Counts of verdicts, overall and by facet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub sources: usize,
    pub by_status: BTreeMap<String, usize>,
    /// Recoverable sources by how, and the others by why.
    pub by_detail: BTreeMap<String, BTreeMap<String, usize>>,
    /// Facet (`type`, `hash_mode`, `file_type`, `host`) → value → status → count.
    pub by_facet: BTreeMap<String, BTreeMap<String, BTreeMap<String, usize>>>,
    /// Verdicts reused from the cache.
    pub cached: usize,
}

/// How many hosts the summary keeps (the rest are counted as `other hosts`).
pub(crate) const TOP_HOSTS: usize = 15;

impl Summary {
    pub fn of(audited: &[Audited]) -> Summary {
        let mut summary = Summary { sources: audited.len(), ..Summary::default() };
        let mut host_totals: BTreeMap<&str, usize> = BTreeMap::new();
        for a in audited {
            *host_totals.entry(&a.host).or_default() += 1;
        }
        let mut ranked: Vec<(&str, usize)> = host_totals.into_iter().collect();
        ranked.sort_by(|(a, x), (b, y)| y.cmp(x).then(a.cmp(b)));
        let top: std::collections::HashSet<&str> = ranked.iter().take(TOP_HOSTS).map(|(h, _)| *h).collect();
        for a in audited {
            let status = a.verdict.status().name();
            *summary.by_status.entry(status.to_owned()).or_default() += 1;
            let detail = a.verdict.detail();
            if !detail.is_empty() {
                *summary.by_detail.entry(status.to_owned()).or_default().entry(detail).or_default() += 1;
            }
            let host = if top.contains(a.host.as_str()) { a.host.clone() } else { "other hosts".to_owned() };
            for (facet, value) in
                [("type", &a.kind), ("hash_mode", &a.hash_mode), ("file_type", &a.file_type), ("host", &host)]
            {
                let counts = summary.by_facet.entry(facet.to_owned()).or_default().entry(value.clone()).or_default();
                *counts.entry(status.to_owned()).or_default() += 1;
            }
            summary.cached += usize::from(a.cached);
        }
        summary
    }
}
