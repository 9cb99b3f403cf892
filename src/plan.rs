//! The recovery plan: for a requested source, the ordered ways it can be given back, and the one
//! lookup each way needs to tell whether it can. This is the one place that decides which ways a
//! source has and in which order they are tried: `fetch` (and so `prefetch`, `serve` and `load`)
//! executes a plan, and `audit` only answers its lookups, so the two cannot disagree.
//!
//! The order, within what a request allows:
//! 1. the source's own URLs, then hashed mirrors (flat hashes only: a NAR hash names what some
//!    fetcher made of a download, not the download);
//! 2. the archive, first the ways whose object is named in advance (so that an audit can confirm
//!    them in bulk, 1,000 SWHIDs a request): a content the bridge index names, the tree a
//!    recipe rebuilds a tarball from, a git commit's tree, a tree the bridge index names by NAR
//!    hash; then the ways that need a lookup of their own: a content by its hash (sha1, sha256),
//!    the `checksum-<algo>` ExtID (a content, or the unpacked tree of a tarball), the
//!    `nar-<algo>` ExtID;
//! 3. Nix binary caches, whose NAR of the store path holds the source.
//!
//! A way either gives the source, finds nothing, or finds it unusable (a content the archive
//! skipped, a tarball kept only unpacked with no recipe); only when no way gives it does an
//! unusable finding become the verdict. Every way's result is verified by whoever executes it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::archive::model::{ContentInfo, ContentStatus};
use crate::archive::{ApiError, ArchiveClient, ContentKey, ExtIdKind};
use crate::error_chain::error_chain;
use crate::fallback::binary_cache::{BinaryCache, BinaryCacheError, NarInfo};
use crate::hashing::{Hash, HashAlgo, HashMode, HashParseError, ObjectType, Swhid, UnknownHashMode};
use crate::recipes::Recipe;
use crate::recipes::bridge::BridgeKey;
use crate::recipes::store::RecipeStore;
use crate::sources::{Source, SourceType};
use crate::store::StorePath;

/// A source to give back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRequest {
    pub hash: Hash,
    pub mode: HashMode,
    /// Where it was downloaded from.
    pub urls: Vec<String>,
    /// A git commit (`swh:1:rev:`) whose tree, as committed, is the source.
    pub git_commit: Option<Swhid>,
    /// Its store path, under which binary caches keep it.
    pub store_path: Option<StorePath>,
    /// A binary cache's narinfo for it, as sources.json may carry it.
    pub narinfo: Option<String>,
}

/// Why a source of a sources.json cannot be asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unaskable {
    #[error("no hash")]
    NoHash,
    #[error("unreadable hash: {0}")]
    UnreadableHash(#[from] HashParseError),
    #[error("a VCS source with a flat hash")]
    FlatVcs,
    #[error("{0}")]
    UnknownHashMode(#[from] UnknownHashMode),
}

impl SourceRequest {
    /// The request for a hash alone.
    pub fn of_hash(hash: Hash, mode: HashMode) -> SourceRequest {
        SourceRequest { hash, mode, urls: Vec::new(), git_commit: None, store_path: None, narinfo: None }
    }

    /// The request for a source of a sources.json.
    pub fn of_source(source: &Source) -> Result<SourceRequest, Unaskable> {
        let hash = Hash::parse(source.integrity.as_deref().ok_or(Unaskable::NoHash)?, None)?;
        let vcs = source.kind != SourceType::Url;
        let mode = match source.output_hash_mode.as_deref().map(str::parse).transpose()? {
            Some(HashMode::Flat) if vcs => return Err(Unaskable::FlatVcs),
            Some(mode) => mode,
            None if vcs => HashMode::Recursive,
            None => HashMode::Flat,
        };
        let git_commit = source
            .git_commit()
            .filter(|_| {
                as_committed(
                    source.submodule == Some(true),
                    source.sparse_checkout.is_some(),
                    source.post_fetch.is_some(),
                )
            })
            .and_then(|commit| Swhid::from_hex(ObjectType::Revision, commit).ok());
        // A malformed store path is as good as none: it only names where binary caches look.
        let store_path = match source.nix_store_path.as_deref() {
            Some(path) => StorePath::parse(path).ok(),
            None => source.store_name().and_then(|name| StorePath::fixed_output(name, &hash, mode).ok()),
        };
        Ok(SourceRequest {
            hash,
            mode,
            urls: if vcs { Vec::new() } else { source.urls.clone().unwrap_or_default() },
            git_commit,
            store_path,
            narinfo: source.narinfo.clone(),
        })
    }
}

/// Whether a git checkout is its commit's tree as committed: nothing added (submodules), taken
/// away (a sparse checkout) or changed (a postFetch step). Only then can the commit give it.
pub(crate) fn as_committed(submodules: bool, sparse_checkout: bool, post_fetch: bool) -> bool {
    !submodules && !sparse_checkout && !post_fetch
}

/// One way a source can come back.
#[derive(Debug, Clone)]
pub(crate) enum Way {
    /// The source's own URL.
    Upstream(String),
    /// A hashed mirror, asked as `<mirror>/<algo>/<hex>`.
    HashedMirror(String),
    /// A content of the archive, named by the bridge index (a plain file `load` captured).
    BridgedContent(Swhid),
    /// The tarball rebuilt by its recipe from the tree it names.
    RecipeTree(Arc<Recipe>),
    /// The tree of a git commit.
    GitCommit(Swhid),
    /// A directory of the archive, named by the bridge index for this NAR hash.
    BridgedTree(Swhid),
    /// A content found by its own hash (the archive indexes sha1 and sha256).
    ContentByHash(ContentKey),
    /// What the `checksum-<algo>` ExtID names: the file as a content, or a tarball's unpacked
    /// tree, which needs a recipe.
    ChecksumExtId,
    /// What the `nar-<algo>` ExtID names: the tree (or a lone file).
    NarExtId,
    /// The NAR of the source's store path in a Nix binary cache.
    BinaryCache(BinaryCache),
}

/// A way without what it names: how reports say which way gave a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WayKind {
    Upstream,
    HashedMirror,
    BridgedContent,
    RecipeTree,
    GitCommit,
    BridgedTree,
    ContentByHash,
    ChecksumExtId,
    NarExtId,
    BinaryCache,
}

/// Who holds what a way gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Holder {
    Upstream,
    Archive,
    BinaryCache,
}

/// The one question a way asks before it can give anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Does the archive have this object? (`/known/`, asked in bulk.)
    Known(Swhid),
    /// A content's metadata, by hash.
    Content(ContentKey),
    /// The target of an ExtID.
    ExtId(ExtIdKind),
    /// A binary cache's narinfo for the store path.
    Narinfo,
}

/// The answer to a way's lookup.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    Known(bool),
    Content(Option<ContentInfo>),
    ExtId(Option<Swhid>),
    Narinfo(Option<NarInfo>),
}

/// What a way found, once its lookup is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finding {
    /// It gives the source, from this.
    Found(Target),
    /// It gives the source from this content if the archive kept the content's bytes: an ExtID
    /// may name a content the archive skipped (over 100 MiB), which `/known/` says it lacks and
    /// the API answers 404 for.
    FoundIfKept(Swhid),
    /// It has nothing.
    Absent,
    /// It has the source in a form that cannot give it back.
    Unusable(Unusable),
}

/// What a way retrieves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// Bytes at a URL (upstream, a hashed mirror).
    Url(String),
    /// A content's bytes: the file, or a lone file's NAR.
    Content(Swhid),
    /// A directory, or a content for a tree that is a lone file.
    Tree(Swhid),
    /// The root directory of a commit.
    Commit(Swhid),
    /// A tarball, rebuilt by the plan's recipe from the tree it names.
    Rebuilt(Swhid),
    /// The NAR a narinfo names.
    Nar(NarInfo),
}

/// Why what the archive has cannot give the source back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unusable {
    #[error(
        "archived only as the unpacked directory {0}: the exact file (a tarball) cannot be rebuilt from it without a recipe"
    )]
    TarballWithoutRecipe(Swhid),
    #[error("archived as {0}, but its bytes were skipped (files over 100 MiB are)")]
    Skipped(Swhid),
}

impl Way {
    pub(crate) fn kind(&self) -> WayKind {
        match self {
            Way::Upstream(_) => WayKind::Upstream,
            Way::HashedMirror(_) => WayKind::HashedMirror,
            Way::BridgedContent(_) => WayKind::BridgedContent,
            Way::RecipeTree(_) => WayKind::RecipeTree,
            Way::GitCommit(_) => WayKind::GitCommit,
            Way::BridgedTree(_) => WayKind::BridgedTree,
            Way::ContentByHash(_) => WayKind::ContentByHash,
            Way::ChecksumExtId => WayKind::ChecksumExtId,
            Way::NarExtId => WayKind::NarExtId,
            Way::BinaryCache(_) => WayKind::BinaryCache,
        }
    }

    pub(crate) fn holder(&self) -> Holder {
        match self {
            Way::Upstream(_) | Way::HashedMirror(_) => Holder::Upstream,
            Way::BinaryCache(_) => Holder::BinaryCache,
            _ => Holder::Archive,
        }
    }

    /// The lookup that tells whether the way can give anything (`None`: only trying tells).
    pub(crate) fn lookup(&self) -> Option<Lookup> {
        match self {
            Way::Upstream(_) | Way::HashedMirror(_) => None,
            Way::BridgedContent(swhid) | Way::GitCommit(swhid) | Way::BridgedTree(swhid) => Some(Lookup::Known(*swhid)),
            Way::RecipeTree(recipe) => Some(Lookup::Known(recipe.tree)),
            Way::ContentByHash(key) => Some(Lookup::Content(key.clone())),
            Way::ChecksumExtId => Some(Lookup::ExtId(ExtIdKind::Checksum)),
            Way::NarExtId => Some(Lookup::ExtId(ExtIdKind::Nar)),
            Way::BinaryCache(_) => Some(Lookup::Narinfo),
        }
    }

    /// What retrieving needs, when the way has no lookup or its lookup is taken as answered yes.
    pub(crate) fn target(&self) -> Option<Target> {
        match self {
            Way::Upstream(url) | Way::HashedMirror(url) => Some(Target::Url(url.clone())),
            Way::BridgedContent(swhid) => Some(Target::Content(*swhid)),
            Way::RecipeTree(recipe) => Some(Target::Rebuilt(recipe.tree)),
            Way::GitCommit(swhid) => Some(Target::Commit(*swhid)),
            Way::BridgedTree(swhid) => Some(Target::Tree(*swhid)),
            Way::ContentByHash(_) | Way::ChecksumExtId | Way::NarExtId | Way::BinaryCache(_) => None,
        }
    }

    /// A short, stable name of the way, as reports and audit keys spell it.
    pub(crate) fn describe(&self) -> String {
        match self {
            Way::Upstream(url) => format!("upstream {url}"),
            Way::HashedMirror(url) => format!("mirror {url}"),
            Way::BridgedContent(swhid) => format!("bridged content {swhid}"),
            Way::RecipeTree(recipe) => format!("recipe from {}", recipe.tree),
            Way::GitCommit(swhid) => format!("commit {swhid}"),
            Way::BridgedTree(swhid) => format!("bridged tree {swhid}"),
            Way::ContentByHash(key) => format!("content {key}"),
            Way::ChecksumExtId => "checksum ExtID".into(),
            Way::NarExtId => "NAR ExtID".into(),
            Way::BinaryCache(cache) => format!("binary cache {}", cache.root()),
        }
    }
}

/// The ways of one request, in the order they are tried.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub request: SourceRequest,
    ways: Vec<Way>,
    recipe: Option<Arc<Recipe>>,
    /// What could not be read while planning (a recipe store that failed): the ways it would
    /// have given are missing.
    pub problems: Vec<String>,
}

impl Plan {
    pub(crate) fn ways(&self) -> &[Way] {
        &self.ways
    }

    /// The recipe that rebuilds the requested file, if the store has one.
    pub(crate) fn recipe(&self) -> Option<&Arc<Recipe>> {
        self.recipe.as_ref()
    }

    /// What `way` found, given the answer to its lookup. `earlier` holds what earlier ways of
    /// the plan found unusable: a later way that leads to the same object is no better.
    pub(crate) fn judge(&self, way: &Way, answer: Answer, earlier: &[Unusable]) -> Finding {
        let finding = match (way, answer) {
            (_, Answer::Known(false) | Answer::Content(None) | Answer::ExtId(None) | Answer::Narinfo(None)) => {
                Finding::Absent
            }
            (Way::ContentByHash(_), Answer::Content(Some(info))) => {
                let Some(swhid) = info.swhid() else { return Finding::Absent };
                match info.status {
                    ContentStatus::Visible => Finding::Found(Target::Content(swhid)),
                    ContentStatus::Absent | ContentStatus::Hidden => Finding::Unusable(Unusable::Skipped(swhid)),
                }
            }
            (Way::ChecksumExtId, Answer::ExtId(Some(target))) => match target.object_type {
                ObjectType::Content => Finding::FoundIfKept(target),
                ObjectType::Directory => match &self.recipe {
                    // The recipe's own way comes first: it has been tried.
                    Some(recipe) if recipe.tree == target => Finding::Absent,
                    _ => Finding::Unusable(Unusable::TarballWithoutRecipe(target)),
                },
                _ => Finding::Absent,
            },
            (Way::NarExtId, Answer::ExtId(Some(target))) => match target.object_type {
                ObjectType::Content | ObjectType::Directory => Finding::Found(Target::Tree(target)),
                _ => Finding::Absent,
            },
            (Way::BinaryCache(_), Answer::Narinfo(Some(info))) => Finding::Found(Target::Nar(info)),
            (way, Answer::Known(true)) => way.target().map_or(Finding::Absent, Finding::Found),
            _ => Finding::Absent,
        };
        match finding {
            Finding::Found(Target::Content(swhid) | Target::Tree(swhid)) | Finding::FoundIfKept(swhid)
                if earlier.contains(&Unusable::Skipped(swhid)) =>
            {
                Finding::Unusable(Unusable::Skipped(swhid))
            }
            finding => finding,
        }
    }

    /// What an audit's verdict for this plan depends on: the request's hash and mode, and the
    /// archive's and binary caches' ways (what the recipe store and bridge index led to).
    pub(crate) fn audit_key(&self) -> String {
        let ways: Vec<String> =
            self.ways.iter().filter(|way| way.holder() != Holder::Upstream).map(Way::describe).collect();
        format!("{}:{}|{}", self.request.mode, self.request.hash.to_sri(), ways.join("|"))
    }
}

/// What, besides the archive, plans are made with.
#[derive(Debug, Clone, Default)]
pub struct Planner {
    /// Hashed mirrors (Nix's `hashed-mirrors`), asked after a source's own URLs.
    pub hashed_mirrors: Vec<String>,
    /// Recipes and the bridge index.
    pub recipes: Option<RecipeStore>,
    /// Nix binary caches, asked last.
    pub binary_caches: Vec<BinaryCache>,
}

impl Planner {
    /// The plan for `request` (see the module docs for the order). Reads the recipe store; what
    /// cannot be read there is noted in the plan's problems, and planning goes on without it.
    pub(crate) async fn plan(&self, request: &SourceRequest) -> Plan {
        let mut plan = Plan { request: request.clone(), ways: Vec::new(), recipe: None, problems: Vec::new() };
        let hash = &request.hash;
        if request.mode == HashMode::Flat {
            plan.ways.extend(request.urls.iter().cloned().map(Way::Upstream));
            plan.ways.extend(self.hashed_mirrors.iter().map(|mirror| {
                Way::HashedMirror(format!("{}/{}/{}", mirror.trim_end_matches('/'), hash.algo(), hash.to_hex()))
            }));
        }
        match request.mode {
            HashMode::Flat => {
                if let Some(store) = &self.recipes {
                    // A plain file `load` saw: its content, named by the bridge index.
                    match store.bridge(&BridgeKey::Flat(hash.clone())).await {
                        Ok(Some(entry))
                            if entry.unpacked.is_none() && entry.tree.object_type == ObjectType::Content =>
                        {
                            plan.ways.push(Way::BridgedContent(entry.tree));
                        }
                        Ok(_) => {}
                        Err(err) => plan.problems.push(error_chain(&err)),
                    }
                    match store.get(hash).await {
                        Ok(Some(recipe)) => {
                            let recipe = Arc::new(recipe);
                            plan.ways.push(Way::RecipeTree(recipe.clone()));
                            plan.recipe = Some(recipe);
                        }
                        Ok(None) => {}
                        Err(err) => plan.problems.push(error_chain(&err)),
                    }
                }
                plan.ways.extend(ContentKey::of_hash(hash).map(Way::ContentByHash));
                plan.ways.push(Way::ChecksumExtId);
            }
            HashMode::Recursive => {
                plan.ways.extend(request.git_commit.map(Way::GitCommit));
                if let (Some(store), HashAlgo::Sha256) = (&self.recipes, hash.algo()) {
                    match store.bridge(&BridgeKey::NarSha256(hash.clone())).await {
                        Ok(Some(entry)) => plan.ways.extend(
                            entry
                                .unpacked
                                .map(|unpacked| unpacked.swhid)
                                .filter(|swhid| swhid.object_type == ObjectType::Directory)
                                .map(Way::BridgedTree),
                        ),
                        Ok(None) => {}
                        Err(err) => plan.problems.push(error_chain(&err)),
                    }
                }
                plan.ways.push(Way::NarExtId);
            }
        }
        if request.store_path.is_some() || request.narinfo.is_some() {
            plan.ways.extend(self.binary_caches.iter().cloned().map(Way::BinaryCache));
        }
        plan
    }
}

/// Why a lookup could not be answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum LookupError {
    #[error("failed to ask the archive")]
    Archive(#[from] ApiError),
    #[error("failed to ask the binary cache")]
    BinaryCache(#[from] BinaryCacheError),
}

impl LookupError {
    /// Whether the archive could not be asked at all (see [`ApiError::is_unreachable`]).
    pub(crate) fn archive_unreachable(&self) -> bool {
        matches!(self, LookupError::Archive(err) if err.is_unreachable())
    }
}

/// Answers a lookup of `way` for `request` with one request: "not there" is an answer, not an
/// error. `/known/` lookups are asked in bulk by their caller instead.
pub(crate) async fn ask(
    archive: &ArchiveClient,
    way: &Way,
    lookup: &Lookup,
    request: &SourceRequest,
) -> Result<Answer, LookupError> {
    fn absent<T>(err: ApiError) -> Result<Option<T>, LookupError> {
        match err {
            ApiError::NotFound { .. } => Ok(None),
            err => Err(LookupError::Archive(err)),
        }
    }
    match (lookup, way) {
        (Lookup::Known(swhid), _) => {
            let known = archive.known(std::slice::from_ref(swhid)).await?;
            Ok(Answer::Known(known.get(swhid).copied().unwrap_or(false)))
        }
        (Lookup::Content(key), _) => Ok(Answer::Content(archive.content(key).await.map(Some).or_else(absent)?)),
        (Lookup::ExtId(kind), _) => Ok(Answer::ExtId(
            archive.extid(*kind, &request.hash).await.map(|extid| Some(extid.target)).or_else(absent)?,
        )),
        (Lookup::Narinfo, Way::BinaryCache(cache)) => {
            match cache.narinfo(request.store_path.as_ref(), request.narinfo.as_deref()).await {
                Ok(info) => Ok(Answer::Narinfo(info)),
                Err(BinaryCacheError::NotCached { .. }) => Ok(Answer::Narinfo(None)),
                Err(err) => Err(err.into()),
            }
        }
        (Lookup::Narinfo, way) => unreachable!("only a binary cache's way looks up a narinfo, not {way:?}"),
    }
}
