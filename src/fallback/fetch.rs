use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::cache::{Cache, write_file_atomically};
use crate::archive::{ApiError, ArchiveClient};
use crate::hashing::nar::{self, NarHasher, NarWriter};
use crate::hashing::tree::disk;
use crate::hashing::tree::disk::{Restorer, parent_dir, persist_no_replace, rename_no_replace, staging_dir_beside};
use crate::hashing::tree::memory::{Node, NodeBuilder};
use crate::hashing::tree::tarball::replay_in_nar_order;
use crate::hashing::tree::{ExecutableRule, Limits, Tee, TreeError};
use crate::hashing::{Hash, HashAlgo, Hasher};
use crate::recipes::store::RecipeStore;
use crate::recipes::{MAX_PLAIN, Recipe, RecipeError, is_content_swhid, is_directory_swhid};

/// How the hash covers the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The bytes of one file (`fetchurl`).
    Flat,
    /// The NAR of a tree (`fetchzip`, `fetchgit`, …).
    Recursive,
}

/// What to fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchRequest<'a> {
    pub hash: &'a Hash,
    pub mode: Mode,
    /// Upstream URLs to try before the archive (flat hashes only: the tree of a NAR hash is
    /// what some fetcher made of the download).
    pub urls: &'a [String],
    /// For a tree fetched from git: the commit, whose tree the archive has if it archived the
    /// repository, even where no ExtID maps the NAR hash.
    pub git_commit: Option<&'a str>,
    /// Hashed mirrors (Nix's `hashed-mirrors`), asked as `<mirror>/<algo>/<hex>` after the
    /// upstream URLs (flat hashes only, as Nix does).
    pub hashed_mirrors: &'a [String],
}

/// Where a fetched source came from, and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReport {
    /// `upstream <url>` or `archive <swhid>`.
    pub origin: String,
    /// Requests sent to the archive.
    pub archive_requests: u64,
    /// What went otherwise than planned on the way (the vault was unavailable, say).
    pub notes: Vec<String>,
}

/// Why a source could not be fetched; every variant says which step failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{hash} is not in the archive: no content has that hash and no ExtID maps it")]
    NotArchived { hash: String },
    #[error(
        "{hash} is archived only as the unpacked directory {swhid}: the exact file (a tarball) cannot be rebuilt from it without a recipe"
    )]
    NeedsRecipe { hash: String, swhid: String },
    #[error("{swhid} is listed by the archive but its bytes were skipped (files over 100 MiB are)")]
    Skipped { swhid: String },
    #[error("refusing what {origin} gave for {expected}: it hashes to {actual}")]
    HashMismatch { origin: String, expected: Hash, actual: Hash },
    #[error("failed to ask the archive")]
    Archive(#[from] ApiError),
    /// The archive could not give a file that upstream and mirrors had not given either.
    #[error("no upstream URL or mirror gave it ({}), and neither did the archive", tried.join("; "))]
    NowhereFound {
        tried: Vec<String>,
        #[source]
        archive: Box<FetchError>,
    },
    #[error("refusing {url}: it is larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
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
        swhid: String,
        #[source]
        source: TreeError,
    },
    #[error("{swhid} holds a submodule ({name}), which a NAR cannot")]
    Submodule { swhid: String, name: String },
    #[error("{out} already exists", out = path.display())]
    Exists { path: PathBuf },
    #[error("failed to rebuild {hash} from the tree {swhid} and its recipe")]
    Recipe {
        hash: String,
        swhid: String,
        #[source]
        source: RecipeError,
    },
    #[error(transparent)]
    RecipeStore(#[from] crate::recipes::store::StoreError),
    #[error("the vault could not give the tree ({vault}), and walking it failed")]
    VaultThenWalk {
        vault: String,
        #[source]
        source: Box<FetchError>,
    },
}

/// Fetches sources by hash, verifying them before they reach their destination.
pub struct Fetcher {
    archive: Arc<ArchiveClient>,
    http: reqwest::Client,
    cache: Option<Cache>,
    recipes: Option<RecipeStore>,
    walk_limit: usize,
    vault_poll: Duration,
}

/// Contents downloaded at once while walking a tree.
const PARALLEL_DOWNLOADS: usize = 8;

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
            http: upstream_client(DEFAULT_UPSTREAM_TIMEOUT),
            cache: None,
            recipes: None,
            walk_limit: DEFAULT_WALK_LIMIT,
            vault_poll: Duration::from_secs(5),
        }
    }

    /// The archive client, shared with whoever needs the API beside fetching (the loader).
    pub fn archive(&self) -> &ArchiveClient {
        &self.archive
    }

    /// Gives up a download from upstream or a mirror that goes this long without a byte.
    pub fn with_upstream_timeout(mut self, timeout: Duration) -> Fetcher {
        self.http = upstream_client(timeout);
        self
    }

    /// Rebuilds flat-hashed tarballs that the archive keeps unpacked with the recipes in `store`.
    pub fn with_recipes(mut self, store: RecipeStore) -> Fetcher {
        self.recipes = Some(store);
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

    /// Fetches the source with hash `hash` (flat or NAR, per `mode`) to `out`, which must not
    /// exist: from `urls` first, then from the archive. Nothing is written to `out` unless it
    /// has the requested hash.
    pub async fn fetch(&self, request: &FetchRequest<'_>, out: &Path) -> Result<FetchReport, FetchError> {
        let FetchRequest { hash, mode, urls, git_commit, hashed_mirrors } = *request;
        if out.symlink_metadata().is_ok() {
            return Err(FetchError::Exists { path: out.to_owned() });
        }
        let before = self.archive.requests();
        let mut notes = Vec::new();
        if self.hand_over_cached(hash, mode, out)? {
            return Ok(FetchReport { origin: "cache".into(), archive_requests: 0, notes });
        }
        let mut origin = None;
        let mut tried = Vec::new();
        if mode == Mode::Flat {
            let mirrored = hashed_mirrors
                .iter()
                .map(|mirror| format!("{}/{}/{}", mirror.trim_end_matches('/'), hash.algo(), hash.to_hex()));
            for (kind, url) in urls.iter().map(|u| ("upstream", u.clone())).chain(mirrored.map(|u| ("mirror", u))) {
                match self.flat_from_url(hash, &url, out).await {
                    Ok(_) => {
                        origin = Some(format!("{kind} {url}"));
                        break;
                    }
                    Err(err) => tried.push(format!("{kind} {url}: {}", error_chain(&err))),
                }
            }
        }
        let origin = match (origin, mode) {
            (Some(origin), _) => {
                self.keep_file(hash, out);
                origin
            }
            (None, Mode::Flat) => {
                let origin = match self.flat_from_archive(hash, out).await {
                    Err(archive) if !tried.is_empty() => {
                        return Err(FetchError::NowhereFound { tried, archive: Box::new(archive) });
                    }
                    other => other?,
                };
                self.keep_file(hash, out);
                origin
            }
            (None, Mode::Recursive) => self.tree_from_archive(hash, git_commit, out, &mut notes).await?,
        };
        Ok(FetchReport { origin, archive_requests: self.archive.requests() - before, notes })
    }

    /// Hands over a cached copy, verified again: a file by its hash, a tree by restoring its NAR
    /// against the hash.
    fn hand_over_cached(&self, hash: &Hash, mode: Mode, out: &Path) -> Result<bool, FetchError> {
        let Some(bytes) = self.cache.as_ref().and_then(|cache| cache.get(hash, mode)) else { return Ok(false) };
        let write_error = |source| FetchError::Write { path: out.to_owned(), source };
        match mode {
            Mode::Flat => {
                let mut hasher = hash.algo().hasher();
                hasher.update(&bytes);
                if hasher.finish() != *hash {
                    return Ok(false);
                }
                write_file_atomically(&bytes, out).map_err(write_error)?;
            }
            Mode::Recursive => {
                if nar::restore(&bytes[..], out, Some(hash), Limits::default()).is_err() {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Downloads `url` whole without verifying it, for callers that verify what they make of it
    /// (the NAR hash of an unpacked archive, say); more than `limit` bytes is an error.
    pub async fn download(&self, url: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
        let download = |source| FetchError::Download { url: url.to_owned(), source };
        let mut response = self.http.get(url).send().await.and_then(|r| r.error_for_status()).map_err(download)?;
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(download)? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > limit {
                return Err(FetchError::TooLarge { url: url.to_owned(), limit });
            }
        }
        Ok(bytes)
    }

    /// Stores a fetched file in the cache; a cache that cannot be written is no reason to fail.
    fn keep_file(&self, hash: &Hash, out: &Path) {
        let Some(cache) = &self.cache else { return };
        warn_unkept(hash, std::fs::File::open(out).and_then(|file| cache.put(hash, Mode::Flat, file)));
    }

    /// Stores a fetched tree's NAR in the cache, from the tree still in memory.
    fn keep_tree(&self, hash: &Hash, tree: &Node) {
        let Some(cache) = &self.cache else { return };
        let mut bytes = Vec::new();
        let serialised = NarWriter::new(&mut bytes).and_then(|mut writer| tree.visit(&mut writer));
        warn_unkept(
            hash,
            serialised.map_err(std::io::Error::other).and_then(|()| cache.put(hash, Mode::Recursive, &bytes[..])),
        );
    }

    async fn flat_from_url(&self, hash: &Hash, url: &str, out: &Path) -> Result<(), FetchError> {
        let download = |source| FetchError::Download { url: url.to_owned(), source };
        let response = self.http.get(url).send().await.and_then(|r| r.error_for_status()).map_err(download)?;
        write_verified(response, hash, &format!("upstream {url}"), out).await
    }

    /// A flat file from the archive: by content hash where the archive indexes that algorithm,
    /// else through the `checksum-<algo>` ExtID.
    async fn flat_from_archive(&self, hash: &Hash, out: &Path) -> Result<String, FetchError> {
        let hex = hash.to_hex();
        let algo = hash.algo().name();
        if matches!(algo, "sha1" | "sha256") {
            match self.content_to(algo, &hex, hash, out).await {
                Err(FetchError::Archive(ApiError::NotFound { .. })) => {}
                other => return other,
            }
        }
        let extid = match self.archive.extid(&format!("checksum-{algo}"), hash.digest()).await {
            Err(ApiError::NotFound { .. }) => None,
            other => Some(other?),
        };
        if let Some(sha1_git) = extid.as_ref().and_then(|extid| extid.target.strip_prefix("swh:1:cnt:")) {
            return self.content_to("sha1_git", sha1_git, hash, out).await;
        }
        // A tarball: the archive has its tree (under the ExtID, or under the tree a recipe names).
        let recipe = match &self.recipes {
            Some(store) => store.get(hash).await?,
            None => None,
        };
        match (recipe, extid) {
            (Some(recipe), _) => self.file_from_recipe(&recipe, hash, out).await,
            (None, Some(extid)) => Err(FetchError::NeedsRecipe { hash: hash.to_sri(), swhid: extid.target }),
            (None, None) => match self.bridged_content(hash).await? {
                // What the content holds is verified on the way out, as any content is.
                Some(sha1_git) => self.content_to("sha1_git", &sha1_git, hash, out).await,
                None => Err(FetchError::NotArchived { hash: hash.to_sri() }),
            },
        }
    }

    /// Rebuilds a tarball from the tree its recipe names, fetched from the archive.
    async fn file_from_recipe(&self, recipe: &Recipe, hash: &Hash, out: &Path) -> Result<String, FetchError> {
        let tree = self.directory_node(&recipe.tree).await?;
        let origin = format!("archive {} + recipe", recipe.tree);
        let (recipe, swhid) = (recipe.clone(), recipe.tree.clone());
        let built =
            tokio::task::spawn_blocking(move || recipe.apply(&tree).map_err(|source| (recipe.tree.clone(), source)));
        let applied = built.await.unwrap_or_else(|panic| {
            Err((swhid.clone(), RecipeError::Damaged(format!("applying it panicked: {panic}"))))
        });
        let bytes = applied.map_err(|(swhid, source)| FetchError::Recipe { hash: hash.to_sri(), swhid, source })?;
        // The recipe checked its own sha256; the request may name another algorithm.
        let mut hasher = hash.algo().hasher();
        hasher.update(&bytes);
        let actual = hasher.finish();
        if actual != *hash {
            return Err(FetchError::HashMismatch { origin, expected: hash.clone(), actual });
        }
        write_file_atomically(&bytes, out).map_err(|source| FetchError::Write { path: out.to_owned(), source })?;
        Ok(origin)
    }

    /// A directory of the archive in memory: walked while small, else from the vault.
    async fn directory_node(&self, swhid: &str) -> Result<Node, FetchError> {
        let sha1_git =
            swhid.strip_prefix("swh:1:dir:").ok_or_else(|| FetchError::NotArchived { hash: swhid.to_owned() })?;
        let limits = Limits { max_bytes: MAX_PLAIN as u64, ..Limits::default() };
        let mut walk = DirectoryWalk::new(sha1_git, swhid, limits);
        if walk.list(&self.archive, self.walk_limit).await? {
            return walk.download(&self.archive).await;
        }
        let scratch = tempfile::tempdir().map_err(|source| FetchError::Write { path: std::env::temp_dir(), source })?;
        let unpacked = scratch.path().join("tree");
        match self.tree_from_vault(swhid, None, &unpacked).await {
            Ok(()) => {
                let mut builder = NodeBuilder::new();
                disk::walk(&unpacked, &disk::WalkOptions::nix(), &mut builder)
                    .map_err(|source| FetchError::Tree { swhid: swhid.to_owned(), source })?;
                Ok(builder.finish().expect("a walked directory is a tree"))
            }
            Err(err) if vault_failure_to_walk_around(&err) => {
                walk.list(&self.archive, usize::MAX).await?;
                walk.download(&self.archive).await
            }
            Err(err) => Err(err),
        }
    }

    async fn content_to(&self, algo: &str, hex: &str, hash: &Hash, out: &Path) -> Result<String, FetchError> {
        let info = self.archive.content(algo, hex).await?;
        let swhid = format!("swh:1:cnt:{}", info.checksums.get("sha1_git").map_or("?", String::as_str));
        if info.status != "visible" {
            return Err(FetchError::Skipped { swhid });
        }
        let response = self.archive.content_raw(algo, hex).await?;
        write_verified(response, hash, &format!("archive {swhid}"), out).await?;
        Ok(format!("archive {swhid}"))
    }

    /// A NAR-hashed tree from the archive: the `nar-<algo>` ExtID's directory (or the commit's
    /// root directory), rebuilt, NAR-hashed, and only then written. Returns where it came from.
    async fn tree_from_archive(
        &self,
        hash: &Hash,
        git_commit: Option<&str>,
        out: &Path,
        notes: &mut Vec<String>,
    ) -> Result<String, FetchError> {
        let algo = hash.algo().name();
        let swhid = match (self.archive.extid(&format!("nar-{algo}"), hash.digest()).await, git_commit) {
            (Ok(extid), _) => extid.target,
            (Err(ApiError::NotFound { .. }), Some(commit)) => {
                let revision = match self.archive.revision(commit).await {
                    Err(ApiError::NotFound { .. }) => return Err(FetchError::NotArchived { hash: hash.to_sri() }),
                    other => other?,
                };
                format!("swh:1:dir:{}", revision.directory)
            }
            (Err(ApiError::NotFound { .. }), None) => match self.bridged_tree(hash).await? {
                Some(swhid) => {
                    notes.push(format!("no ExtID names {}; the bridge index leads to {swhid}", hash.to_sri()));
                    swhid
                }
                None => return Err(FetchError::NotArchived { hash: hash.to_sri() }),
            },
            (Err(err), _) => return Err(err.into()),
        };
        match swhid.strip_prefix("swh:1:dir:") {
            Some(sha1_git) => self.directory_to(sha1_git, &swhid, hash, out, notes).await?,
            None => self.lone_file_to(&swhid, hash, out).await?,
        }
        Ok(format!("archive {swhid}"))
    }

    /// The directory the recipe store's bridge index gives for a NAR hash, if it has one.
    async fn bridged_tree(&self, hash: &Hash) -> Result<Option<String>, FetchError> {
        let (Some(store), HashAlgo::Sha256) = (&self.recipes, hash.algo()) else { return Ok(None) };
        let entry = store.bridge(&format!("nar-sha256/{}", hash.to_hex())).await?;
        // The entry is untrusted: its SWHID goes into API URLs, and what it leads to is verified.
        Ok(entry
            .and_then(|entry| entry.unpacked)
            .map(|unpacked| unpacked.swhid)
            .filter(|swhid| is_directory_swhid(swhid)))
    }

    /// The content the bridge index gives for a flat hash (a plain file the loader saw), as the
    /// sha1_git the API takes, if it has one.
    async fn bridged_content(&self, hash: &Hash) -> Result<Option<String>, FetchError> {
        let Some(store) = &self.recipes else { return Ok(None) };
        let entry = store.bridge(&format!("{}/{}", hash.algo().name(), hash.to_hex())).await?;
        // Untrusted: only a well-formed content SWHID goes into an API URL.
        Ok(entry
            .filter(|entry| is_content_swhid(&entry.tree))
            .and_then(|entry| entry.tree.strip_prefix("swh:1:cnt:").map(str::to_owned)))
    }

    /// A tree that is a lone file: the NAR says whether it is executable, the archive does not,
    /// so both are tried.
    async fn lone_file_to(&self, swhid: &str, hash: &Hash, out: &Path) -> Result<(), FetchError> {
        let sha1_git = swhid.trim_start_matches("swh:1:cnt:");
        let contents = self.archive.content_raw("sha1_git", sha1_git).await?;
        let contents =
            contents.bytes().await.map_err(|source| FetchError::Download { url: swhid.to_owned(), source })?;
        let candidates = [false, true].map(|executable| Node::File { executable, contents: contents.to_vec() });
        let mut first_actual = None;
        for node in candidates {
            let actual = node.nar_hash(hash.algo());
            if actual == *hash {
                write_tree(&node, out, swhid)?;
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
        sha1_git: &str,
        swhid: &str,
        hash: &Hash,
        out: &Path,
        notes: &mut Vec<String>,
    ) -> Result<(), FetchError> {
        let mut walk = DirectoryWalk::new(sha1_git, swhid, Limits::default());
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

    fn verify_and_write(&self, tree: Node, swhid: &str, hash: &Hash, out: &Path) -> Result<(), FetchError> {
        let actual = tree.nar_hash(hash.algo());
        if actual != *hash {
            return Err(FetchError::HashMismatch {
                origin: format!("archive {swhid}"),
                expected: hash.clone(),
                actual,
            });
        }
        write_tree(&tree, out, swhid)?;
        self.keep_tree(hash, &tree);
        Ok(())
    }

    /// Cooks the directory's flat bundle in the vault, downloads it beside `out`, and unpacks it
    /// there, checking its NAR hash, before renaming it to `out`.
    /// With no `hash`, the tree is unpacked unchecked (for a recipe, which checks what it builds).
    async fn tree_from_vault(&self, swhid: &str, hash: Option<&Hash>, out: &Path) -> Result<(), FetchError> {
        self.archive.vault_wait("flat", swhid, self.vault_poll).await?;
        let mut response = self.archive.vault_download("flat", swhid).await?;
        let write_error = |source| FetchError::Write { path: out.to_owned(), source };
        let staging = staging_dir_beside(out).map_err(write_error)?;
        let bundle = staging.path().join("bundle.tar.gz");
        let mut file = std::io::BufWriter::new(std::fs::File::create(&bundle).map_err(write_error)?);
        let origin = format!("the vault's flat bundle of {swhid}");
        while let Some(chunk) =
            response.chunk().await.map_err(|source| FetchError::Download { url: origin.clone(), source })?
        {
            file.write_all(&chunk).map_err(write_error)?;
        }
        file.flush().map_err(write_error)?;
        drop(file);
        let (swhid, expected, out) = (swhid.to_owned(), hash.cloned(), out.to_owned());
        let unpacked = tokio::task::spawn_blocking(move || {
            unpack_bundle(&bundle, &staging.path().join("tree"), &swhid, expected.as_ref(), &out)?;
            Ok::<_, FetchError>(out)
        });
        let out = unpacked.await.expect("unpacking a bundle does not panic")?;
        if let (Some(cache), Some(hash)) = (&self.cache, hash) {
            warn_unkept(
                hash,
                cache.put_with(hash, Mode::Recursive, |w| nar::dump_path(&out, w).map_err(std::io::Error::other)),
            );
        }
        Ok(())
    }
}

/// A directory being listed through the API, and then its files downloaded.
struct DirectoryWalk {
    swhid: String,
    tree: Node,
    /// Directories still to list: their path in the tree, and their id.
    pending: Vec<(Vec<u8>, String)>,
    listed: usize,
    files: Vec<PendingFile>,
    /// What the walk may hold; the bytes are checked against the lengths the archive announces,
    /// then against what it sends.
    limits: Limits,
    announced_bytes: u64,
}

struct PendingFile {
    path: Vec<u8>,
    symlink: bool,
    executable: bool,
    sha1_git: String,
}

impl DirectoryWalk {
    fn new(sha1_git: &str, swhid: &str, limits: Limits) -> DirectoryWalk {
        DirectoryWalk {
            swhid: swhid.to_owned(),
            tree: Node::empty_directory(),
            pending: vec![(Vec::new(), sha1_git.to_owned())],
            listed: 0,
            files: Vec::new(),
            limits,
            announced_bytes: 0,
        }
    }

    fn limit_exceeded(&self, what: &'static str, limit: u64) -> FetchError {
        self.tree_error(TreeError::LimitExceeded { what, limit })
    }

    /// Directories listed and files found: the requests a walk costs.
    fn objects(&self) -> usize {
        self.listed + self.files.len()
    }

    fn tree_error(&self, source: TreeError) -> FetchError {
        FetchError::Tree { swhid: self.swhid.clone(), source }
    }

    /// Lists directories until none is left (`true`), or until the walk would cost more than
    /// `limit` requests (`false`; it can go on later with a higher limit).
    async fn list(&mut self, archive: &ArchiveClient, limit: usize) -> Result<bool, FetchError> {
        while let Some((prefix, id)) = self.pending.pop() {
            if self.objects() >= limit {
                self.pending.push((prefix, id));
                return Ok(false);
            }
            self.listed += 1;
            for entry in archive.directory(&id).await? {
                let Some(name) = entry.name_bytes() else {
                    return Err(self.tree_error(TreeError::HostileMember {
                        path: entry.name,
                        reason: "the archive names it with an escape that is not `\\\\` or `\\xHH`".into(),
                    }));
                };
                let path = if prefix.is_empty() { name } else { [&prefix[..], b"/", &name].concat() };
                if self.objects() as u64 >= self.limits.max_nodes {
                    return Err(self.limit_exceeded("nodes", self.limits.max_nodes));
                }
                if path.iter().filter(|&&b| b == b'/').count() as u64 >= self.limits.max_depth {
                    return Err(self.limit_exceeded("levels of nesting", self.limits.max_depth));
                }
                self.announced_bytes = self.announced_bytes.saturating_add(entry.length.unwrap_or(0));
                if self.announced_bytes > self.limits.max_bytes {
                    return Err(self.limit_exceeded("bytes", self.limits.max_bytes));
                }
                match entry.kind.as_str() {
                    "dir" => {
                        self.tree.insert(&path, Node::empty_directory()).map_err(|e| self.tree_error(e))?;
                        self.pending.push((path, entry.target));
                    }
                    "file" => {
                        if entry.status.as_deref().is_some_and(|s| s != "visible") {
                            return Err(FetchError::Skipped { swhid: format!("swh:1:cnt:{}", entry.target) });
                        }
                        self.files.push(PendingFile {
                            path,
                            symlink: entry.perms & 0o170000 == 0o120000,
                            executable: entry.perms & 0o100 != 0,
                            sha1_git: entry.target,
                        });
                    }
                    _ => {
                        let name = String::from_utf8_lossy(&path).into_owned();
                        return Err(FetchError::Submodule { swhid: self.swhid.clone(), name });
                    }
                }
            }
        }
        Ok(self.objects() <= limit)
    }

    /// Downloads every file found, [`PARALLEL_DOWNLOADS`] at a time, into the tree.
    async fn download(mut self, archive: &Arc<ArchiveClient>) -> Result<Node, FetchError> {
        let mut downloads = tokio::task::JoinSet::new();
        let mut contents = Vec::with_capacity(self.files.len());
        let mut received = 0u64;
        let mut queued = self.files.iter().enumerate();
        loop {
            while downloads.len() < PARALLEL_DOWNLOADS {
                let Some((i, file)) = queued.next() else { break };
                let archive = Arc::clone(archive);
                let sha1_git = file.sha1_git.clone();
                downloads.spawn(async move {
                    let response = archive.content_raw("sha1_git", &sha1_git).await?;
                    let bytes = response
                        .bytes()
                        .await
                        .map_err(|source| FetchError::Download { url: format!("swh:1:cnt:{sha1_git}"), source })?;
                    Ok::<_, FetchError>((i, bytes.to_vec()))
                });
            }
            match downloads.join_next().await {
                Some(done) => {
                    let (i, bytes) = done.expect("a download task does not panic")?;
                    received = received.saturating_add(bytes.len() as u64);
                    if received > self.limits.max_bytes {
                        return Err(self.limit_exceeded("bytes", self.limits.max_bytes));
                    }
                    contents.push((i, bytes));
                }
                None => break,
            }
        }
        contents.sort_by_key(|(i, _)| *i);
        for (file, (_, bytes)) in std::mem::take(&mut self.files).into_iter().zip(contents) {
            let node = if file.symlink {
                Node::Symlink { target: bytes }
            } else {
                Node::File { executable: file.executable, contents: bytes }
            };
            self.tree.insert(&file.path, node).map_err(|e| self.tree_error(e))?;
        }
        Ok(self.tree)
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

/// Unpacks a flat bundle (a tar.gz holding the tree under a top folder named by its SWHID) to
/// `staged`, NAR-hashing it on the way, and renames it to `out` if the hash is `expected`. A
/// bundle out of NAR order is read again into memory.
fn unpack_bundle(
    bundle: &Path,
    staged: &Path,
    swhid: &str,
    expected: Option<&Hash>,
    out: &Path,
) -> Result<(), FetchError> {
    let algo = expected.map_or(HashAlgo::Sha256, Hash::algo);
    let tree_error = |source| FetchError::Tree { swhid: swhid.to_owned(), source };
    let open = || {
        std::fs::File::open(bundle)
            .map(super::gunzip::GunzipReader::new)
            .map_err(|source| FetchError::Write { path: bundle.to_owned(), source })
    };
    let origin = format!("the vault's flat bundle of {swhid}");
    let mut sink = Tee::new(NarHasher::new(algo).map_err(tree_error)?, Restorer::new(staged));
    let actual =
        match replay_in_nar_order(open()?, swhid.as_bytes(), Limits::default(), ExecutableRule::Owner, &mut sink) {
            Ok(()) => sink.into_inner().0.finish().map_err(tree_error)?,
            Err(TreeError::NotInNarOrder { .. }) => {
                let root = Node::from_tar(open()?, Limits::default(), ExecutableRule::Owner).map_err(tree_error)?;
                let Node::Directory(mut entries) = root else { unreachable!("a tar stream reads into a directory") };
                let tree = match (entries.len(), entries.remove(swhid.as_bytes())) {
                    (1, Some(tree @ Node::Directory(_))) => tree,
                    _ => {
                        return Err(tree_error(TreeError::HostileMember {
                            path: swhid.to_owned(),
                            reason: "a flat bundle holds exactly one top directory, named by the SWHID".into(),
                        }));
                    }
                };
                let actual = tree.nar_hash(algo);
                if expected.is_none_or(|expected| actual == *expected) {
                    return write_tree(&tree, out, swhid);
                }
                actual
            }
            Err(err) => return Err(tree_error(err)),
        };
    if let Some(expected) = expected.filter(|expected| actual != **expected) {
        return Err(FetchError::HashMismatch { origin, expected: expected.clone(), actual });
    }
    rename_no_replace(staged, out).map_err(|source| FetchError::Write { path: out.to_owned(), source })
}

/// An error and its sources, on one line.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn warn_unkept(hash: &Hash, stored: std::io::Result<()>) {
    if let Err(err) = stored {
        eprintln!("warning: failed to keep {hash} in the cache: {err}");
    }
}

/// Streams `response` into a temporary file beside `out`, hashing as it goes, and renames it to
/// `out` only if the hash is the expected one.
async fn write_verified(
    mut response: reqwest::Response,
    expected: &Hash,
    origin: &str,
    out: &Path,
) -> Result<(), FetchError> {
    let write_error = |source| FetchError::Write { path: out.to_owned(), source };
    let mut temp = tempfile::NamedTempFile::new_in(parent_dir(out)).map_err(write_error)?;
    let mut hasher: Hasher = expected.algo().hasher();
    while let Some(chunk) =
        response.chunk().await.map_err(|source| FetchError::Download { url: origin.to_owned(), source })?
    {
        hasher.update(&chunk);
        temp.write_all(&chunk).map_err(write_error)?;
    }
    let actual = hasher.finish();
    if actual != *expected {
        return Err(FetchError::HashMismatch { origin: origin.to_owned(), expected: expected.clone(), actual });
    }
    persist_no_replace(temp, out).map_err(write_error)
}

/// Restores `node` beside `out` and renames it into place.
fn write_tree(node: &Node, out: &Path, swhid: &str) -> Result<(), FetchError> {
    let tree_error = |source| FetchError::Tree { swhid: swhid.to_owned(), source };
    let staging = staging_dir_beside(out).map_err(|source| FetchError::Write { path: out.to_owned(), source })?;
    let staged = staging.path().join("tree");
    node.visit(&mut Restorer::new(&staged)).map_err(tree_error)?;
    rename_no_replace(&staged, out).map_err(|source| FetchError::Write { path: out.to_owned(), source })?;
    Ok(())
}
