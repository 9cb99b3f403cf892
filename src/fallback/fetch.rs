use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::binary_cache::{self, BinaryCacheError};
use super::cache::Cache;
use super::vault::{download_flat_bundle, unpack_bundle};
use super::walk::DirectoryWalk;
use crate::archive::{ApiError, ArchiveClient, ContentKey};
use crate::atomic::{Existing, persist, rename_no_replace, staging_dir_beside, temp_file_beside};
use crate::download::{BodyError, BodyLimits, MIN_RATE, Meter};
use crate::error_chain::error_chain;
use crate::hashing::nar::{self, NarWriter};
use crate::hashing::tree::disk::{self, Restorer};
use crate::hashing::tree::memory::{Node, NodeBuilder};
use crate::hashing::tree::{Limits, TreeError};
use crate::hashing::{Hash, HashMode, Hasher, ObjectType, Swhid};
use crate::plan::{
    Finding, Holder, Lookup, LookupError, Plan, Planner, SourceRequest, Target, Unusable, Way, WayKind, ask,
};
use crate::recipes::{MAX_PLAIN, Recipe, RecipeError};

/// Where a fetched source came from, and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReport {
    /// `cache`, `upstream <url>`, `mirror <url>`, `archive <swhid>`, `archive <swhid> + recipe`
    /// or `binary cache <url>`.
    pub origin: String,
    /// The way of the plan that gave it (`None`: the cache, before any plan).
    pub way: Option<WayKind>,
    /// Requests sent to the archive.
    pub archive_requests: u64,
    /// What went otherwise than planned on the way (the vault was unavailable, say).
    pub notes: Vec<String>,
}

/// Why a source could not be fetched; every variant says which step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    #[error("{out} already exists", out = path.display())]
    Exists { path: PathBuf },
    /// Every way of the plan was tried.
    #[error("{0}")]
    NotRecovered(Box<NotRecovered>),
    #[error("{swhid} is listed by the archive but its bytes were skipped (files over 100 MiB are)")]
    Skipped { swhid: Swhid },
    #[error("refusing what {origin} gave for {expected}: it hashes to {actual}")]
    HashMismatch { origin: String, expected: Hash, actual: Hash },
    #[error("failed to ask the archive")]
    Archive(#[from] ApiError),
    #[error("refusing {url}: it is larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("giving up {url}: {received} bytes in {seconds} s, slower than {MIN_RATE} bytes/s")]
    TooSlow { url: String, received: u64, seconds: u64 },
    #[error("failed to download {url}")]
    Download {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("failed to write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to rebuild the tree {swhid}")]
    Tree {
        swhid: Swhid,
        #[source]
        source: TreeError,
    },
    #[error("failed to write the tree {}", path.display())]
    Restore {
        path: PathBuf,
        #[source]
        source: TreeError,
    },
    #[error("{swhid} holds a submodule ({name}), which a NAR cannot")]
    Submodule { swhid: Swhid, name: String },
    #[error("failed to rebuild {hash} from the tree {swhid} and its recipe")]
    Recipe {
        hash: Hash,
        swhid: Swhid,
        #[source]
        source: Box<RecipeError>,
    },
    #[error("the vault could not give the tree ({vault}), and walking it failed")]
    VaultThenWalk {
        vault: String,
        #[source]
        source: Box<FetchError>,
    },
    #[error("failed to use the binary cache")]
    BinaryCache(#[from] BinaryCacheError),
}

impl FetchError {
    /// Whether the error only says that what was asked for is not there.
    fn is_absence(&self) -> bool {
        matches!(
            self,
            FetchError::Archive(ApiError::NotFound { .. })
                | FetchError::BinaryCache(BinaryCacheError::NotCached { .. })
        )
    }

    /// Whether no way has the source (or has it only in an unusable form), as opposed to a way
    /// failing: what a mirror answers 404 rather than 502.
    pub(crate) fn is_not_found(&self) -> bool {
        match self {
            FetchError::NotRecovered(not_recovered) => not_recovered.only_missing(),
            _ => false,
        }
    }
}

impl From<LookupError> for FetchError {
    fn from(err: LookupError) -> FetchError {
        match err {
            LookupError::Archive(err) => FetchError::Archive(err),
            LookupError::BinaryCache(err) => FetchError::BinaryCache(err),
        }
    }
}

/// What each way of a plan came to, when none gave the source.
#[derive(Debug)]
pub struct NotRecovered {
    pub hash: Hash,
    pub attempts: Vec<Attempt>,
    /// What planning could not read (see [`Plan::problems`]).
    pub problems: Vec<String>,
}

/// One way tried.
#[derive(Debug)]
pub struct Attempt {
    pub way: String,
    pub holder: Holder,
    pub miss: Miss,
}

/// Why a way did not give the source.
#[derive(Debug)]
pub enum Miss {
    Absent,
    Unusable(Unusable),
    Failed(FetchError),
    /// Not tried: the archive could not be asked (this says why).
    NotAsked(String),
    /// Not tried: it leads to what an earlier way failed to retrieve.
    Repeats,
}

impl NotRecovered {
    fn only_missing(&self) -> bool {
        self.attempts
            .iter()
            .filter(|attempt| attempt.holder != Holder::Upstream)
            .all(|attempt| matches!(attempt.miss, Miss::Absent | Miss::Unusable(_)))
    }
}

impl fmt::Display for NotRecovered {
    /// What failed first (each failure names where it happened), then what the archive has,
    /// then what the binary caches said.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failures = |holder: Holder| -> Vec<String> {
            self.attempts
                .iter()
                .filter(|attempt| attempt.holder == holder)
                .filter_map(|attempt| match &attempt.miss {
                    Miss::Absent | Miss::Unusable(_) | Miss::Repeats => None,
                    Miss::Failed(err) => Some(error_chain(err)),
                    Miss::NotAsked(why) => Some(format!("{} not asked: {why}", attempt.way)),
                })
                .collect()
        };
        let mut parts = Vec::new();
        let upstream = failures(Holder::Upstream);
        if !upstream.is_empty() {
            parts.push(format!("no upstream URL or mirror gave it ({})", upstream.join("; ")));
        }
        let archive = failures(Holder::Archive);
        let unusable = self.attempts.iter().find_map(|attempt| match &attempt.miss {
            Miss::Unusable(unusable) => Some(unusable),
            _ => None,
        });
        parts.extend(archive.iter().cloned());
        match unusable {
            Some(unusable) => parts.push(format!("{} is {unusable}", self.hash)),
            None if archive.is_empty() => {
                let asked: Vec<&str> = self
                    .attempts
                    .iter()
                    .filter(|attempt| attempt.holder == Holder::Archive)
                    .map(|attempt| attempt.way.as_str())
                    .collect();
                parts.push(format!("{} is not in the archive (asked: {})", self.hash, asked.join(", ")));
            }
            None => {}
        }
        let caches = failures(Holder::BinaryCache);
        if !caches.is_empty() {
            parts.push(format!("no binary cache gave it ({})", caches.join("; ")));
        }
        if !self.problems.is_empty() {
            parts.push(format!("the recipe store could not be read ({})", self.problems.join("; ")));
        }
        f.write_str(&parts.join("; "))
    }
}

/// What trying a plan's ways has found so far.
#[derive(Default)]
struct Walk {
    attempts: Vec<Attempt>,
    /// What the archive has in forms that cannot give the source back.
    unusable: Vec<Unusable>,
    /// Objects whose retrieval failed: a later way leading to one would fail again.
    failed_targets: Vec<Target>,
    /// Why the archive cannot be asked any more, once it cannot.
    unreachable: Option<String>,
    notes: Vec<String>,
}

/// Fetches sources by hash, verifying them before they reach their destination.
pub struct Fetcher {
    archive: Arc<ArchiveClient>,
    planner: Planner,
    http: reqwest::Client,
    cache: Option<Cache>,
    walk_limit: usize,
    vault_poll: Duration,
    /// Bounds on a file's download (see [`write_verified`]).
    download_limits: BodyLimits,
}

/// The largest file a download takes unless told otherwise: more than any source Nixpkgs
/// fetches, and well short of filling a disk.
pub const DEFAULT_MAX_DOWNLOAD: u64 = 8 << 30;

/// Walking a directory costs a request per directory and per file; past this many, the vault's
/// bundle (a few requests whatever the size) is asked for instead. The anonymous rate limit is
/// 120 requests an hour.
pub const DEFAULT_WALK_LIMIT: usize = 64;

/// How long a download from upstream or a mirror may go without a byte before it is given up:
/// a stalled server must not stall a whole load.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

fn upstream_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .build()
        .expect("a client with timeouts builds")
}

impl Fetcher {
    pub fn new(archive: ArchiveClient) -> Fetcher {
        Fetcher {
            archive: Arc::new(archive),
            planner: Planner::default(),
            http: upstream_client(DEFAULT_UPSTREAM_TIMEOUT),
            cache: None,
            walk_limit: DEFAULT_WALK_LIMIT,
            vault_poll: Duration::from_secs(5),
            download_limits: BodyLimits { max_bytes: DEFAULT_MAX_DOWNLOAD, patience: DEFAULT_UPSTREAM_TIMEOUT },
        }
    }

    /// The archive client, shared with whoever needs the API beside fetching (the loader).
    pub fn archive(&self) -> &ArchiveClient {
        &self.archive
    }

    /// What plans are made with: hashed mirrors, the recipe store, binary caches.
    pub(crate) fn planner(&self) -> &Planner {
        &self.planner
    }

    /// Makes plans with `planner`.
    pub(crate) fn with_planner(mut self, planner: Planner) -> Fetcher {
        self.planner = planner;
        self
    }

    /// Gives up a download from upstream or a mirror that goes this long without a byte.
    pub(crate) fn with_upstream_timeout(mut self, timeout: Duration) -> Fetcher {
        self.http = upstream_client(timeout);
        self.download_limits.patience = timeout;
        self
    }

    /// Refuses a file download (upstream, mirror, archive) past this many bytes.
    pub(crate) fn with_max_download(mut self, bytes: u64) -> Fetcher {
        self.download_limits.max_bytes = bytes;
        self
    }

    /// Walks directories through the API only while that costs at most `limit` requests (0:
    /// always ask the vault first).
    pub fn with_walk_limit(mut self, limit: usize) -> Fetcher {
        self.walk_limit = limit;
        self
    }

    /// How long to wait before asking the vault again whether a bundle is cooked (it doubles
    /// each time, up to a minute).
    pub fn with_vault_poll(mut self, poll: Duration) -> Fetcher {
        self.vault_poll = poll;
        self
    }

    /// Looks in `cache` first, and keeps there what it fetches.
    pub fn with_cache(mut self, cache: Cache) -> Fetcher {
        self.cache = Some(cache);
        self
    }

    /// Fetches the requested source to `out`, which must not exist: from the cache, else by
    /// the ways of its plan, in order. Nothing is written to `out` unless it has the requested
    /// hash.
    pub async fn fetch(&self, request: &SourceRequest, out: &Path) -> Result<FetchReport, FetchError> {
        if out.symlink_metadata().is_ok() {
            return Err(FetchError::Exists { path: out.to_owned() });
        }
        let before = self.archive.requests();
        if self.hand_over_cached(&request.hash, request.mode, out)? {
            return Ok(FetchReport { origin: "cache".into(), way: None, archive_requests: 0, notes: Vec::new() });
        }
        let plan = self.planner.plan(request).await;
        let mut walk = Walk::default();
        for way in plan.ways() {
            let miss = match walk.unreachable.clone() {
                Some(why) if way.holder() == Holder::Archive => Miss::NotAsked(why),
                _ => match self.try_way(&plan, way, &mut walk, out).await {
                    Ok(origin) => {
                        if request.mode == HashMode::Flat {
                            self.keep_file(&request.hash, out);
                        }
                        let mut notes = walk.notes;
                        notes.extend(plan.problems.iter().map(|p| format!("the recipe store could not be read: {p}")));
                        let archive_requests = self.archive.requests() - before;
                        return Ok(FetchReport { origin, way: Some(way.kind()), archive_requests, notes });
                    }
                    // The output cannot be written (no such directory, a full disk): no other
                    // way would fare better, and the error is the user's to see, not a miss.
                    Err(Miss::Failed(local @ (FetchError::Write { .. } | FetchError::Restore { .. }))) => {
                        return Err(local);
                    }
                    Err(miss) => miss,
                },
            };
            match &miss {
                Miss::Unusable(why) => walk.unusable.push(why.clone()),
                Miss::Failed(FetchError::Archive(err)) if err.is_unreachable() => {
                    walk.unreachable = Some(error_chain(err));
                }
                _ => {}
            }
            walk.attempts.push(Attempt { way: way.describe(), holder: way.holder(), miss });
        }
        let not_recovered =
            NotRecovered { hash: request.hash.clone(), attempts: walk.attempts, problems: plan.problems.clone() };
        Err(FetchError::NotRecovered(Box::new(not_recovered)))
    }

    /// Tries one way of `plan`: its lookup, then the retrieval of what it found. Returns where
    /// the source came from, or why the way did not give it.
    async fn try_way(&self, plan: &Plan, way: &Way, walk: &mut Walk, out: &Path) -> Result<String, Miss> {
        let finding = match way.lookup() {
            // Retrieving the object answers whether the archive has it, in the same request.
            None | Some(Lookup::Known(_)) => way.target().map_or(Finding::Absent, Finding::Found),
            Some(lookup) => match ask(&self.archive, way, &lookup, &plan.request).await {
                Ok(answer) => plan.judge(way, answer, &walk.unusable),
                Err(err) => return Err(Miss::Failed(err.into())),
            },
        };
        // A content an ExtID names is there unless the archive skipped it: retrieving it tells.
        let (target, skipped_if_absent) = match finding {
            Finding::Found(target) => (target, None),
            Finding::FoundIfKept(content) => (Target::Content(content), Some(content)),
            Finding::Absent => return Err(Miss::Absent),
            Finding::Unusable(why) => return Err(Miss::Unusable(why)),
        };
        // Another way led to the same object, and it failed: it would fail again.
        if walk.failed_targets.contains(&target) {
            return Err(Miss::Repeats);
        }
        match self.retrieve(plan, way, &target, out, &mut walk.notes).await {
            Ok(origin) => Ok(origin),
            Err(err) if err.is_absence() => match skipped_if_absent {
                Some(content) => Err(Miss::Unusable(Unusable::Skipped(content))),
                None => Err(Miss::Absent),
            },
            Err(err) => {
                walk.failed_targets.push(target);
                Err(Miss::Failed(err))
            }
        }
    }

    /// Gets what `target` names to `out`, verified; returns where it came from.
    async fn retrieve(
        &self,
        plan: &Plan,
        way: &Way,
        target: &Target,
        out: &Path,
        notes: &mut Vec<String>,
    ) -> Result<String, FetchError> {
        let hash = &plan.request.hash;
        if let Way::BridgedContent(swhid) | Way::BridgedTree(swhid) = way {
            // The index is untrusted: it only says where to look, and what is there is verified.
            notes.push(format!("the bridge index leads to {swhid}"));
        }
        match (target, plan.request.mode) {
            (Target::Url(url), _) => {
                let label = if matches!(way, Way::HashedMirror(_)) { "mirror" } else { "upstream" };
                self.flat_from_url(hash, url, out).await?;
                Ok(format!("{label} {url}"))
            }
            (Target::Content(swhid), HashMode::Flat) => {
                // Downloaded by the key it was found by, as the archive indexes it.
                let key = match way {
                    Way::ContentByHash(key) => key.clone(),
                    _ => ContentKey::of_swhid(swhid).expect("a content target is a content"),
                };
                let response = self.archive.content_raw(&key).await?;
                write_verified(response, hash, &format!("archive {swhid}"), out, self.download_limits).await?;
                Ok(format!("archive {swhid}"))
            }
            (Target::Content(swhid) | Target::Tree(swhid), HashMode::Recursive)
                if swhid.object_type == ObjectType::Content =>
            {
                self.lone_file_to(swhid, hash, out).await?;
                Ok(format!("archive {swhid}"))
            }
            (Target::Tree(swhid), HashMode::Recursive) => {
                self.directory_to(swhid, hash, out, notes).await?;
                Ok(format!("archive {swhid}"))
            }
            (Target::Commit(commit), HashMode::Recursive) => {
                let revision = self.archive.revision(commit).await?;
                let root = revision.directory_swhid().ok_or_else(|| ApiError::NotFound {
                    what: format!("the root directory of {commit} (the archive named `{}`)", revision.directory),
                })?;
                self.directory_to(&root, hash, out, notes).await?;
                Ok(format!("archive {root}"))
            }
            (Target::Rebuilt(tree), HashMode::Flat) => {
                let recipe = plan.recipe().expect("a plan rebuilds only with its recipe");
                self.file_from_recipe(recipe, tree, hash, out).await
            }
            (Target::Nar(info), mode) => {
                let Way::BinaryCache(cache) = way else { unreachable!("only a binary cache's way names a NAR") };
                let store_path =
                    plan.request.store_path.as_ref().map_or_else(|| "the source".to_owned(), |p| p.to_string());
                let tree = binary_cache::source_of(cache.tree(info).await?, hash, mode, &store_path)?;
                match (mode, &tree) {
                    (HashMode::Flat, Node::File { contents, .. }) => write_file(contents, out)?,
                    _ => {
                        write_tree(&tree, out)?;
                        self.keep_tree(hash, &tree);
                    }
                }
                Ok(format!("binary cache {}", cache.root()))
            }
            (target, mode) => unreachable!("a plan for a {mode} hash names no {target:?}"),
        }
    }

    /// Hands over a cached copy, verified again: a file by its hash, a tree by restoring its NAR
    /// against the hash.
    fn hand_over_cached(&self, hash: &Hash, mode: HashMode, out: &Path) -> Result<bool, FetchError> {
        let Some(bytes) = self.cache.as_ref().and_then(|cache| cache.get(hash, mode)) else { return Ok(false) };
        match mode {
            HashMode::Flat => {
                let mut hasher = hash.algo().hasher();
                hasher.update(&bytes);
                if hasher.finish() != *hash {
                    return Ok(false);
                }
                write_file(&bytes, out)?;
            }
            HashMode::Recursive => {
                if nar::restore(&bytes[..], out, Some(hash), Limits::default()).is_err() {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Downloads `url` into `out` (which must not exist) without verifying it, for callers that
    /// verify what they make of it (the NAR hash of an unpacked archive, say); within the
    /// download limits, and at most `limit` bytes.
    pub(crate) async fn download_to(&self, url: &str, out: &Path, limit: u64) -> Result<(), FetchError> {
        let download = |source| FetchError::Download { url: url.to_owned(), source };
        let response = self.http.get(url).send().await.and_then(|r| r.error_for_status()).map_err(download)?;
        let limits = BodyLimits { max_bytes: limit.min(self.download_limits.max_bytes), ..self.download_limits };
        let temp = stream_to_temp(response, url, out, limits, |_| {}).await?;
        persist(temp, out, Existing::Refuse).map_err(|source| FetchError::Write { path: out.to_owned(), source })
    }

    /// Stores a fetched file in the cache; a cache that cannot be written is no reason to fail.
    fn keep_file(&self, hash: &Hash, out: &Path) {
        let Some(cache) = &self.cache else { return };
        warn_unkept(hash, std::fs::File::open(out).and_then(|file| cache.put(hash, HashMode::Flat, file)));
    }

    /// Stores a fetched tree's NAR in the cache, from the tree still in memory.
    fn keep_tree(&self, hash: &Hash, tree: &Node) {
        let Some(cache) = &self.cache else { return };
        let mut bytes = Vec::new();
        let serialised = NarWriter::new(&mut bytes).and_then(|mut writer| tree.visit(&mut writer));
        warn_unkept(
            hash,
            serialised.map_err(std::io::Error::other).and_then(|()| cache.put(hash, HashMode::Recursive, &bytes[..])),
        );
    }

    async fn flat_from_url(&self, hash: &Hash, url: &str, out: &Path) -> Result<(), FetchError> {
        let download = |source| FetchError::Download { url: url.to_owned(), source };
        let response = self.http.get(url).send().await.and_then(|r| r.error_for_status()).map_err(download)?;
        write_verified(response, hash, &format!("upstream {url}"), out, self.download_limits).await
    }

    /// Rebuilds a tarball from the tree its recipe names, fetched from the archive.
    async fn file_from_recipe(
        &self,
        recipe: &Recipe,
        tree: &Swhid,
        hash: &Hash,
        out: &Path,
    ) -> Result<String, FetchError> {
        let node = self.directory_node(tree).await?;
        let origin = format!("archive {tree} + recipe");
        let (recipe, swhid) = (recipe.clone(), *tree);
        let built = tokio::task::spawn_blocking(move || recipe.apply(&node));
        let applied =
            built.await.unwrap_or_else(|panic| Err(RecipeError::Damaged(format!("applying it panicked: {panic}"))));
        let bytes =
            applied.map_err(|source| FetchError::Recipe { hash: hash.clone(), swhid, source: Box::new(source) })?;
        // The recipe checked its own sha256; the request may name another algorithm.
        let mut hasher = hash.algo().hasher();
        hasher.update(&bytes);
        let actual = hasher.finish();
        if actual != *hash {
            return Err(FetchError::HashMismatch { origin, expected: hash.clone(), actual });
        }
        write_file(&bytes, out)?;
        Ok(origin)
    }

    /// A directory of the archive in memory: walked while small, else from the vault.
    async fn directory_node(&self, swhid: &Swhid) -> Result<Node, FetchError> {
        let limits = Limits { max_bytes: MAX_PLAIN as u64, ..Limits::default() };
        let mut walk = DirectoryWalk::new(*swhid, limits);
        if walk.list(&self.archive, self.walk_limit).await? {
            return walk.download(&self.archive).await;
        }
        let scratch = tempfile::tempdir().map_err(|source| FetchError::Write { path: std::env::temp_dir(), source })?;
        let unpacked = scratch.path().join("tree");
        match self.tree_from_vault(swhid, None, &unpacked).await {
            Ok(()) => {
                let mut builder = NodeBuilder::new();
                disk::walk(&unpacked, &disk::WalkOptions::nix(), &mut builder)
                    .map_err(|source| FetchError::Tree { swhid: *swhid, source })?;
                Ok(builder.finish().expect("a walked directory is a tree"))
            }
            Err(err) if vault_failure_to_walk_around(&err) => {
                walk.list(&self.archive, usize::MAX).await?;
                walk.download(&self.archive).await
            }
            Err(err) => Err(err),
        }
    }

    /// A tree that is a lone file: the NAR says whether it is executable, the archive does not,
    /// so both are tried.
    async fn lone_file_to(&self, swhid: &Swhid, hash: &Hash, out: &Path) -> Result<(), FetchError> {
        let key = ContentKey::of_swhid(swhid).expect("a lone file is a content");
        let contents = self.archive.content_raw(&key).await?;
        let contents =
            contents.bytes().await.map_err(|source| FetchError::Download { url: swhid.to_string(), source })?;
        let candidates = [false, true].map(|executable| Node::File { executable, contents: contents.to_vec() });
        let mut first_actual = None;
        for node in candidates {
            let actual = node.nar_hash(hash.algo());
            if actual == *hash {
                write_tree(&node, out)?;
                self.keep_tree(hash, &node);
                return Ok(());
            }
            first_actual.get_or_insert(actual);
        }
        let actual = first_actual.expect("there is at least one candidate");
        Err(FetchError::HashMismatch { origin: format!("archive {swhid}"), expected: hash.clone(), actual })
    }

    /// A directory: walked through the API while it is small, else from the vault's bundle (a
    /// few requests whatever its size), and walked after all if the vault cannot give it.
    async fn directory_to(
        &self,
        swhid: &Swhid,
        hash: &Hash,
        out: &Path,
        notes: &mut Vec<String>,
    ) -> Result<(), FetchError> {
        let mut walk = DirectoryWalk::new(*swhid, Limits::default());
        if !walk.list(&self.archive, self.walk_limit).await? {
            let why = match self.tree_from_vault(swhid, Some(hash), out).await {
                Err(err) if vault_failure_to_walk_around(&err) => error_chain(&err),
                other => return other,
            };
            notes.push(format!("the vault could not give {swhid} ({why}); walked it instead"));
            let walked = match walk.list(&self.archive, usize::MAX).await {
                Ok(_) => walk.download(&self.archive).await,
                Err(err) => Err(err),
            };
            let tree = walked.map_err(|source| FetchError::VaultThenWalk { vault: why, source: Box::new(source) })?;
            return self.verify_and_write(tree, swhid, hash, out);
        }
        let tree = walk.download(&self.archive).await?;
        self.verify_and_write(tree, swhid, hash, out)
    }

    fn verify_and_write(&self, tree: Node, swhid: &Swhid, hash: &Hash, out: &Path) -> Result<(), FetchError> {
        let actual = tree.nar_hash(hash.algo());
        if actual != *hash {
            return Err(FetchError::HashMismatch {
                origin: format!("archive {swhid}"),
                expected: hash.clone(),
                actual,
            });
        }
        write_tree(&tree, out)?;
        self.keep_tree(hash, &tree);
        Ok(())
    }

    /// Cooks the directory's flat bundle in the vault, downloads it beside `out`, and unpacks it
    /// there, checking its NAR hash, before renaming it to `out`.
    /// With no `hash`, the tree is unpacked unchecked (for a recipe, which checks what it builds).
    async fn tree_from_vault(&self, swhid: &Swhid, hash: Option<&Hash>, out: &Path) -> Result<(), FetchError> {
        let (staging, bundle) = download_flat_bundle(&self.archive, swhid, self.vault_poll, out).await?;
        let (swhid, expected, out) = (*swhid, hash.cloned(), out.to_owned());
        let unpacked = tokio::task::spawn_blocking(move || {
            unpack_bundle(&bundle, &staging.path().join("tree"), &swhid, expected.as_ref(), &out)?;
            Ok::<_, FetchError>(out)
        });
        let out = unpacked.await.expect("unpacking a bundle does not panic")?;
        if let (Some(cache), Some(hash)) = (&self.cache, hash) {
            warn_unkept(
                hash,
                cache.put_with(hash, HashMode::Recursive, |w| nar::dump_path(&out, w).map_err(std::io::Error::other)),
            );
        }
        Ok(())
    }
}

/// Whether a walk through the API may still give what the vault could not: yes when the vault
/// failed or its bundle broke off, no when the archive asked to slow down or the tree is bad.
fn vault_failure_to_walk_around(err: &FetchError) -> bool {
    match err {
        FetchError::Archive(err) => !matches!(err, ApiError::RateLimited { .. }),
        FetchError::Download { .. } => true,
        _ => false,
    }
}

fn warn_unkept(hash: &Hash, stored: std::io::Result<()>) {
    if let Err(err) = stored {
        eprintln!("warning: failed to keep {hash} in the cache: {err}");
    }
}

/// Streams `response` into a temporary file beside `out`, hashing as it goes, and renames it to
/// `out` only if the hash is the expected one (see [`stream_to_temp`] for the bounds).
async fn write_verified(
    response: reqwest::Response,
    expected: &Hash,
    origin: &str,
    out: &Path,
    limits: BodyLimits,
) -> Result<(), FetchError> {
    let mut hasher: Hasher = expected.algo().hasher();
    let temp = stream_to_temp(response, origin, out, limits, |chunk| hasher.update(chunk)).await?;
    let actual = hasher.finish();
    if actual != *expected {
        return Err(FetchError::HashMismatch { origin: origin.to_owned(), expected: expected.clone(), actual });
    }
    persist(temp, out, Existing::Refuse).map_err(|source| FetchError::Write { path: out.to_owned(), source })
}

/// Streams `response` into a temporary file beside `out`, showing each chunk to `each`. Refused
/// as soon as it passes `limits.max_bytes` (or the length the server announced), or, once
/// `limits.patience` has passed, when it has averaged less than [`MIN_RATE`]; the temporary file
/// goes with the refusal.
async fn stream_to_temp(
    mut response: reqwest::Response,
    origin: &str,
    out: &Path,
    limits: BodyLimits,
    mut each: impl FnMut(&[u8]),
) -> Result<tempfile::NamedTempFile, FetchError> {
    let write_error = |source| FetchError::Write { path: out.to_owned(), source };
    let body_error = |err| match err {
        BodyError::TooLarge { limit } => FetchError::TooLarge { url: origin.to_owned(), limit },
        BodyError::TooSlow { received, seconds } => FetchError::TooSlow { url: origin.to_owned(), received, seconds },
        BodyError::Transport(source) => FetchError::Download { url: origin.to_owned(), source },
    };
    let mut meter = Meter::start(&response, limits).map_err(body_error)?;
    let mut temp = temp_file_beside(out).map_err(write_error)?;
    while let Some(chunk) = meter.chunk(&mut response).await.map_err(body_error)? {
        each(&chunk);
        temp.write_all(&chunk).map_err(write_error)?;
    }
    Ok(temp)
}

/// Writes verified bytes to `out`, which must not exist.
fn write_file(bytes: &[u8], out: &Path) -> Result<(), FetchError> {
    crate::atomic::write(out, bytes, Existing::Refuse)
        .map_err(|source| FetchError::Write { path: out.to_owned(), source })
}

/// Restores `node` beside `out` and renames it into place.
pub(super) fn write_tree(node: &Node, out: &Path) -> Result<(), FetchError> {
    let staging = staging_dir_beside(out).map_err(|source| FetchError::Write { path: out.to_owned(), source })?;
    let staged = staging.path().join("tree");
    node.visit(&mut Restorer::new(&staged)).map_err(|source| FetchError::Restore { path: out.to_owned(), source })?;
    rename_no_replace(&staged, out).map_err(|source| FetchError::Write { path: out.to_owned(), source })?;
    Ok(())
}
