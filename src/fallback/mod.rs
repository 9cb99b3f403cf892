//! Getting a source back by its hash when its URLs are dead: the [`Fetcher`] executes a source's
//! [`crate::plan::Plan`], way after way, and hands the source over only once its hash is proven.
//!
//! How the archive keeps what Nix hashes, and how each form is rebuilt:
//! - a flat file is a content, reachable by sha1 or sha256 directly, and by the ExtID
//!   `checksum-<algo>` for any algorithm: streamed through the hash into a temporary file;
//! - a tarball with a flat hash is kept unpacked: its `checksum-<algo>` ExtID names a directory,
//!   from which the exact tarball is rebuilt only by its recipe ([`crate::recipes`]);
//! - a NAR-hashed tree is a directory named by the ExtID `nar-<algo>`, rebuilt by walking it
//!   through the API ([`walk`]: a request per directory and per file) or from the vault's flat
//!   bundle ([`vault`]: a few requests whatever its size), and checked by NAR-hashing the result;
//! - a tree fetched from git is also the root directory of its commit, whose id is the git
//!   commit id (`swh:1:rev:`), if the repository itself was archived;
//! - a Nix binary cache ([`binary_cache`]) holds a source as the NAR of its store path.
//!
//! What is fetched is kept in a content-addressed [`Cache`], so a second fetch asks nobody.

pub mod binary_cache;
mod cache;
mod fetch;
mod gunzip;
pub mod prefetch;
mod vault;
mod walk;

pub use cache::Cache;
pub use fetch::{
    Attempt, DEFAULT_MAX_DOWNLOAD, DEFAULT_UPSTREAM_TIMEOUT, DEFAULT_WALK_LIMIT, FetchError, FetchReport, Fetcher,
    Miss, NotRecovered,
};
