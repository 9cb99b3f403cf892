//! How Nix and Software Heritage name content: digests and their encodings, NAR serialisation,
//! SWHIDs, and the tree walks that produce them.
//!
//! Data flows as tree events ([`tree::TreeSink`]) from a source (a directory on disk, a tree in
//! memory, a NAR stream, a tar archive) into one or more sinks (a NAR writer, a SWHID hasher, a
//! restorer on disk, an in-memory builder).

pub(crate) mod algo;
pub(crate) mod background;
pub(crate) mod hash;
#[cfg(test)]
mod known_answers;
pub mod nar;
pub(crate) mod nix32;
pub mod swhid;
pub mod swhid_hasher;
pub mod tree;
pub mod tree_hasher;

pub use algo::{HashAlgo, Hasher, UnknownAlgo};
pub use hash::{Encoding, Hash, HashMode, HashParseError, UnknownEncoding, UnknownHashMode};
pub use swhid::{ObjectType, Swhid};
