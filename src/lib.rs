//! swh-bridge keeps Nix builds working when upstream source URLs vanish, by finding the sources
//! in the Software Heritage archive and handing back exactly the bytes their hashes promise.
//!
//! See `ARCHITECTURE.md` for how the modules fit together.

pub mod archive;
pub mod atomic;
pub mod audit;
pub mod config;
pub(crate) mod download;
pub mod error_chain;
pub mod fallback;
pub mod hashing;
pub mod listers;
pub mod loader;
pub mod plan;
pub mod publish;
pub mod recipes;
pub mod serve;
pub mod sources;
pub mod state;
pub mod store;
pub mod workspace;
