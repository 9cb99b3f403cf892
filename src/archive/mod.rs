//! A client for the Software Heritage archive's Web API (`/api/1/`).
//!
//! Quirks of the API, as seen on the public archive and a local one:
//! - errors are JSON `{"exception", "reason"}` with 400, 401, 403, 404, 413, 429 or 503;
//! - rate limits come as `X-RateLimit-Limit`, `-Remaining` and `-Reset` (unix seconds), never as
//!   `Retry-After`; loopback is exempt;
//! - content ids in URLs are `algo:hex` with lowercase hex; ExtIDs take `hex:` or `base64url:`
//!   and must ask for `extid_version=1`;
//! - `/known/` takes at most 1,000 SWHIDs per POST;
//! - a vault bundle must be requested (POST) before its status can be read (GET is a 404 before);
//! - Save Code Now answers a POST with one request and a GET on the same URL with the list of
//!   every request for that origin (a 404 when there is none); origins with `?` or spaces must
//!   go in the query string (`origin/save/?visit_type=…&origin_url=…`), which always works.

mod client;
pub mod model;

pub use client::{
    ApiError, ArchiveClient, ClientConfig, ContentKey, DEFAULT_CALL_DEADLINE, DEFAULT_VAULT_DEADLINE, ExtIdKind,
    KNOWN_BATCH, PUBLIC_API,
};
