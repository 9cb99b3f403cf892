//! A Nix binary cache (cache.nixos.org) as the last place a source's bytes can come from: every
//! fixed output Hydra built is there as a NAR of its store path, named by a `.narinfo`.
//!
//! Format quirks:
//! - a `.narinfo` is `Key: value` lines; `URL` is relative to the cache root, `Compression` is
//!   `xz` (cache.nixos.org's older NARs), `zstd` (newer ones), `bzip2` or `none` (and `bzip2`
//!   when the line is missing, as Nix assumes); `NarHash` is
//!   `sha256:<nix32>` of the uncompressed NAR;
//! - the narinfo of a store path is `<cache>/<hash part>.narinfo`, the hash part being the 32
//!   characters after `/nix/store/`;
//! - a flat-hashed source's NAR holds one regular file, whose bytes are the source; a recursive
//!   source's NAR is its tree, and the NAR hash is the source's hash.
//!
//! Everything read is verified twice: against the narinfo's `NarHash` and against the source's
//! own hash (the caller's job).

use std::io::Read;
use std::time::Duration;

use crate::download::{BodyError, BodyLimits, read_within};
use crate::hashing::nar;
use crate::hashing::tree::memory::{Node, NodeBuilder};
use crate::hashing::tree::{Limits, TreeError};
use crate::hashing::{Hash, HashMode, Hasher};
use crate::store::StorePath;

/// Compressed NARs larger than this are not downloaded (a recipe models files up to 2 GiB).
const MAX_NAR_DOWNLOAD: u64 = 2 << 30;
/// A narinfo is a few hundred bytes.
const MAX_NARINFO: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BinaryCacheError {
    #[error("the narinfo {location} is malformed: {why}")]
    Narinfo { location: String, why: String },
    #[error("{location} has no narinfo for {store_path}")]
    NotCached { location: String, store_path: StorePath },
    #[error("the NAR {url} is compressed with {compression}, which is not supported (xz, zstd, bzip2, none are)")]
    Compression { url: String, compression: String },
    #[error("failed to download {url}")]
    Download {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("refusing {url}: {refusal}")]
    Body { url: String, refusal: BodyError },
    #[error("failed to read the NAR {url}")]
    Nar {
        url: String,
        #[source]
        source: crate::hashing::tree::TreeError,
    },
    #[error("refusing the NAR {url}: its NAR hash is {actual}, the narinfo says {expected}")]
    NarHash { url: String, expected: Hash, actual: Hash },
    #[error("the binary cache's NAR of {store_path} is not a single file, as a flat-hashed source's is")]
    NotAFile { store_path: String },
    #[error("refusing the binary cache's {what} for {expected}: it hashes to {actual}")]
    Mismatch { what: &'static str, expected: Hash, actual: Hash },
    #[error("reading the NAR panicked: {0}")]
    Panicked(String),
}

/// What a `.narinfo` says about where the NAR is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NarInfo {
    /// Relative to the cache root.
    pub url: String,
    pub compression: String,
    pub nar_hash: Hash,
    /// The compressed NAR's length, when the narinfo gives it (Nix's always do).
    pub file_size: Option<u64>,
    /// The NAR's length, when the narinfo gives it.
    pub nar_size: Option<u64>,
}

impl NarInfo {
    /// Reads a narinfo's text; `location` names it in errors.
    pub(crate) fn parse(text: &str, location: &str) -> Result<NarInfo, BinaryCacheError> {
        let malformed = |why: String| BinaryCacheError::Narinfo { location: location.to_owned(), why };
        let field =
            |name: &str| text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(": ").map(str::trim));
        let url = field("URL").ok_or_else(|| malformed("no URL line".into()))?;
        // The URL is joined to the cache root: it must stay under it.
        if url.is_empty() || url.starts_with('/') || url.contains("..") || url.contains("://") || url.contains('\\') {
            return Err(malformed(format!("URL {url:?} is not a path under the cache")));
        }
        let nar_hash = field("NarHash").ok_or_else(|| malformed("no NarHash line".into()))?;
        let nar_hash = Hash::parse(nar_hash, None).map_err(|e| malformed(e.to_string()))?;
        let size = |name: &str| match field(name) {
            None => Ok(None),
            Some(size) => {
                size.parse::<u64>().map(Some).map_err(|_| malformed(format!("{name} {size:?} is not a number")))
            }
        };
        Ok(NarInfo {
            url: url.to_owned(),
            compression: field("Compression").unwrap_or("bzip2").to_owned(),
            nar_hash,
            file_size: size("FileSize")?,
            nar_size: size("NarSize")?,
        })
    }

    /// The most memory reading its NAR into a tree holds: the compressed NAR and the tree, each
    /// at most what the narinfo says (or [`MAX_NAR_DOWNLOAD`] where it says nothing).
    pub(crate) fn memory_bound(&self) -> u64 {
        self.download_limit() + self.tree_limit()
    }

    fn download_limit(&self) -> u64 {
        self.file_size.unwrap_or(MAX_NAR_DOWNLOAD).min(MAX_NAR_DOWNLOAD)
    }

    fn tree_limit(&self) -> u64 {
        self.nar_size.unwrap_or(MAX_NAR_DOWNLOAD).min(MAX_NAR_DOWNLOAD)
    }
}

/// A narinfo as a cache served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NarinfoDocument {
    pub text: String,
    pub last_modified: Option<String>,
    pub info: NarInfo,
    /// The NAR's URL, checked to be under the cache.
    pub nar_url: url::Url,
}

/// A binary cache at an HTTP root.
#[derive(Debug, Clone)]
pub struct BinaryCache {
    root: url::Url,
    http: reqwest::Client,
}

impl BinaryCache {
    /// The cache at `root`; a download that goes `timeout` without a byte is given up.
    pub fn new(root: &url::Url, timeout: Duration) -> BinaryCache {
        let mut root = root.clone();
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .build()
            .expect("a client with timeouts builds");
        BinaryCache { root, http }
    }

    pub(crate) fn root(&self) -> &url::Url {
        &self.root
    }

    /// The narinfo for a source: `text` if the source came with one (sources.json carries
    /// cache.nixos.org's), else the cache's for its store path. `None` when neither is given.
    pub(crate) async fn narinfo(
        &self,
        store_path: Option<&StorePath>,
        text: Option<&str>,
    ) -> Result<Option<NarInfo>, BinaryCacheError> {
        if let Some(text) = text {
            return NarInfo::parse(text, "in sources.json").map(Some);
        }
        let Some(store_path) = store_path else { return Ok(None) };
        Ok(Some(self.narinfo_document(store_path).await?.info))
    }

    /// The cache's narinfo for `store_path`, as it serves it: its text, its `Last-Modified`
    /// header (nixpkgs-swh keeps both), and what it says.
    pub(crate) async fn narinfo_document(&self, store_path: &StorePath) -> Result<NarinfoDocument, BinaryCacheError> {
        let location = self.root.join(&format!("{}.narinfo", store_path.hash_part())).expect("a relative path");
        let download = |source| BinaryCacheError::Download { url: location.to_string(), source };
        let response = self.http.get(location.clone()).send().await.map_err(download)?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(BinaryCacheError::NotCached { location: location.to_string(), store_path: store_path.clone() });
        }
        let response = response.error_for_status().map_err(download)?;
        let last_modified = response
            .headers()
            .get(reqwest::header::LAST_MODIFIED)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let bytes = read_within(response, BodyLimits::of_size(MAX_NARINFO)).await.map_err(|err| match err {
            BodyError::Transport(source) => download(source),
            refusal => BinaryCacheError::Body { url: location.to_string(), refusal },
        })?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let info = NarInfo::parse(&text, location.as_str())?;
        let nar_url = self.nar_url(&info)?;
        Ok(NarinfoDocument { text, last_modified, info, nar_url })
    }

    async fn download(&self, url: &url::Url, limit: u64) -> Result<Vec<u8>, BinaryCacheError> {
        let download = |source| BinaryCacheError::Download { url: url.to_string(), source };
        let response = self.http.get(url.clone()).send().await.and_then(|r| r.error_for_status()).map_err(download)?;
        read_within(response, BodyLimits::of_size(limit)).await.map_err(|err| match err {
            BodyError::Transport(source) => download(source),
            refusal => BinaryCacheError::Body { url: url.to_string(), refusal },
        })
    }

    /// Where the NAR is: under the cache root, checked once joined (an escaped `..`, `%2e%2e`,
    /// gets past the narinfo's text checks, but not this).
    fn nar_url(&self, info: &NarInfo) -> Result<url::Url, BinaryCacheError> {
        let outside = || BinaryCacheError::Narinfo {
            location: self.root.to_string(),
            why: format!("URL {:?} leads outside the cache", info.url),
        };
        let joined = self.root.join(&info.url).map_err(|_| outside())?;
        if joined.origin() != self.root.origin() || !joined.path().starts_with(self.root.path()) {
            return Err(outside());
        }
        Ok(joined)
    }

    /// Downloads the NAR a narinfo names, checks its NAR hash, and reads it into a tree; the NAR
    /// and the tree may be no larger than the narinfo says.
    pub(crate) async fn tree(&self, info: &NarInfo) -> Result<Node, BinaryCacheError> {
        let url = self.nar_url(info)?;
        let compressed = self.download(&url, info.download_limit()).await?;
        let (info, url) = (info.clone(), url.to_string());
        let read = tokio::task::spawn_blocking(move || read_nar(&compressed, &info, &url)).await;
        read.unwrap_or_else(|panic| Err(BinaryCacheError::Panicked(panic.to_string())))
    }
}

fn read_nar(compressed: &[u8], info: &NarInfo, url: &str) -> Result<Node, BinaryCacheError> {
    let reader: Box<dyn Read> = match info.compression.as_str() {
        "xz" => Box::new(liblzma::read::XzDecoder::new(compressed)),
        "zstd" => Box::new(
            zstd::stream::read::Decoder::with_buffer(compressed)
                .map_err(|source| BinaryCacheError::Nar { url: url.to_owned(), source: TreeError::NarInput(source) })?,
        ),
        "bzip2" => Box::new(bzip2::read::BzDecoder::new(compressed)),
        "none" => Box::new(compressed),
        other => return Err(BinaryCacheError::Compression { url: url.to_owned(), compression: other.to_owned() }),
    };
    let mut hashing = HashingReader { inner: reader, hasher: info.nar_hash.algo().hasher() };
    let mut builder = NodeBuilder::new();
    let nar_error = |source| BinaryCacheError::Nar { url: url.to_owned(), source };
    let limits = Limits { max_bytes: info.tree_limit(), ..Limits::default() };
    nar::parse_with_limits(&mut hashing, &mut builder, limits).map_err(nar_error)?;
    let actual = hashing.hasher.finish();
    if actual != info.nar_hash {
        return Err(BinaryCacheError::NarHash { url: url.to_owned(), expected: info.nar_hash.clone(), actual });
    }
    Ok(builder.finish().expect("a parsed NAR is a tree"))
}

/// Hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// What a store path's NAR holds of a source with hash `hash`, checked against it: for a flat
/// hash, the one regular file the NAR must be, whose bytes have that hash; for a NAR hash, the
/// tree, whose NAR has it.
pub(crate) fn source_of(tree: Node, hash: &Hash, mode: HashMode, store_path: &str) -> Result<Node, BinaryCacheError> {
    let actual = match (mode, &tree) {
        (HashMode::Flat, Node::File { contents, .. }) => {
            let mut hasher = hash.algo().hasher();
            hasher.update(contents);
            hasher.finish()
        }
        (HashMode::Flat, _) => return Err(BinaryCacheError::NotAFile { store_path: store_path.to_owned() }),
        (HashMode::Recursive, tree) => tree.nar_hash(hash.algo()),
    };
    if actual != *hash {
        let what = if mode == HashMode::Flat { "file" } else { "tree" };
        return Err(BinaryCacheError::Mismatch { what, expected: hash.clone(), actual });
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::HashAlgo;

    proptest::proptest! {
        #[test]
        fn any_narinfo_is_read_or_refused_without_panicking(
            lines in proptest::collection::vec(("(URL|NarHash|Compression|StorePath|\\PC{0,8})", "\\PC{0,60}"), 0..6)
        ) {
            let text: String = lines.iter().map(|(key, value)| format!("{key}: {value}\n")).collect();
            if let Ok(info) = NarInfo::parse(&text, "t") {
                let cache = BinaryCache::new(&url::Url::parse("http://127.0.0.1:1/cache/").unwrap(), Duration::from_secs(1));
                if let Ok(url) = cache.nar_url(&info) {
                    proptest::prop_assert!(url.as_str().starts_with("http://127.0.0.1:1/cache/"));
                }
            }
        }
    }

    #[test]
    fn narinfo_fields_are_read_and_urls_kept_under_the_cache() {
        let text = "StorePath: /nix/store/k225j6dh30kihnvbpjskb7fnv2xdwb56-hello-2.12.1.tar.gz\n\
                    URL: nar/1ahmlm0dqkvvzjl8zb7vjxzwxcvd3ajz9kfqkfxfy5xls3rlmbnx.nar.xz\n\
                    Compression: xz\n\
                    NarHash: sha256:0xyz3yq9n3ld1hrc7g3l3mfyvm2aph5vcx3gv7gdhp6f9fkzb3md\n\
                    NarSize: 1234\n";
        let info = NarInfo::parse(text, "t").unwrap();
        assert_eq!(info.url, "nar/1ahmlm0dqkvvzjl8zb7vjxzwxcvd3ajz9kfqkfxfy5xls3rlmbnx.nar.xz");
        assert_eq!((info.compression.as_str(), info.nar_hash.algo()), ("xz", HashAlgo::Sha256));
        for url in ["/etc/passwd", "../x", "http://evil/x", "nar/../../x"] {
            let hostile = text.replace("nar/1ahmlm0dqkvvzjl8zb7vjxzwxcvd3ajz9kfqkfxfy5xls3rlmbnx.nar.xz", url);
            assert!(NarInfo::parse(&hostile, "t").is_err(), "{url}");
        }
        assert!(NarInfo::parse("URL: nar/x.nar\n", "t").unwrap_err().to_string().contains("no NarHash"));

        let cache = BinaryCache::new(&url::Url::parse("http://127.0.0.1:1/cache").unwrap(), Duration::from_secs(1));
        let at = |url: &str| cache.nar_url(&NarInfo { url: url.into(), ..info.clone() }).map(|u| u.to_string());
        assert_eq!(at("nar/x.nar.xz").unwrap(), "http://127.0.0.1:1/cache/nar/x.nar.xz");
        for escaped in ["nar/%2e%2e/%2e%2e/etc/passwd", "%2e%2e/x", "//evil.example/x"] {
            assert!(at(escaped).is_err(), "{escaped}");
        }
    }
}
