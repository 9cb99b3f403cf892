//! Getting a source back by its hash when its URLs are dead: from the upstream URLs first, then
//! from the Software Heritage archive, and handing it over only once its hash is proven.
//!
//! How the archive keeps what Nix hashes:
//! - a flat file is a content, reachable by sha1 or sha256 directly, and by the ExtID
//!   `checksum-<algo>` for any algorithm;
//! - a tarball with a flat hash is kept unpacked: its `checksum-<algo>` ExtID names a directory,
//!   from which the exact tarball cannot be rebuilt without a recipe;
//! - a NAR-hashed tree is a directory named by the ExtID `nar-<algo>`, rebuilt here by walking it
//!   through the API and checked by NAR-hashing the result;
//! - a tree fetched from git is also the root directory of its commit, whose id is the git
//!   commit id (`swh:1:rev:`), if the repository itself was archived.

mod cache;
mod fetch;
pub mod prefetch;

pub use cache::Cache;
pub use fetch::{DEFAULT_WALK_LIMIT, FetchError, FetchReport, FetchRequest, Fetcher, Mode};
