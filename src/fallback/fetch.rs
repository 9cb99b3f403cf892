use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::cache::{Cache, write_file_atomically};
use crate::archive::{ApiError, ArchiveClient};
use crate::hashing::nar::{self, NarWriter};
use crate::hashing::tree::Limits;
use crate::hashing::tree::TreeError;
use crate::hashing::tree::disk::{Restorer, parent_dir, persist_no_replace, rename_no_replace, staging_dir_beside};
use crate::hashing::tree::memory::Node;
use crate::hashing::{Hash, Hasher};

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
}

/// Fetches sources by hash, verifying them before they reach their destination.
pub struct Fetcher {
    archive: Arc<ArchiveClient>,
    http: reqwest::Client,
    cache: Option<Cache>,
}

/// Contents downloaded at once while rebuilding a tree.
const PARALLEL_DOWNLOADS: usize = 8;

impl Fetcher {
    pub fn new(archive: ArchiveClient) -> Fetcher {
        Fetcher { archive: Arc::new(archive), http: reqwest::Client::new(), cache: None }
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
        let report = |origin: String| FetchReport { origin, archive_requests: self.archive.requests() - before };
        if self.hand_over_cached(hash, mode, out)? {
            return Ok(report("cache".into()));
        }
        let mut origin = None;
        if mode == Mode::Flat {
            let mirrored = hashed_mirrors
                .iter()
                .map(|mirror| format!("{}/{}/{}", mirror.trim_end_matches('/'), hash.algo(), hash.to_hex()));
            for (kind, url) in urls.iter().map(|u| ("upstream", u.clone())).chain(mirrored.map(|u| ("mirror", u))) {
                if self.flat_from_url(hash, &url, out).await.is_ok() {
                    origin = Some(format!("{kind} {url}"));
                    break;
                }
            }
        }
        let origin = match (origin, mode) {
            (Some(origin), _) => {
                self.keep_file(hash, out);
                origin
            }
            (None, Mode::Flat) => {
                let origin = self.flat_from_archive(hash, out).await?;
                self.keep_file(hash, out);
                origin
            }
            (None, Mode::Recursive) => {
                let (origin, tree) = self.tree_from_archive(hash, git_commit, out).await?;
                self.keep_tree(hash, &tree);
                origin
            }
        };
        Ok(report(origin))
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
            Err(ApiError::NotFound { .. }) => return Err(FetchError::NotArchived { hash: hash.to_sri() }),
            other => other?,
        };
        match extid.target.strip_prefix("swh:1:cnt:") {
            Some(sha1_git) => self.content_to("sha1_git", sha1_git, hash, out).await,
            None => Err(FetchError::NeedsRecipe { hash: hash.to_sri(), swhid: extid.target }),
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

    /// A NAR-hashed tree from the archive: the `nar-<algo>` ExtID's directory, walked through
    /// the API, rebuilt, NAR-hashed, and only then written.
    /// Returns where the tree came from, and the tree (for the cache).
    async fn tree_from_archive(
        &self,
        hash: &Hash,
        git_commit: Option<&str>,
        out: &Path,
    ) -> Result<(String, Node), FetchError> {
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
            (Err(ApiError::NotFound { .. }), None) => return Err(FetchError::NotArchived { hash: hash.to_sri() }),
            (Err(err), _) => return Err(err.into()),
        };
        let origin = format!("archive {swhid}");
        let candidates = match swhid.strip_prefix("swh:1:dir:") {
            Some(sha1_git) => vec![self.rebuild_directory(sha1_git, &swhid).await?],
            None => {
                // A lone file: the NAR says whether it is executable, the archive does not.
                let sha1_git = swhid.trim_start_matches("swh:1:cnt:");
                let contents = self.archive.content_raw("sha1_git", sha1_git).await?;
                let contents =
                    contents.bytes().await.map_err(|source| FetchError::Download { url: origin.clone(), source })?;
                [false, true].map(|executable| Node::File { executable, contents: contents.to_vec() }).into()
            }
        };
        let mut first_actual = None;
        for node in candidates {
            let actual = node.nar_hash(hash.algo());
            if actual == *hash {
                write_tree(&node, out, &swhid)?;
                return Ok((origin, node));
            }
            first_actual.get_or_insert(actual);
        }
        let actual = first_actual.expect("there is at least one candidate");
        Err(FetchError::HashMismatch { origin, expected: hash.clone(), actual })
    }

    async fn rebuild_directory(&self, root: &str, swhid: &str) -> Result<Node, FetchError> {
        let mut tree = Node::empty_directory();
        let mut pending_dirs = vec![(String::new(), root.to_owned())];
        let mut downloads = tokio::task::JoinSet::new();
        let mut files: Vec<(String, bool, bool, String)> = Vec::new();
        while let Some((prefix, id)) = pending_dirs.pop() {
            for entry in self.archive.directory(&id).await? {
                let path = if prefix.is_empty() { entry.name.clone() } else { format!("{prefix}/{}", entry.name) };
                match entry.kind.as_str() {
                    "dir" => {
                        tree.insert(path.as_bytes(), Node::empty_directory())
                            .map_err(|source| FetchError::Tree { swhid: swhid.to_owned(), source })?;
                        pending_dirs.push((path, entry.target));
                    }
                    "file" => {
                        if entry.status.as_deref().is_some_and(|s| s != "visible") {
                            return Err(FetchError::Skipped { swhid: format!("swh:1:cnt:{}", entry.target) });
                        }
                        let symlink = entry.perms & 0o170000 == 0o120000;
                        files.push((path, symlink, entry.perms & 0o100 != 0, entry.target));
                    }
                    _ => return Err(FetchError::Submodule { swhid: swhid.to_owned(), name: path }),
                }
            }
        }
        let mut contents = Vec::with_capacity(files.len());
        let mut queued = files.iter().enumerate();
        loop {
            while downloads.len() < PARALLEL_DOWNLOADS {
                let Some((i, (_, _, _, target))) = queued.next() else { break };
                let archive = Arc::clone(&self.archive);
                let target = target.clone();
                downloads.spawn(async move {
                    let response = archive.content_raw("sha1_git", &target).await?;
                    let bytes =
                        response.bytes().await.map_err(|source| FetchError::Download { url: target, source })?;
                    Ok::<_, FetchError>((i, bytes.to_vec()))
                });
            }
            match downloads.join_next().await {
                Some(done) => contents.push(done.expect("a download task does not panic")?),
                None => break,
            }
        }
        contents.sort_by_key(|(i, _)| *i);
        for ((path, symlink, executable, _), (_, bytes)) in files.into_iter().zip(contents) {
            let node =
                if symlink { Node::Symlink { target: bytes } } else { Node::File { executable, contents: bytes } };
            tree.insert(path.as_bytes(), node)
                .map_err(|source| FetchError::Tree { swhid: swhid.to_owned(), source })?;
        }
        Ok(tree)
    }
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
