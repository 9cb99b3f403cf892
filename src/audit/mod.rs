//! The audit: for each source of a sources.json, whether Software Heritage has it and whether
//! `fetch` can give it back bit for bit, and why not, in as few API requests as can tell.
//!
//! How a verdict is reached, cheapest first:
//! 1. without a request: a source with no usable hash cannot be told; a verdict cached in the
//!    state database is reused (a recoverable one for good, since the archive keeps what it
//!    has; others for `max_age`, since a recipe or an archiving may come);
//! 2. SWHIDs known in advance go to `/known/`, 1,000 per request: a git commit
//!    (`swh:1:rev:`), and what the bridge index names (the extraction root of an archive with a
//!    recipe, a plain file's content, an unpacked tree);
//! 3. only what is still open is looked up one by one, in the fetcher's order: content by
//!    sha1/sha256, then the `checksum-<algo>` ExtID for a flat hash (and the tree a recipe names,
//!    when no ExtID does), the `nar-<algo>` ExtID for a NAR hash.
//!
//! Verdicts are kept per recipe store (they depend on it). A git commit counts only for a tree
//! taken as committed (no submodules, sparse checkout or postFetch): fetch checks the tree's NAR
//! hash. `/known/` does not tell a content the archive skipped (over 100 MiB) from one it has,
//! so a bridge-index content of that size would be reported recoverable.
//!
//! The verdicts follow what [`crate::fallback::Fetcher`] does with the same store, and
//! `--verify-sample` checks that on real fetches.

pub mod report;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::archive::{ApiError, ArchiveClient};
use crate::fallback::error_chain;
use crate::hashing::Hash;
use crate::loader::state::{State, StateError};
use crate::recipes::store::RecipeStore;
use crate::recipes::{is_content_swhid, is_directory_swhid};
use crate::sources::stats::UrlFacets;
use crate::sources::{Source, SourceType};

/// How a recoverable source comes back.
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

/// One source's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verdict {
    Recoverable {
        how: How,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        swhid: Option<String>,
    },
    ArchivedNotRecoverable {
        why: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        swhid: Option<String>,
    },
    NotArchived,
    CannotTell {
        why: String,
    },
}

impl Verdict {
    /// `recoverable`, `archived_not_recoverable`, `not_archived` or `cannot_tell`.
    pub fn status(&self) -> &'static str {
        match self {
            Verdict::Recoverable { .. } => "recoverable",
            Verdict::ArchivedNotRecoverable { .. } => "archived_not_recoverable",
            Verdict::NotArchived => "not_archived",
            Verdict::CannotTell { .. } => "cannot_tell",
        }
    }

    /// The how or why, for grouping.
    pub fn detail(&self) -> String {
        match self {
            Verdict::Recoverable { how, .. } => {
                serde_json::to_value(how).expect("a how serialises").as_str().unwrap_or("").to_owned()
            }
            Verdict::ArchivedNotRecoverable { why, .. } | Verdict::CannotTell { why } => why.clone(),
            Verdict::NotArchived => String::new(),
        }
    }
}

/// Why a source's archived form cannot be given back.
pub const TARBALL_WITHOUT_RECIPE: &str = "tarball archived unpacked, and no recipe";
pub const CONTENT_SKIPPED: &str = "content skipped by the archive (over 100 MiB)";

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
pub enum AuditError {
    #[error(transparent)]
    State(#[from] StateError),
}

/// What to audit with.
pub struct Auditor<'a> {
    pub archive: &'a ArchiveClient,
    pub store: Option<&'a RecipeStore>,
    pub state: &'a State,
    /// How long a verdict other than recoverable is trusted, in seconds.
    pub max_age: i64,
    /// Told (done, of) as sources are looked up one by one, the slow part.
    pub progress: &'a dyn Fn(usize, usize),
}

/// What one source asks of the archive.
#[derive(Debug, Clone)]
struct Question {
    hash: Hash,
    recursive: bool,
    /// `swh:1:rev:<commit>` for a git source whose tree is the commit's own.
    commit: Option<String>,
}

impl Question {
    fn of(source: &Source) -> Result<Question, String> {
        let integrity = source.integrity.as_deref().ok_or("no hash")?;
        let hash = Hash::parse(integrity, None).map_err(|e| format!("unreadable hash: {e}"))?;
        let vcs = source.kind != SourceType::Url;
        let recursive = match source.output_hash_mode.as_deref() {
            Some("recursive") => true,
            Some("flat") if vcs => return Err("a VCS source with a flat hash".into()),
            None => vcs,
            Some("flat") => false,
            Some(other) => return Err(format!("unknown hash mode {other:?}")),
        };
        // The commit's tree is the source only when nothing was added to or taken from it, as
        // fetch checks by NAR-hashing it.
        let as_committed =
            source.submodule != Some(true) && source.sparse_checkout.is_none() && source.post_fetch.is_none();
        let commit = source.git_commit().filter(|_| as_committed).map(|commit| format!("swh:1:rev:{commit}"));
        Ok(Question { hash, recursive, commit })
    }

    /// The cache key: the recipe store the verdict was reached with, the hash and mode, and the
    /// commit a git tree may come from.
    fn key(&self, store: &str) -> String {
        let mode = if self.recursive { "nar" } else { "flat" };
        let commit = self.commit.as_deref().unwrap_or("-");
        format!("{store}|{mode}:{}|{commit}", self.hash.to_sri())
    }
}

/// A SWHID that, if the archive has it, makes a source recoverable in this way.
struct Candidate {
    swhid: String,
    how: How,
}

impl Auditor<'_> {
    /// Audits every source; `now` in unix seconds. A rate limit that cannot be waited out
    /// leaves the rest as "cannot tell", saying until when.
    pub async fn audit(&self, sources: &[Source], now: i64) -> Result<Vec<Audited>, AuditError> {
        let mut verdicts: Vec<Option<(Verdict, bool)>> = vec![None; sources.len()];
        let mut questions: HashMap<usize, Question> = HashMap::new();
        for (index, source) in sources.iter().enumerate() {
            match Question::of(source) {
                Err(why) => verdicts[index] = Some((Verdict::CannotTell { why }, false)),
                Ok(question) => match self.cached(&question, now)? {
                    Some(verdict) => verdicts[index] = Some((verdict, true)),
                    None => {
                        questions.insert(index, question);
                    }
                },
            }
        }

        // Step 2: what the archive can confirm in bulk.
        let mut candidates: HashMap<usize, Vec<Candidate>> = HashMap::new();
        for (&index, question) in &questions {
            candidates.insert(index, self.candidates(question).await);
        }
        let mut swhids: Vec<String> = candidates.values().flatten().map(|candidate| candidate.swhid.clone()).collect();
        swhids.sort();
        swhids.dedup();
        let mut stopped: Option<String> = None;
        let known = match self.archive.known(&swhids).await {
            Ok(known) => known,
            Err(err) => {
                stopped = Some(error_chain(&err));
                HashMap::new()
            }
        };
        let mut fresh = Vec::new();
        let mut open: Vec<usize> = questions.keys().copied().collect();
        open.sort_unstable();
        let mut still_open = Vec::new();
        for index in open {
            let confirmed = candidates[&index].iter().find(|c| known.get(&c.swhid).copied().unwrap_or(false));
            match confirmed {
                Some(candidate) => {
                    let verdict = Verdict::Recoverable { how: candidate.how, swhid: Some(candidate.swhid.clone()) };
                    fresh.push((questions[&index].key(&self.store_id()), verdict.clone()));
                    verdicts[index] = Some((verdict, false));
                }
                None => still_open.push(index),
            }
        }

        // Step 3: one by one, what nothing else could answer.
        let lookups = still_open.len();
        // Sources that share a hash (and commit) are asked about once.
        let mut answered: HashMap<String, Verdict> = HashMap::new();
        for (done, index) in still_open.into_iter().enumerate() {
            (self.progress)(done, lookups);
            let question = &questions[&index];
            let key = question.key(&self.store_id());
            let verdict = match (&stopped, answered.get(&key)) {
                (_, Some(verdict)) => verdict.clone(),
                (Some(why), None) => Verdict::CannotTell { why: why.clone() },
                (None, None) => match self.look_up(question).await {
                    Ok(verdict) => {
                        fresh.push((key.clone(), verdict.clone()));
                        answered.insert(key, verdict.clone());
                        verdict
                    }
                    // The archive said "not now" or is out of reach (after the client's retries):
                    // asking on would only wait the same way for every source left.
                    Err(
                        err @ (ApiError::RateLimited { .. } | ApiError::Transport { .. } | ApiError::Server { .. }),
                    ) => {
                        let why = error_chain(&err);
                        stopped = Some(why.clone());
                        Verdict::CannotTell { why }
                    }
                    Err(err) => Verdict::CannotTell { why: error_chain(&err) },
                },
            };
            verdicts[index] = Some((verdict, false));
        }
        let encoded: Vec<(String, String)> = fresh
            .iter()
            .map(|(key, verdict)| (key.clone(), serde_json::to_string(verdict).expect("a verdict serialises")))
            .collect();
        self.state.keep_verdicts(&encoded, now)?;

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
                    hash_mode: source.output_hash_mode.clone().unwrap_or_else(|| "unknown".into()),
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

    fn cached(&self, question: &Question, now: i64) -> Result<Option<Verdict>, AuditError> {
        let Some((json, checked_at)) = self.state.verdict(&question.key(&self.store_id()))? else { return Ok(None) };
        let Ok(verdict) = serde_json::from_str::<Verdict>(&json) else { return Ok(None) };
        let fresh = matches!(verdict, Verdict::Recoverable { .. }) || now - checked_at < self.max_age;
        Ok(fresh.then_some(verdict))
    }

    /// Which recipe store verdicts were reached with (they depend on it).
    fn store_id(&self) -> String {
        self.store.map_or_else(|| "no store".to_owned(), RecipeStore::location)
    }

    /// The SWHIDs that would make the source recoverable, from its commit and the bridge index,
    /// by the fetcher's rules: a git source at a commit comes from the commit or not at all; a
    /// NAR hash (sha256) from the directory its entry names; a flat hash from a content its
    /// entry names, or from the directory an archive's recipe rebuilds from.
    async fn candidates(&self, question: &Question) -> Vec<Candidate> {
        if let Some(commit) = &question.commit {
            return vec![Candidate { swhid: commit.clone(), how: How::GitRevision }];
        }
        let Some(store) = self.store else { return Vec::new() };
        let hash = &question.hash;
        let key = match question.recursive {
            true if hash.algo() == crate::hashing::HashAlgo::Sha256 => format!("nar-sha256/{}", hash.to_hex()),
            true => return Vec::new(),
            false => format!("{}/{}", hash.algo().name(), hash.to_hex()),
        };
        // An unreadable entry is as good as none: the lookups below still run.
        let Ok(Some(entry)) = store.bridge(&key).await else { return Vec::new() };
        let (swhid, how) = match (question.recursive, entry.unpacked) {
            (true, Some(unpacked)) if is_directory_swhid(&unpacked.swhid) => (unpacked.swhid, How::BridgeIndex),
            (false, Some(_)) if is_directory_swhid(&entry.tree) && self.has_recipe(hash).await => {
                (entry.tree, How::RecipeAndDirectory)
            }
            (false, None) if is_content_swhid(&entry.tree) => (entry.tree, How::BridgeIndex),
            _ => return Vec::new(),
        };
        vec![Candidate { swhid, how }]
    }

    /// Looks a source up one request at a time, in the fetcher's order (step 3 of the module
    /// docs).
    async fn look_up(&self, question: &Question) -> Result<Verdict, ApiError> {
        let hash = &question.hash;
        let algo = hash.algo().name();
        if question.recursive {
            return match self.archive.extid(&format!("nar-{algo}"), hash.digest()).await {
                Ok(extid) => Ok(Verdict::Recoverable { how: How::NarExtid, swhid: Some(extid.target) }),
                Err(ApiError::NotFound { .. }) => Ok(Verdict::NotArchived),
                Err(err) => Err(err),
            };
        }
        if matches!(algo, "sha1" | "sha256") {
            if let Some(verdict) = self.content(algo, &hash.to_hex()).await? {
                return Ok(verdict);
            }
        }
        let recipe = match self.store {
            Some(store) => store.get(hash).await.ok().flatten(),
            None => None,
        };
        match self.archive.extid(&format!("checksum-{algo}"), hash.digest()).await {
            Ok(extid) if extid.target.starts_with("swh:1:cnt:") => {
                Ok(Verdict::Recoverable { how: How::RawContent, swhid: Some(extid.target) })
            }
            Ok(extid) => Ok(match recipe {
                Some(_) => Verdict::Recoverable { how: How::RecipeAndDirectory, swhid: Some(extid.target) },
                None => {
                    Verdict::ArchivedNotRecoverable { why: TARBALL_WITHOUT_RECIPE.into(), swhid: Some(extid.target) }
                }
            }),
            // No ExtID, but a recipe: the fetcher rebuilds from the tree the recipe names, if
            // the archive has it.
            Err(ApiError::NotFound { .. }) => match recipe {
                Some(recipe) if is_directory_swhid(&recipe.tree) => {
                    let known = self.archive.known(std::slice::from_ref(&recipe.tree)).await?;
                    Ok(match known.get(&recipe.tree).copied().unwrap_or(false) {
                        true => Verdict::Recoverable { how: How::RecipeAndDirectory, swhid: Some(recipe.tree) },
                        false => Verdict::NotArchived,
                    })
                }
                _ => Ok(Verdict::NotArchived),
            },
            Err(err) => Err(err),
        }
    }

    async fn content(&self, algo: &str, hex: &str) -> Result<Option<Verdict>, ApiError> {
        match self.archive.content(algo, hex).await {
            Ok(info) => {
                let swhid = info.checksums.get("sha1_git").map(|id| format!("swh:1:cnt:{id}"));
                Ok(Some(match info.status.as_str() {
                    "visible" => Verdict::Recoverable { how: How::RawContent, swhid },
                    _ => Verdict::ArchivedNotRecoverable { why: CONTENT_SKIPPED.into(), swhid },
                }))
            }
            Err(ApiError::NotFound { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Whether the store has the recipe (a bridge entry is written with it, but an HTTP store
    /// may be mirrored in part).
    async fn has_recipe(&self, hash: &Hash) -> bool {
        match self.store {
            Some(store) => matches!(store.get(hash).await, Ok(Some(_))),
            None => false,
        }
    }
}

/// Fetches `count` recoverable sources, picked at random by `seed`, through the real fetcher, to
/// check that "recoverable" means a fetch succeeds.
pub async fn verify_sample(
    fetcher: &crate::fallback::Fetcher,
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
        let source = &sources[audited.index];
        let question = Question::of(source).expect("a recoverable source has a usable hash");
        let (ok, detail) = match tempfile::tempdir() {
            Err(err) => (false, format!("failed to make a scratch directory: {err}")),
            Ok(scratch) => {
                let commit = question.commit.as_deref().map(|c| c.trim_start_matches("swh:1:rev:"));
                let mode =
                    if question.recursive { crate::fallback::Mode::Recursive } else { crate::fallback::Mode::Flat };
                let request = crate::fallback::FetchRequest {
                    hash: &question.hash,
                    mode,
                    urls: &[],
                    git_commit: commit,
                    hashed_mirrors: &[],
                };
                match fetcher.fetch(&request, &scratch.path().join("out")).await {
                    Ok(report) => (true, report.origin),
                    Err(err) => (false, error_chain(&err)),
                }
            }
        };
        checks.push(report::Verification { index: audited.index, integrity: question.hash.to_sri(), ok, detail });
    }
    checks
}

fn vcs_host(source: &Source) -> String {
    source
        .primary_url()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_owned))
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
pub const TOP_HOSTS: usize = 15;

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
            let status = a.verdict.status();
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
