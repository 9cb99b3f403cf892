//! `serve` as a Nix binary cache (a substituter) for the fixed outputs of its index: one
//! `extra-substituters = http://ADDR` line, no signing key.
//!
//! The protocol, as Nix 2.8 speaks it:
//! - `GET /nix-cache-info` first: `StoreDir`, `WantMassQuery`, `Priority` (lower is asked
//!   first; cache.nixos.org says 40, this says [`PRIORITY`], so it is asked after it);
//! - then `GET /<hash part>.narinfo` for each output it needs: 404 means "not here, go on"
//!   (any other failure may fail the build, so every miss is a 404), 200 a narinfo;
//! - then the `URL` the narinfo names, here `nar/<hash part>.nar`.
//!
//! Quirks:
//! - a narinfo without a signature is accepted even with `require-sigs = true` when it carries
//!   `CA: fixed:[r:]<algo>:<nix32>` and the store path is the one that content address makes:
//!   the path is content-addressed, and Nix checks the NAR against it (and `NarHash`) itself;
//! - a flat fixed output's NAR is the file wrapped as a lone regular file, so its `NarHash` is
//!   not the source's hash and is computed here once per cached file; a recursive sha256 output's
//!   `NarHash` is its own hash;
//! - NARs go uncompressed (`Compression: none`): sources are mostly compressed tarballs already,
//!   and on the networks a substituter like this serves (loopback, a LAN) compressing on the fly
//!   would cost more CPU time than the bytes it saves cost to send; cached NARs stream from disk
//!   as they are.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Method, header};
use axum::response::Response;
use futures_util::StreamExt;

use super::index::IndexedSource;
use super::{Miss, Server, not_found};
use crate::hashing::nar::lone_file_framing;
use crate::hashing::{Hash, HashAlgo, HashMode, Hasher};

/// Where this cache ranks among substituters (cache.nixos.org: 40; larger is asked later).
pub const PRIORITY: u32 = 50;

/// What a substituter request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubstituterRequest {
    CacheInfo,
    NarInfo(String),
    Nar(String),
}

impl SubstituterRequest {
    /// The substituter request a path (without its leading `/`) is, if it is one.
    pub(crate) fn of_path(path: &str) -> Option<SubstituterRequest> {
        if path == "nix-cache-info" {
            return Some(SubstituterRequest::CacheInfo);
        }
        if let Some(hash_part) = path.strip_suffix(".narinfo").filter(|h| is_hash_part(h)) {
            return Some(SubstituterRequest::NarInfo(hash_part.to_owned()));
        }
        let hash_part = path.strip_prefix("nar/")?.strip_suffix(".nar").filter(|h| is_hash_part(h))?;
        Some(SubstituterRequest::Nar(hash_part.to_owned()))
    }
}

fn is_hash_part(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| crate::hashing::nix32::ALPHABET.contains(&b))
}

/// A cached source's NAR, as its narinfo describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NarFacts {
    pub nar_hash: Hash,
    pub nar_size: u64,
}

/// The narinfo of `source`, whose NAR is described by `facts`.
pub(crate) fn narinfo(source: &IndexedSource, facts: &NarFacts) -> String {
    let request = &source.request;
    let recursive = if request.mode == HashMode::Recursive { "r:" } else { "" };
    format!(
        "StorePath: {path}\nURL: nar/{hash_part}.nar\nCompression: none\nNarHash: sha256:{nar_hash}\n\
         NarSize: {size}\nReferences: \nCA: fixed:{recursive}{algo}:{hash}\n",
        path = source.store_path,
        hash_part = source.store_path.hash_part(),
        nar_hash = facts.nar_hash.to_nix32(),
        size = facts.nar_size,
        algo = request.hash.algo(),
        hash = request.hash.to_nix32(),
    )
}

/// The NAR facts of the verified, cached copy open in `file` (`length` bytes): what it is in
/// `mode`, wrapped as a lone file if flat.
pub(crate) fn nar_facts(
    hash: &Hash,
    mode: HashMode,
    file: &mut std::fs::File,
    length: u64,
) -> std::io::Result<NarFacts> {
    match mode {
        HashMode::Recursive if hash.algo() == HashAlgo::Sha256 => {
            Ok(NarFacts { nar_hash: hash.clone(), nar_size: length })
        }
        HashMode::Recursive => {
            let nar_hash = Hasher::hash_reader(HashAlgo::Sha256, &mut *file)?;
            Ok(NarFacts { nar_hash, nar_size: length })
        }
        HashMode::Flat => {
            let (header, trailer) = lone_file_framing(length);
            let mut hasher = HashAlgo::Sha256.hasher();
            hasher.update(&header);
            std::io::copy(file, &mut hasher)?;
            hasher.update(&trailer);
            Ok(NarFacts { nar_hash: hasher.finish(), nar_size: header.len() as u64 + length + trailer.len() as u64 })
        }
    }
}

impl Server {
    /// The answer to a substituter request, and a note for the access log.
    pub(crate) async fn substitute(
        self: &Arc<Server>,
        method: &Method,
        request: SubstituterRequest,
    ) -> (Response, String) {
        match request {
            SubstituterRequest::CacheInfo => {
                let body = format!("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: {PRIORITY}\n");
                (text(method, "text/x-nix-cache-info", body), "cache info".into())
            }
            SubstituterRequest::NarInfo(hash_part) => self.answer_narinfo(method, &hash_part).await,
            SubstituterRequest::Nar(hash_part) => self.answer_nar(method, &hash_part).await,
        }
    }

    async fn answer_narinfo(self: &Arc<Server>, method: &Method, hash_part: &str) -> (Response, String) {
        let Some(source) = self.index.get(hash_part) else {
            return (not_found(format!("{hash_part} is not in the index")), "not indexed".into());
        };
        let request = &source.request;
        if self.cache.is_none() {
            let why = "the substituter serves from the cache, which is turned off".to_owned();
            return (not_found(why), "no cache".into());
        }
        if let Some(facts) = self.cached_nar_facts(&request.hash, request.mode).await {
            return (text(method, "text/x-nix-narinfo", narinfo(&source, &facts)), "hit".into());
        }
        let resolution = match self.remembered_miss(&Server::resolution_key(&request.hash, request.mode)) {
            Some(miss) => Err(miss),
            None => self.resolve(request.clone()).await,
        };
        // Nix takes anything but a 404 for a narinfo as a broken cache: every miss is a 404.
        let miss = match resolution {
            Ok(resolved) => match self.cached_nar_facts(&request.hash, request.mode).await {
                Some(facts) => {
                    let note = format!("resolved from {}", resolved.origin);
                    return (text(method, "text/x-nix-narinfo", narinfo(&source, &facts)), note);
                }
                None => "resolved, but not in the cache".to_owned(),
            },
            Err(Miss::NotFound(why) | Miss::Failed(why)) => why,
            Err(Miss::TimedOut) => format!("{} is still being looked for; try again later", request.hash),
            Err(Miss::Busy) => "too many sources are being looked for; try again later".to_owned(),
        };
        (not_found(miss.clone()), format!("missing: {miss}"))
    }

    async fn answer_nar(self: &Arc<Server>, method: &Method, hash_part: &str) -> (Response, String) {
        let Some(source) = self.index.get(hash_part) else {
            return (not_found(format!("{hash_part} is not in the index")), "not indexed".into());
        };
        let (hash, mode) = (&source.request.hash, source.request.mode);
        let Some(cached) = self.cached(hash, mode).await else {
            return (not_found(format!("the NAR of {} is not cached", source.store_path)), "not cached".into());
        };
        let response = match mode {
            HashMode::Recursive => super::send_cached(self, method, cached),
            HashMode::Flat => send_lone_file(self, method, cached),
        };
        (response, "nar".into())
    }

    /// The NAR facts of the cached copy of a source, if intact: computed once per file and
    /// process (a flat file's NAR hash means reading it whole).
    async fn cached_nar_facts(self: &Arc<Server>, hash: &Hash, mode: HashMode) -> Option<NarFacts> {
        let super::CachedFile { file, length, .. } = self.cached(hash, mode).await?;
        let key = Server::resolution_key(hash, mode);
        if let Some(facts) = self.nar_facts.lock().expect("no thread panics holding it").get(&key) {
            return Some(facts.clone());
        }
        let hash_owned = hash.clone();
        let computed = tokio::task::spawn_blocking(move || {
            let mut file = file;
            nar_facts(&hash_owned, mode, &mut file, length)
        })
        .await
        .ok()?
        .ok()?;
        self.nar_facts.lock().expect("no thread panics holding it").insert(key, computed.clone());
        Some(computed)
    }
}

fn text(method: &Method, content_type: &'static str, body: String) -> Response {
    let length = body.len();
    let body = if method == Method::HEAD { Body::empty() } else { Body::from(body) };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response
}

/// Streams a cached flat file as its NAR: framing, the file (checked as it goes), framing.
fn send_lone_file(server: &Server, method: &Method, cached: super::CachedFile) -> Response {
    let super::CachedFile { file, length, check } = cached;
    let (header, trailer) = lone_file_framing(length);
    let nar_size = header.len() as u64 + length + trailer.len() as u64;
    super::respond(server, method, "application/x-nix-nar", nar_size, || {
        let contents = super::checked_stream(tokio::fs::File::from_std(file), check);
        let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(header)) })
            .chain(contents)
            .chain(futures_util::stream::once(async move { Ok(Bytes::from(trailer)) }));
        Body::from_stream(stream)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_three_substituter_paths_are_substituter_requests() {
        let hash_part = "0c0zsgzh3pwl0yzdyqbrbs3a3ds0njnd";
        assert_eq!(SubstituterRequest::of_path("nix-cache-info"), Some(SubstituterRequest::CacheInfo));
        assert_eq!(
            SubstituterRequest::of_path(&format!("{hash_part}.narinfo")),
            Some(SubstituterRequest::NarInfo(hash_part.into()))
        );
        assert_eq!(
            SubstituterRequest::of_path(&format!("nar/{hash_part}.nar")),
            Some(SubstituterRequest::Nar(hash_part.into()))
        );
        // Too short, a letter nix32 lacks (`e`), a mirror path.
        for path in
            ["0c0zsgzh.narinfo", "ec0zsgzh3pwl0yzdyqbrbs3a3ds0njnd.narinfo", "sha256/0c0zsgzh3pwl0yzdyqbrbs3a3ds0njnd"]
        {
            assert_eq!(SubstituterRequest::of_path(path), None, "{path}");
        }
    }

    #[test]
    fn a_lone_file_nar_is_framing_around_the_contents() {
        // `nix-store --dump` of a file holding "hello\n", hashed with `nix-hash --type sha256
        // --base32` of the same file.
        let (header, trailer) = lone_file_framing(6);
        let mut nar = header;
        nar.extend_from_slice(b"hello\n");
        nar.extend_from_slice(&trailer);
        assert_eq!(nar.len(), 120);
        // Contents padded to 8 bytes, then the closing token, `)` with its length and padding.
        assert_eq!(&nar[nar.len() - 24..], b"hello\n\0\0\x01\0\0\0\0\0\0\0)\0\0\0\0\0\0\0");
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, b"hello\n").unwrap();
        std::io::Seek::rewind(&mut file).unwrap();
        let hash = Hash::parse("sha256-WJG1tSLV3whtD/CxEPvZ0hu0/HFjrzTQgoai6Eb2vgM=", None).unwrap();
        let facts = nar_facts(&hash, HashMode::Flat, &mut file, 6).unwrap();
        assert_eq!(facts.nar_size, 120);
        assert_eq!(facts.nar_hash.to_nix32(), "04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw");
    }
}
