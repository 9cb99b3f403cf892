use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use url::Url;

use super::model::{
    ContentInfo, DirectoryEntry, ErrorBody, ExtId, Revision, SaveRequest, VaultBundle, VaultStatus, VaultTask,
    VisitType,
};
use crate::hashing::{Hash, HashAlgo, ObjectType, Swhid};

/// The public archive's API.
pub const PUBLIC_API: &str = "https://archive.softwareheritage.org/api/1/";

/// `/known/` takes at most this many SWHIDs per request.
pub const KNOWN_BATCH: usize = 1000;

/// How to reach the archive and how patient to be with it.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The API root, ending in `/api/1/`.
    pub base_url: Url,
    /// Sent as `Authorization: Bearer …` (anonymous users get 120 requests an hour, tokens 1,200).
    pub token: Option<String>,
    /// When rate limited, wait for the reset if it comes within this; else fail saying when.
    pub max_rate_limit_wait: Duration,
    /// Retries after a 5xx answer or a transport error, with exponential backoff.
    pub retries: u32,
    pub backoff: Duration,
    /// One request's timeout.
    pub timeout: Duration,
    /// One call's, retries and backoff included (rate-limit waits are bounded apart, by
    /// `max_rate_limit_wait`).
    pub call_deadline: Duration,
    /// How long a bundle may stay `new` or `pending` in the vault before waiting stops.
    pub vault_deadline: Duration,
}

/// How long one call to the archive may take, retries included, unless told otherwise: two
/// requests' timeouts.
pub const DEFAULT_CALL_DEADLINE: Duration = Duration::from_secs(120);
/// How long a bundle may take to cook unless told otherwise: the vault cooks a large source
/// tree in minutes; past this, it is queued behind others or stuck.
pub const DEFAULT_VAULT_DEADLINE: Duration = Duration::from_secs(15 * 60);

impl ClientConfig {
    pub fn for_api(base_url: Url) -> ClientConfig {
        ClientConfig {
            base_url,
            token: std::env::var("SWH_TOKEN").ok().filter(|t| !t.is_empty()),
            max_rate_limit_wait: Duration::from_secs(0),
            retries: 4,
            backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(60),
            call_deadline: DEFAULT_CALL_DEADLINE,
            vault_deadline: DEFAULT_VAULT_DEADLINE,
        }
    }
}

/// Why a call to the archive failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("{what} is not in the archive")]
    NotFound { what: String },
    #[error("the archive rate-limits this client until {} (unix time {until}); retry then, or set SWH_TOKEN for a higher limit", format_time(*until))]
    RateLimited { until: u64 },
    #[error("the archive failed on {what} with {status}: {reason}")]
    Server { what: String, status: u16, reason: String },
    #[error("the archive refused {what} with {status}: {reason}")]
    Refused { what: String, status: u16, reason: String },
    #[error("failed to read the archive's answer to {what}")]
    Malformed {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to reach the archive for {what}")]
    Transport {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("gave up {what} after {seconds} s")]
    TimedOut { what: String, seconds: u64 },
    #[error("{swhid} cannot be asked for as a {expected}")]
    WrongType { swhid: Swhid, expected: &'static str },
}

impl ApiError {
    /// Whether the archive could not be asked at all (a rate limit, an outage, no route): asking
    /// it anything else now would fail the same way.
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ApiError::RateLimited { .. }
                | ApiError::Transport { .. }
                | ApiError::Server { .. }
                | ApiError::TimedOut { .. }
        )
    }
}

fn format_time(unix: u64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    match unix.checked_sub(now) {
        Some(secs) => format!("{secs} s from now"),
        None => "now".into(),
    }
}

/// A client for the Software Heritage Web API.
pub struct ArchiveClient {
    http: reqwest::Client,
    config: ClientConfig,
    requests: AtomicU64,
    /// The last rate-limit state seen: requests remaining, and when the window resets.
    limit: Mutex<Option<(u64, u64)>>,
}

impl ArchiveClient {
    pub fn new(config: ClientConfig) -> ArchiveClient {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("swh-bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a client with a timeout and a user agent builds");
        ArchiveClient { http, config, requests: AtomicU64::new(0), limit: Mutex::new(None) }
    }

    /// HTTP requests sent so far, retries included.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn url(&self, path: &str) -> Url {
        self.config.base_url.join(path).expect("API paths are relative URLs")
    }

    /// Sends a request, waiting out rate limits when allowed and retrying server errors.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        what: &str,
    ) -> Result<reqwest::Response, ApiError> {
        let mut failures = 0;
        let mut deadline = Instant::now() + self.config.call_deadline;
        let timed_out = || ApiError::TimedOut { what: what.to_owned(), seconds: self.config.call_deadline.as_secs() };
        loop {
            // Waiting out a rate limit is bounded apart: it does not count against the call.
            let waiting = Instant::now();
            self.respect_known_limit().await?;
            deadline += waiting.elapsed();
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(timed_out());
            }
            let mut request =
                self.http.request(method.clone(), self.url(path)).timeout(remaining.min(self.config.timeout));
            if let Some(token) = &self.config.token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let response = match request.send().await {
                Ok(response) => response,
                Err(source) if failures < self.config.retries && (source.is_timeout() || source.is_connect()) => {
                    failures += 1;
                    let backoff = self.config.backoff * 2u32.pow(failures - 1);
                    if Instant::now() + backoff >= deadline {
                        return Err(timed_out());
                    }
                    tokio::time::sleep(backoff).await;
                    continue;
                }
                Err(source) if source.is_timeout() && Instant::now() >= deadline => return Err(timed_out()),
                Err(source) => return Err(ApiError::Transport { what: what.to_owned(), source }),
            };
            self.note_limit(&response);
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                let until = header_u64(&response, "x-ratelimit-reset").unwrap_or_else(|| now() + 60);
                let waiting = Instant::now();
                self.wait_until(until).await?;
                deadline += waiting.elapsed();
                continue;
            }
            let backoff = self.config.backoff * 2u32.pow(failures);
            if status.is_server_error() && failures < self.config.retries && Instant::now() + backoff < deadline {
                failures += 1;
                tokio::time::sleep(backoff).await;
                continue;
            }
            let reason =
                response.json::<ErrorBody>().await.map(|b| format!("{} {}", b.exception, b.reason)).unwrap_or_default();
            let what = what.to_owned();
            return Err(match status {
                StatusCode::NOT_FOUND => ApiError::NotFound { what },
                s if s.is_server_error() => {
                    ApiError::Server { what, status: s.as_u16(), reason: reason.trim().to_owned() }
                }
                s => ApiError::Refused { what, status: s.as_u16(), reason: reason.trim().to_owned() },
            });
        }
    }

    fn note_limit(&self, response: &reqwest::Response) {
        if let (Some(remaining), Some(reset)) =
            (header_u64(response, "x-ratelimit-remaining"), header_u64(response, "x-ratelimit-reset"))
        {
            *self.limit.lock().expect("no thread panics holding it") = Some((remaining, reset));
        }
    }

    /// Before a request: if the last answer said no request is left, wait for the reset (or fail).
    async fn respect_known_limit(&self) -> Result<(), ApiError> {
        let known = *self.limit.lock().expect("no thread panics holding it");
        match known {
            Some((0, reset)) if reset > now() => self.wait_until(reset).await,
            _ => Ok(()),
        }
    }

    async fn wait_until(&self, until: u64) -> Result<(), ApiError> {
        let wait = Duration::from_secs(until.saturating_sub(now()));
        if wait > self.config.max_rate_limit_wait {
            return Err(ApiError::RateLimited { until });
        }
        tokio::time::sleep(wait).await;
        *self.limit.lock().expect("no thread panics holding it") = None;
        Ok(())
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<T, ApiError> {
        let response = self.send(Method::GET, path, None, what).await?;
        read_json(response, what).await
    }

    /// Metadata of a content.
    pub async fn content(&self, key: &ContentKey) -> Result<ContentInfo, ApiError> {
        self.get_json(&format!("content/{key}/"), &format!("content {key}")).await
    }

    /// The bytes of a content, as a response to stream.
    pub async fn content_raw(&self, key: &ContentKey) -> Result<reqwest::Response, ApiError> {
        self.send(Method::GET, &format!("content/{key}/raw/"), None, &format!("content {key}")).await
    }

    /// What the ExtID of `kind` for `hash` (`checksum-sha256`, `nar-sha256`, …) points to, in
    /// version 1 of the ExtID rules (version 0 placed tarballs' top directories differently).
    pub async fn extid(&self, kind: ExtIdKind, hash: &Hash) -> Result<ExtId, ApiError> {
        let (extid_type, hex) = (kind.extid_type(hash.algo()), hash.to_hex());
        self.get_json(&format!("extid/{extid_type}/hex:{hex}/?extid_version=1"), &format!("ExtID {extid_type} {hex}"))
            .await
    }

    /// Which of these SWHIDs the archive has, asked in batches of [`KNOWN_BATCH`].
    pub async fn known(&self, swhids: &[Swhid]) -> Result<HashMap<Swhid, bool>, ApiError> {
        #[derive(serde::Deserialize)]
        struct Known {
            known: bool,
        }
        let mut answer = HashMap::with_capacity(swhids.len());
        for batch in swhids.chunks(KNOWN_BATCH) {
            let body = serde_json::to_value(batch).expect("SWHIDs serialise");
            let response = self.send(Method::POST, "known/", Some(&body), "known SWHIDs").await?;
            let known: HashMap<Swhid, Known> = read_json(response, "known SWHIDs").await?;
            answer.extend(known.into_iter().map(|(swhid, k)| (swhid, k.known)));
        }
        Ok(answer)
    }

    /// The entries of a directory.
    pub async fn directory(&self, directory: &Swhid) -> Result<Vec<DirectoryEntry>, ApiError> {
        let hex = expect_type(directory, ObjectType::Directory)?;
        self.get_json(&format!("directory/{hex}/"), &format!("directory {hex}")).await
    }

    pub async fn revision(&self, revision: &Swhid) -> Result<Revision, ApiError> {
        let hex = expect_type(revision, ObjectType::Revision)?;
        self.get_json(&format!("revision/{hex}/"), &format!("revision {hex}")).await
    }

    /// Asks the vault to cook a bundle (`flat` for a directory, `git-bare` for a revision).
    pub(crate) async fn vault_cook(&self, bundle: VaultBundle, swhid: &Swhid) -> Result<VaultTask, ApiError> {
        let what = format!("the {} bundle of {swhid}", bundle.name());
        let response = self.send(Method::POST, &format!("vault/{}/{swhid}/", bundle.name()), None, &what).await?;
        read_json(response, &what).await
    }

    pub(crate) async fn vault_status(&self, bundle: VaultBundle, swhid: &Swhid) -> Result<VaultTask, ApiError> {
        let what = format!("the {} bundle of {swhid}", bundle.name());
        self.get_json(&format!("vault/{}/{swhid}/", bundle.name()), &what).await
    }

    /// Requests a bundle and polls until it is cooked, waiting `poll` at first and twice as long
    /// each time up to a minute; a failed cooking is an error with the vault's message, and so
    /// is a bundle still not cooked after the vault deadline.
    pub async fn vault_wait(&self, bundle: VaultBundle, swhid: &Swhid, poll: Duration) -> Result<VaultTask, ApiError> {
        let deadline = Instant::now() + self.config.vault_deadline;
        let mut task = self.vault_cook(bundle, swhid).await?;
        let mut delay = poll;
        loop {
            match task.status {
                VaultStatus::Done => return Ok(task),
                VaultStatus::Failed => {
                    return Err(ApiError::Server {
                        what: format!("cooking the {} bundle of {swhid}", bundle.name()),
                        status: 200,
                        reason: task.progress_message.unwrap_or_else(|| "the vault gave no reason".into()),
                    });
                }
                VaultStatus::New | VaultStatus::Pending => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(ApiError::TimedOut {
                            what: format!("waiting for the vault to cook the {} bundle of {swhid}", bundle.name()),
                            seconds: self.config.vault_deadline.as_secs(),
                        });
                    }
                    tokio::time::sleep(delay.min(left)).await;
                    delay = (delay * 2).min(Duration::from_secs(60));
                    task = self.vault_status(bundle, swhid).await?;
                }
            }
        }
    }

    /// The cooked bundle, as a response to stream.
    pub(crate) async fn vault_download(
        &self,
        bundle: VaultBundle,
        swhid: &Swhid,
    ) -> Result<reqwest::Response, ApiError> {
        let what = format!("the {} bundle of {swhid}", bundle.name());
        self.send(Method::GET, &format!("vault/{}/{swhid}/raw/", bundle.name()), None, &what).await
    }

    /// Asks Save Code Now to archive an origin. The origin goes in the query string, which keeps
    /// URLs with `?` or spaces intact.
    pub(crate) async fn save_code_now(&self, visit_type: VisitType, origin: &str) -> Result<SaveRequest, ApiError> {
        let what = format!("saving {origin}");
        let response = self.send(Method::POST, &save_query(visit_type, origin), None, &what).await?;
        read_json(response, &what).await
    }

    /// The Save Code Now requests ever made for an origin (none is a 404, given here as empty).
    pub(crate) async fn save_requests(
        &self,
        visit_type: VisitType,
        origin: &str,
    ) -> Result<Vec<SaveRequest>, ApiError> {
        match self.get_json(&save_query(visit_type, origin), &format!("the save requests of {origin}")).await {
            Err(ApiError::NotFound { .. }) => Ok(Vec::new()),
            other => other,
        }
    }

    pub(crate) async fn save_status(&self, id: u64) -> Result<SaveRequest, ApiError> {
        self.get_json(&format!("origin/save/{id}/"), &format!("save request {id}")).await
    }
}

/// A content as the API looks it up: `<algo>:<hex>` for one of the hashes it indexes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContentKey(String);

impl ContentKey {
    /// The key for a flat hash, if the archive indexes contents by its algorithm (sha1, sha256).
    pub fn of_hash(hash: &Hash) -> Option<ContentKey> {
        matches!(hash.algo(), HashAlgo::Sha1 | HashAlgo::Sha256)
            .then(|| ContentKey(format!("{}:{}", hash.algo().name(), hash.to_hex())))
    }

    /// The key for a content SWHID (`None` for another type of object).
    pub(crate) fn of_swhid(swhid: &Swhid) -> Option<ContentKey> {
        (swhid.object_type == ObjectType::Content).then(|| ContentKey(format!("sha1_git:{}", swhid.hex())))
    }
}

impl std::fmt::Display for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The two families of ExtIDs that map Nix hashes: `checksum-<algo>` (a flat hash) and
/// `nar-<algo>` (a NAR hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtIdKind {
    Checksum,
    Nar,
}

impl ExtIdKind {
    pub(crate) fn extid_type(self, algo: HashAlgo) -> String {
        match self {
            ExtIdKind::Checksum => format!("checksum-{algo}"),
            ExtIdKind::Nar => format!("nar-{algo}"),
        }
    }
}

/// The id of `swhid` for an API path, refused unless it is of `expected` type: a wrong type
/// would only earn a 404 that reads like "not archived".
fn expect_type(swhid: &Swhid, expected: ObjectType) -> Result<String, ApiError> {
    if swhid.object_type != expected {
        return Err(ApiError::WrongType { swhid: *swhid, expected: expected.tag() });
    }
    Ok(swhid.hex())
}

fn save_query(visit_type: VisitType, origin: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("visit_type", visit_type.name())
        .append_pair("origin_url", origin)
        .finish();
    format!("origin/save/?{query}")
}

async fn read_json<T: DeserializeOwned>(response: reqwest::Response, what: &str) -> Result<T, ApiError> {
    let bytes = response.bytes().await.map_err(|source| ApiError::Transport { what: what.to_owned(), source })?;
    serde_json::from_slice(&bytes).map_err(|source| ApiError::Malformed { what: what.to_owned(), source })
}

fn header_u64(response: &reqwest::Response, name: &str) -> Option<u64> {
    response.headers().get(name)?.to_str().ok()?.trim().parse().ok()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
