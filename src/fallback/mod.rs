//! Getting a source back by its hash when its URLs are dead: from the upstream URLs first, then
//! from the Software Heritage archive, and handing it over only once its hash is proven.
//!
//! How the archive keeps what Nix hashes:
//! - a flat file is a content, reachable by sha1 or sha256 directly, and by the ExtID
//!   `checksum-<algo>` for any algorithm;
//! - a tarball with a flat hash is kept unpacked: its `checksum-<algo>` ExtID names a directory,
//!   from which the exact tarball cannot be rebuilt without a recipe;
//! - a NAR-hashed tree is a directory named by the ExtID `nar-<algo>`, rebuilt here by walking it
//!   through the API (a request per directory and per file) or from the vault's flat bundle (a
//!   few requests whatever its size), and checked by NAR-hashing the result;
//! - the directory listing names a non-UTF-8 entry with an escape (`\xHH`, `\\`) and flags it
//!   in `decoding_failures`; UTF-8 names come as they are;
//! - a tree fetched from git is also the root directory of its commit, whose id is the git
//!   commit id (`swh:1:rev:`), if the repository itself was archived.

mod cache;
mod fetch;
mod gunzip;
pub mod prefetch;

pub use cache::Cache;
pub(crate) use fetch::error_chain;
pub use fetch::{DEFAULT_UPSTREAM_TIMEOUT, DEFAULT_WALK_LIMIT, FetchError, FetchReport, FetchRequest, Fetcher, Mode};
