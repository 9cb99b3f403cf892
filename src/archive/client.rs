use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use url::Url;

use super::model::{ContentInfo, DirectoryEntry, ErrorBody, ExtId, Revision, SaveRequest, VaultTask};

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
    pub timeout: Duration,
}

impl ClientConfig {
    /// The public archive, with the token from `SWH_TOKEN` if set.
    pub fn public() -> ClientConfig {
        ClientConfig::for_api(Url::parse(PUBLIC_API).expect("the public API URL is valid"))
    }

    pub fn for_api(base_url: Url) -> ClientConfig {
        ClientConfig {
            base_url,
            token: std::env::var("SWH_TOKEN").ok().filter(|t| !t.is_empty()),
            max_rate_limit_wait: Duration::from_secs(0),
            retries: 4,
            backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(60),
        }
    }
}

/// Why a call to the archive failed.
#[derive(Debug, thiserror::Error)]
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
        loop {
            self.respect_known_limit().await?;
            let mut request = self.http.request(method.clone(), self.url(path));
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
                    tokio::time::sleep(self.config.backoff * 2u32.pow(failures - 1)).await;
                    continue;
                }
                Err(source) => return Err(ApiError::Transport { what: what.to_owned(), source }),
            };
            self.note_limit(&response);
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                let until = header_u64(&response, "x-ratelimit-reset").unwrap_or_else(|| now() + 60);
                self.wait_until(until).await?;
                continue;
            }
            if status.is_server_error() && failures < self.config.retries {
                failures += 1;
                tokio::time::sleep(self.config.backoff * 2u32.pow(failures - 1)).await;
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

    /// Metadata of a content, by `sha1`, `sha1_git`, `sha256` or `blake2s256` (lowercase hex).
    pub async fn content(&self, algo: &str, hex: &str) -> Result<ContentInfo, ApiError> {
        self.get_json(&format!("content/{algo}:{hex}/"), &format!("content {algo}:{hex}")).await
    }

    /// The bytes of a content, as a response to stream.
    pub async fn content_raw(&self, algo: &str, hex: &str) -> Result<reqwest::Response, ApiError> {
        self.send(Method::GET, &format!("content/{algo}:{hex}/raw/"), None, &format!("content {algo}:{hex}")).await
    }

    /// What an external id (`nar-sha256`, `checksum-sha256`, …) points to, in version 1 of the
    /// ExtID rules (version 0 placed tarballs' top directories differently).
    pub async fn extid(&self, extid_type: &str, digest: &[u8]) -> Result<ExtId, ApiError> {
        let hex = data_encoding::HEXLOWER.encode(digest);
        self.get_json(&format!("extid/{extid_type}/hex:{hex}/?extid_version=1"), &format!("ExtID {extid_type} {hex}"))
            .await
    }

    /// Which of these SWHIDs the archive has, asked in batches of [`KNOWN_BATCH`].
    pub async fn known(&self, swhids: &[String]) -> Result<HashMap<String, bool>, ApiError> {
        #[derive(serde::Deserialize)]
        struct Known {
            known: bool,
        }
        let mut answer = HashMap::with_capacity(swhids.len());
        for batch in swhids.chunks(KNOWN_BATCH) {
            let body = serde_json::to_value(batch).expect("strings serialise");
            let response = self.send(Method::POST, "known/", Some(&body), "known SWHIDs").await?;
            let known: HashMap<String, Known> = read_json(response, "known SWHIDs").await?;
            answer.extend(known.into_iter().map(|(swhid, k)| (swhid, k.known)));
        }
        Ok(answer)
    }

    /// The entries of a directory.
    pub async fn directory(&self, sha1_git: &str) -> Result<Vec<DirectoryEntry>, ApiError> {
        self.get_json(&format!("directory/{sha1_git}/"), &format!("directory {sha1_git}")).await
    }

    /// A raw git object (`GET /raw/<swhid>/`), with exact byte names.
    pub async fn raw_object(&self, swhid: &str) -> Result<Vec<u8>, ApiError> {
        let response = self.send(Method::GET, &format!("raw/{swhid}/"), None, swhid).await?;
        let bytes = response.bytes().await.map_err(|source| ApiError::Transport { what: swhid.to_owned(), source })?;
        Ok(bytes.to_vec())
    }

    pub async fn revision(&self, sha1_git: &str) -> Result<Revision, ApiError> {
        self.get_json(&format!("revision/{sha1_git}/"), &format!("revision {sha1_git}")).await
    }

    /// Asks the vault to cook a bundle (`flat` for a directory, `git-bare` for a revision).
    pub async fn vault_cook(&self, bundle: &str, swhid: &str) -> Result<VaultTask, ApiError> {
        let what = format!("the {bundle} bundle of {swhid}");
        let response = self.send(Method::POST, &format!("vault/{bundle}/{swhid}/"), None, &what).await?;
        read_json(response, &what).await
    }

    pub async fn vault_status(&self, bundle: &str, swhid: &str) -> Result<VaultTask, ApiError> {
        self.get_json(&format!("vault/{bundle}/{swhid}/"), &format!("the {bundle} bundle of {swhid}")).await
    }

    /// Requests a bundle and polls until it is cooked, waiting `poll` at first and twice as long
    /// each time up to a minute; a failed cooking is an error with the vault's message.
    pub async fn vault_wait(&self, bundle: &str, swhid: &str, poll: Duration) -> Result<VaultTask, ApiError> {
        let mut task = self.vault_cook(bundle, swhid).await?;
        let mut delay = poll;
        loop {
            match task.status.as_str() {
                "done" => return Ok(task),
                "failed" => {
                    return Err(ApiError::Server {
                        what: format!("cooking the {bundle} bundle of {swhid}"),
                        status: 200,
                        reason: task.progress_message.unwrap_or_else(|| "the vault gave no reason".into()),
                    });
                }
                _ => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(60));
                    task = self.vault_status(bundle, swhid).await?;
                }
            }
        }
    }

    /// The cooked bundle, as a response to stream.
    pub async fn vault_download(&self, bundle: &str, swhid: &str) -> Result<reqwest::Response, ApiError> {
        self.send(
            Method::GET,
            &format!("vault/{bundle}/{swhid}/raw/"),
            None,
            &format!("the {bundle} bundle of {swhid}"),
        )
        .await
    }

    /// Asks Save Code Now to archive an origin (`git`, `hg`, `svn`, `bzr`, `cvs`, `tarball`). The
    /// origin goes in the query string, which keeps URLs with `?` or spaces intact.
    pub async fn save_code_now(&self, visit_type: &str, origin: &str) -> Result<SaveRequest, ApiError> {
        let what = format!("saving {origin}");
        let response = self.send(Method::POST, &save_query(visit_type, origin), None, &what).await?;
        read_json(response, &what).await
    }

    /// The Save Code Now requests ever made for an origin (none is a 404, given here as empty).
    pub async fn save_requests(&self, visit_type: &str, origin: &str) -> Result<Vec<SaveRequest>, ApiError> {
        match self.get_json(&save_query(visit_type, origin), &format!("the save requests of {origin}")).await {
            Err(ApiError::NotFound { .. }) => Ok(Vec::new()),
            other => other,
        }
    }

    pub async fn save_status(&self, id: u64) -> Result<SaveRequest, ApiError> {
        self.get_json(&format!("origin/save/{id}/"), &format!("save request {id}")).await
    }
}

fn save_query(visit_type: &str, origin: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("visit_type", visit_type)
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
