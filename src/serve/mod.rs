//! `serve`: a hashed mirror for Nix (and Guix) builds, and a Nix substituter for the fixed
//! outputs its index names (see `substituter`), answered from the cache or, on a miss, from
//! Software Heritage through the [`Fetcher`] (contents, ExtIDs, the bridge index, recipes, git
//! commits, the vault).
//!
//! What clients need (see `path` for the request forms):
//! - Nix asks every mirror before the main URL and takes a 404 as "try the next one"; a 200 with
//!   wrong bytes fails the build without falling back. So a 200 goes out only with bytes that
//!   were verified against the requested hash: by the fetcher on their way in, and, for cache
//!   hits, by the cache's BLAKE3 of them, checked on every hit (a damaged entry is removed and
//!   the request resolved as a miss, which stores the file again);
//! - nixpkgs' builder sends a `HEAD` first: it resolves as a `GET` would, so the `GET` that
//!   follows is a hit;
//! - a build must not hang on a slow archive: past `resolve_timeout` the answer is a 404 (the
//!   resolution goes on, and a later request finds the file cached).
//!
//! Requests for the same hash share one resolution; at most `max_resolutions` run at once, and
//! at most [`MAX_PENDING`] wait (then a 503); a hash found missing is answered 404 from memory
//! for `negative_ttl`, a failure 502 for a minute.

pub mod index;
pub(crate) mod metrics;
pub(crate) mod path;
pub(crate) mod substituter;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{Semaphore, watch};

use crate::error_chain::error_chain;
use crate::fallback::{Cache, Fetcher};
use crate::hashing::{Hash, HashMode};
use crate::plan::SourceRequest;
use crate::store::StorePath;
use index::SourceIndex;
use metrics::Metrics;
use path::Requested;
use substituter::{NarFacts, SubstituterRequest};

/// How the server behaves.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Fetches that may run at once.
    pub max_resolutions: usize,
    /// How long a request waits for its resolution before answering 404.
    pub resolve_timeout: Duration,
    /// How long a hash found missing is answered 404 without asking again.
    pub negative_ttl: Duration,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            max_resolutions: 4,
            resolve_timeout: Duration::from_secs(120),
            negative_ttl: Duration::from_secs(600),
        }
    }
}

/// How long one resolution may take (a vault cooking included) before it is given up.
const RESOLUTION_LIMIT: Duration = Duration::from_secs(3600);

/// Why a hash is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Miss {
    /// Nowhere to be found, or not recoverable: 404.
    NotFound(String),
    /// The archive failed (or gave wrong bytes): 502.
    Failed(String),
    /// Still resolving when the request's patience ran out: 404.
    TimedOut,
    /// Too many searches under way: 503.
    Busy,
}

/// Ends a resolution's entry in the in-flight table however the task ends (a panic included,
/// which would otherwise leave every later request for the hash waiting on nothing).
struct Done {
    server: Arc<Server>,
    key: String,
}

impl Drop for Done {
    fn drop(&mut self) {
        if let Ok(mut inflight) = self.server.inflight.lock() {
            inflight.remove(&self.key);
        }
    }
}

/// How long a failure is answered from memory.
const FAILURE_MEMORY: Duration = Duration::from_secs(60);
/// Misses remembered at most (beyond, the expired ones are swept, then all).
const MAX_REMEMBERED: usize = 100_000;
/// Searches under way or waiting for a slot at most; beyond, new hashes get a 503.
const MAX_PENDING: usize = 1024;

/// A file resolved on a miss, verified, in a scratch directory removed when the last request
/// waiting for it has opened it.
struct Resolved {
    path: PathBuf,
    origin: String,
    _dir: tempfile::TempDir,
}

type Resolution = Result<Arc<Resolved>, Miss>;

pub struct Server {
    fetcher: Fetcher,
    cache: Option<Cache>,
    scratch: PathBuf,
    options: ServeOptions,
    resolutions: Arc<Semaphore>,
    inflight: Mutex<HashMap<String, watch::Receiver<Option<Resolution>>>>,
    /// Misses answered from memory: not found for `negative_ttl`, failures for a minute (Nix
    /// retries a 5xx, and each retry must not become a new search).
    remembered: Mutex<HashMap<String, (Instant, Miss)>>,
    /// The store paths the substituter answers for.
    index: Arc<SourceIndex>,
    /// The BLAKE3 of cache files checked whole once, by (device, inode, length, mtime and
    /// ctime in nanoseconds): later hits are checked while they stream (see [`Checked`]).
    verified: Mutex<HashMap<FileIdentity, blake3::Hash>>,
    /// The NAR hash and size of cached sources, by resolution key, once computed.
    nar_facts: Mutex<HashMap<String, NarFacts>>,
    log: AccessLog,
    pub(crate) metrics: Metrics,
}

/// The access log, on standard error, written by a thread of its own so that requests never
/// wait on it. The thread wakes every 50 ms and writes what came meanwhile in one go: waking it
/// for each line cost a busy server a fifth of its throughput.
struct AccessLog {
    lines: std::sync::mpsc::Sender<String>,
}

impl AccessLog {
    fn new() -> AccessLog {
        let (lines, received) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut out = std::io::BufWriter::new(std::io::stderr());
            loop {
                std::thread::sleep(Duration::from_millis(50));
                loop {
                    match received.try_recv() {
                        Ok(line) => {
                            let _ = writeln!(out, "{line}");
                        }
                        Err(std::sync::mpsc::TryRecvError::Empty) => break,
                        Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                            let _ = out.flush();
                            return;
                        }
                    }
                }
                let _ = out.flush();
            }
        });
        AccessLog { lines }
    }

    fn write(&self, line: String) {
        // The thread only ends once the server is dropped.
        let _ = self.lines.send(line);
    }
}

impl Server {
    /// A server fetching with `fetcher`, serving hits from `cache` (the one the fetcher fills),
    /// resolving misses into `scratch`, and substituting the store paths of `index`.
    pub fn new(
        fetcher: Fetcher,
        cache: Option<Cache>,
        scratch: PathBuf,
        options: ServeOptions,
        index: Arc<SourceIndex>,
    ) -> Server {
        Server {
            fetcher,
            cache,
            scratch,
            resolutions: Arc::new(Semaphore::new(options.max_resolutions.max(1))),
            options,
            inflight: Mutex::new(HashMap::new()),
            remembered: Mutex::new(HashMap::new()),
            index,
            verified: Mutex::new(HashMap::new()),
            nar_facts: Mutex::new(HashMap::new()),
            log: AccessLog::new(),
            metrics: Metrics::default(),
        }
    }

    /// The HTTP routes: `/healthz`, `/metrics`, and every other path as a substituter request
    /// (`/nix-cache-info`, `/<hash part>.narinfo`, `/nar/<hash part>.nar`) or a mirror request.
    pub(crate) fn router(self: Arc<Server>) -> axum::Router {
        axum::Router::new()
            .route("/healthz", axum::routing::get(|| async { "ok\n" }))
            .route("/metrics", axum::routing::get(metrics_page))
            .fallback(mirror)
            .with_state(self)
    }

    /// The cached copy (a file, or a tree's NAR), opened, if there is one and it is intact.
    async fn cached(self: &Arc<Server>, hash: &Hash, mode: HashMode) -> Option<CachedFile> {
        let cache = self.cache.clone()?;
        let (server, hash) = (self.clone(), hash.clone());
        // One trip to the blocking pool for the whole check: this is the path every hit takes.
        let opened = tokio::task::spawn_blocking(move || {
            let mut file = std::fs::File::open(cache.path(&hash, mode)).ok()?;
            let metadata = file.metadata().ok()?;
            let key: FileIdentity = (
                metadata.dev(),
                metadata.ino(),
                metadata.len(),
                metadata.mtime() * 1_000_000_000 + metadata.mtime_nsec(),
                metadata.ctime() * 1_000_000_000 + metadata.ctime_nsec(),
            );
            let known = server.verified.lock().expect("no thread panics holding it").get(&key).copied();
            let expected = match known {
                Some(digest) => digest,
                None => {
                    // Checked whole before the first answer, so that a damaged entry is
                    // resolved again (a miss) rather than cut off mid-answer.
                    let digest = cache.intact_digest(&hash, mode, &mut file)?;
                    std::io::Seek::rewind(&mut file).ok()?;
                    server.verified.lock().expect("no thread panics holding it").insert(key, digest);
                    digest
                }
            };
            let what = hash.to_string();
            let on_mismatch = Box::new(move || {
                server.verified.lock().expect("no thread panics holding it").remove(&key);
                cache.discard_entry(&hash, mode);
            });
            Some(CachedFile { file, length: metadata.len(), check: Checked { expected, what, on_mismatch } })
        });
        opened.await.ok().flatten()
    }

    fn remembered_miss(&self, key: &str) -> Option<Miss> {
        let mut remembered = self.remembered.lock().expect("no thread panics holding it");
        let (when, miss) = remembered.get(key)?;
        if when.elapsed() < self.memory_of(miss) {
            return Some(miss.clone());
        }
        remembered.remove(key);
        None
    }

    fn memory_of(&self, miss: &Miss) -> Duration {
        match miss {
            Miss::NotFound(_) => self.options.negative_ttl,
            _ => FAILURE_MEMORY,
        }
    }

    fn remember(&self, key: &str, miss: &Miss) {
        let mut remembered = self.remembered.lock().expect("no thread panics holding it");
        // Requests for random hashes must not grow it without end.
        if remembered.len() >= MAX_REMEMBERED {
            remembered.retain(|_, (when, miss)| when.elapsed() < self.memory_of(miss));
            if remembered.len() >= MAX_REMEMBERED {
                remembered.clear();
            }
        }
        remembered.insert(key.to_owned(), (Instant::now(), miss.clone()));
    }

    /// What resolutions and remembered misses are keyed by.
    fn resolution_key(hash: &Hash, mode: HashMode) -> String {
        match mode {
            HashMode::Flat => hash.to_sri(),
            HashMode::Recursive => format!("nar:{}", hash.to_sri()),
        }
    }

    /// Resolves a source, joining a resolution already under way.
    async fn resolve(self: &Arc<Server>, request: SourceRequest) -> Resolution {
        let key = Server::resolution_key(&request.hash, request.mode);
        let mut receiver = {
            let mut inflight = self.inflight.lock().expect("no thread panics holding it");
            match inflight.get(&key) {
                Some(receiver) => receiver.clone(),
                None if inflight.len() >= MAX_PENDING => return Err(Miss::Busy),
                None => {
                    let (sender, receiver) = watch::channel(None);
                    inflight.insert(key.clone(), receiver.clone());
                    let done = Done { server: self.clone(), key: key.clone() };
                    // A task of its own: it finishes (and fills the cache) even if every request
                    // waiting for it has given up.
                    tokio::spawn(async move {
                        let resolution = done.server.fetch(&request).await;
                        if let Err(miss @ (Miss::NotFound(_) | Miss::Failed(_))) = &resolution {
                            done.server.remember(&done.key, miss);
                        }
                        let _ = sender.send(Some(resolution));
                    });
                    receiver
                }
            }
        };
        let waited = tokio::time::timeout(self.options.resolve_timeout, receiver.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(resolution)) => resolution.clone().expect("waited for a value"),
            Ok(Err(_)) => Err(Miss::Failed("the resolution ended without an answer".into())),
            Err(_) => Err(Miss::TimedOut),
        }
    }

    async fn fetch(&self, request: &SourceRequest) -> Resolution {
        let _permit = self.resolutions.clone().acquire_owned().await.expect("the semaphore is never closed");
        Metrics::add(&self.metrics.resolutions, 1);
        Metrics::add(&self.metrics.resolutions_in_flight, 1);
        let started = Instant::now();
        // A resolution that never ends (a hostile recipe can keep preflate busy forever) would
        // hold its slot for good: it is dropped after an hour. Its blocking thread, if any,
        // runs on; moving recipe rebuilds into a child process with limits would stop that.
        let result = tokio::time::timeout(RESOLUTION_LIMIT, self.fetch_to_scratch(request))
            .await
            .unwrap_or_else(|_| Err(Miss::Failed(format!("no answer within {} s", RESOLUTION_LIMIT.as_secs()))));
        self.metrics.resolved(started.elapsed());
        self.metrics.resolutions_in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        result
    }

    async fn fetch_to_scratch(&self, request: &SourceRequest) -> Resolution {
        let failed = |why: String| Miss::Failed(why);
        std::fs::create_dir_all(&self.scratch)
            .map_err(|e| failed(format!("failed to create the scratch directory: {e}")))?;
        let dir = crate::atomic::scratch_dir_in(&self.scratch, "serve")
            .map_err(|e| failed(format!("failed to make a scratch directory: {e}")))?;
        let path = dir.path().join("file");
        match self.fetcher.fetch(request, &path).await {
            Ok(report) => Ok(Arc::new(Resolved { path, origin: report.origin, _dir: dir })),
            Err(err) if err.is_not_found() => Err(Miss::NotFound(error_chain(&err))),
            Err(err) => Err(Miss::Failed(error_chain(&err))),
        }
    }
}

async fn metrics_page(State(server): State<Arc<Server>>) -> Response {
    let mut response = server.metrics.render().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    response
}

/// A mirror request: `GET` or `HEAD` on a path naming a hash.
async fn mirror(
    State(server): State<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
) -> Response {
    let started = Instant::now();
    let raw = uri.path().strip_prefix('/').unwrap_or(uri.path()).to_owned();
    let path = percent_encoding::percent_decode_str(&raw).decode_utf8_lossy().into_owned();
    let (response, note) = answer(&server, &method, &path).await;
    let status = response.status();
    let length = response.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).unwrap_or("-");
    server.log.write(format!(
        "{peer} \"{method} /{raw}\" {} {length} {:.1}ms {note}",
        status.as_u16(),
        started.elapsed().as_secs_f64() * 1e3
    ));
    response
}

/// The response to a mirror request, and a note for the access log.
async fn answer(server: &Arc<Server>, method: &Method, path: &str) -> (Response, String) {
    if method != Method::GET && method != Method::HEAD {
        let mut response = StatusCode::METHOD_NOT_ALLOWED.into_response();
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return (response, "only GET and HEAD".into());
    }
    if let Some(request) = SubstituterRequest::of_path(path) {
        Metrics::add(&server.metrics.requests, 1);
        return server.substitute(method, request).await;
    }
    let requested = match path::requested(path) {
        Ok(requested) => requested,
        Err(err) => return (not_found(err.to_string()), "no hash".into()),
    };
    let hash = &requested.hash;
    Metrics::add(&server.metrics.requests, 1);
    if let Some(cached) = server.cached(hash, HashMode::Flat).await {
        Metrics::add(&server.metrics.hits, 1);
        return (send_cached(server, method, cached), "hit".into());
    }
    Metrics::add(&server.metrics.misses, 1);
    let resolution = match server.remembered_miss(&Server::resolution_key(hash, HashMode::Flat)) {
        Some(miss) => Err(miss),
        None => server.resolve(mirror_request(&requested)).await,
    };
    match resolution {
        // The scratch file may go once this request has it open: the open file stays readable.
        Ok(resolved) => (send_file(server, method, &resolved.path).await, format!("resolved from {}", resolved.origin)),
        Err(Miss::NotFound(why)) => {
            Metrics::add(&server.metrics.not_found, 1);
            (not_found(why), "missing".into())
        }
        Err(Miss::TimedOut) => {
            Metrics::add(&server.metrics.not_found, 1);
            let why = format!("{hash} is still being looked for; try again later");
            (not_found(why), "timed out".into())
        }
        Err(Miss::Busy) => {
            Metrics::add(&server.metrics.failures, 1);
            let why = "too many sources are being looked for; try again later".to_owned();
            (error_response(StatusCode::SERVICE_UNAVAILABLE, &why), "busy".into())
        }
        Err(Miss::Failed(why)) => {
            Metrics::add(&server.metrics.failures, 1);
            (error_response(StatusCode::BAD_GATEWAY, &why), format!("failed: {why}"))
        }
    }
}

/// What a mirror request asks the fetcher for: a flat file by its hash.
fn mirror_request(requested: &Requested) -> SourceRequest {
    let mut request = SourceRequest::of_hash(requested.hash.clone(), HashMode::Flat);
    // A named file has a store path, under which a binary cache may keep it.
    request.store_path =
        requested.name.as_deref().and_then(|name| StorePath::fixed_output(name, &requested.hash, HashMode::Flat).ok());
    request
}

fn error_response(status: StatusCode, why: &str) -> Response {
    let mut response = (status, format!("{why}\n")).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn not_found(why: String) -> Response {
    error_response(StatusCode::NOT_FOUND, &why)
}

/// A file as the file system tells it apart: device, inode, length, mtime and ctime in
/// nanoseconds (a write, or `touch -r`, changes the ctime).
type FileIdentity = (u64, u64, u64, i64, i64);

/// A cache file opened for a hit, with what its bytes must hash to.
pub(crate) struct CachedFile {
    file: std::fs::File,
    length: u64,
    check: Checked,
}

/// What a cache file streamed to a client must hash to: a file can change after it was checked
/// (bit rot keeps its size, inode and times). Every chunk is hashed on its way out and the
/// last one is held back until the whole matches; on a mismatch the body fails, so the client
/// gets a cut-off answer (which Nix takes as a failed mirror) and never the whole of a wrong
/// file, and the entry is removed for the next request to store again.
pub(crate) struct Checked {
    expected: blake3::Hash,
    /// What the bytes are, in the error.
    what: String,
    /// Called on a mismatch: forgets the file and removes the entry.
    on_mismatch: Box<dyn FnOnce() + Send + Sync>,
}

impl Checked {
    fn failed(self) -> std::io::Error {
        (self.on_mismatch)();
        std::io::Error::other(format!("the cached copy of {} changed after it was checked", self.what))
    }
}

/// The bytes of `file`, with `check` held to (see [`Checked`]).
fn checked_stream(
    file: tokio::fs::File,
    check: Checked,
) -> impl futures_util::Stream<Item = std::io::Result<axum::body::Bytes>> + Send {
    use futures_util::StreamExt;
    struct State {
        chunks: tokio_util::io::ReaderStream<tokio::fs::File>,
        hasher: blake3::Hasher,
        held: Option<axum::body::Bytes>,
        check: Option<Checked>,
    }
    let state = State {
        chunks: tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024),
        hasher: blake3::Hasher::new(),
        held: None,
        check: Some(check),
    };
    futures_util::stream::unfold(state, |mut state| async move {
        loop {
            let check = state.check.as_ref()?;
            match state.chunks.next().await {
                Some(Ok(chunk)) => {
                    state.hasher.update(&chunk);
                    if let Some(previous) = state.held.replace(chunk) {
                        return Some((Ok(previous), state));
                    }
                }
                Some(Err(err)) => {
                    state.check = None;
                    return Some((Err(err), state));
                }
                None if state.hasher.finalize() == check.expected => {
                    state.check = None;
                    return state.held.take().map(|last| (Ok(last), state));
                }
                None => {
                    let failed = state.check.take().expect("checked above").failed();
                    return Some((Err(failed), state));
                }
            }
        }
    })
}

/// Streams a cache hit (or only its headers, for `HEAD`), checked as it goes.
fn send_cached(server: &Server, method: &Method, cached: CachedFile) -> Response {
    let CachedFile { file, length, check } = cached;
    respond(server, method, "application/octet-stream", length, || {
        Body::from_stream(checked_stream(tokio::fs::File::from_std(file), check))
    })
}

/// Streams a verified file from its path (or only its headers, for `HEAD`).
async fn send_file(server: &Server, method: &Method, path: &std::path::Path) -> Response {
    let file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(err) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("failed to open the file: {err}\n")).into_response();
        }
    };
    match file.metadata().await {
        Ok(metadata) => send(server, method, file, metadata.len()),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, format!("failed to read the file: {err}\n")).into_response(),
    }
}

/// Streams a verified, open file of `length` bytes (or only its headers, for `HEAD`).
fn send(server: &Server, method: &Method, file: tokio::fs::File, length: u64) -> Response {
    respond(server, method, "application/octet-stream", length, || {
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024))
    })
}

/// The response carrying `length` verified bytes that `body` streams (not made for `HEAD`,
/// which gets the headers alone).
fn respond(
    server: &Server,
    method: &Method,
    content_type: &'static str,
    length: u64,
    body: impl FnOnce() -> Body,
) -> Response {
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Metrics::add(&server.metrics.bytes, length);
        body()
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    // Content-addressed: the bytes behind a hash never change.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    response
}

/// How long a client may take to send a request's headers, and an idle connection may stay open,
/// unless told otherwise.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves until SIGINT or SIGTERM, then finishes the requests under way. A connection whose
/// request headers do not arrive within `header_timeout` (a client that stalls, or an idle
/// keep-alive connection) is closed.
pub async fn run(
    server: Arc<Server>,
    listener: tokio::net::TcpListener,
    header_timeout: Duration,
) -> std::io::Result<()> {
    use tower_layer::Layer;

    let router = server.router();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
    let connections = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors, say: the connections under way will free some.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Without it, a small file's body waits out the client's delayed ACK (40 ms) behind the
        // headers.
        let _ = tcp.set_nodelay(true);
        let service = axum::Extension(ConnectInfo(peer)).layer(router.clone());
        let connection = http.serve_connection(
            hyper_util::rt::TokioIo::new(tcp),
            hyper_util::service::TowerToHyperService::new(service),
        );
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            // A client that goes away or sends garbage ends only its own connection.
            let _ = connection.await;
        });
    }
    connections.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

#[cfg(test)]
mod checked_tests {
    use super::*;
    use futures_util::StreamExt;

    /// Streams `contents` from a file, checked against `expected`; returns the bytes that went
    /// out, whether the stream ended in an error, and whether the mismatch hook ran.
    async fn stream(contents: &[u8], expected: blake3::Hash) -> (Vec<u8>, bool, bool) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, contents).unwrap();
        let hooked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = hooked.clone();
        let on_mismatch = Box::new(move || flag.store(true, std::sync::atomic::Ordering::SeqCst));
        let check = Checked { expected, what: "f".into(), on_mismatch };
        let mut chunks = Box::pin(checked_stream(tokio::fs::File::open(&path).await.unwrap(), check));
        let (mut sent, mut failed) = (Vec::new(), false);
        while let Some(chunk) = chunks.next().await {
            match chunk {
                Ok(bytes) => sent.extend_from_slice(&bytes),
                Err(_) => failed = true,
            }
        }
        (sent, failed, hooked.load(std::sync::atomic::Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_changed_file_is_cut_short_and_reported() {
        let contents: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(stream(&contents, blake3::hash(&contents)).await, (contents.clone(), false, false));
        let (sent, failed, hooked) = stream(&contents, blake3::hash(b"other bytes")).await;
        // Chunks of 256 KiB: the last (here 175,712 bytes) is held back and never sent.
        assert!(failed && hooked);
        assert_eq!(sent, contents[..2 * 256 * 1024]);
        assert_eq!(stream(b"", blake3::hash(b"")).await, (Vec::new(), false, false));
        assert_eq!(stream(b"", blake3::hash(b"x")).await, (Vec::new(), true, true));
    }
}
