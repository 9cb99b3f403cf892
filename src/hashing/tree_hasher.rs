//! Hashes of on-disk trees and files: the NAR hash, the SWHID, or both in one pass.
//!
//! The walk (directory listing, `lstat`, small reads, and git's SHA-1) runs on the calling thread
//! and the NAR hash on a second one, which reads large files itself, so that the two hashes
//! overlap.

use std::fs::File;
use std::path::Path;

use super::nar::NarHasher;
use super::swhid_hasher::{ContentEntry, SwhidHasher};
use super::tree::disk::{self, WalkOptions};
use super::tree::{Tee, TreeError};
use super::{Hash, HashAlgo, Hasher, Swhid};

/// Everything one pass over a tree yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHashes {
    /// The NAR hash (the recursive fixed-output hash).
    pub nar: Hash,
    /// `swh:1:dir:` for a directory, `swh:1:cnt:` for a lone file or symlink.
    pub swhid: Swhid,
    /// Every file and symlink below the root with its content id, in NAR order.
    pub contents: Vec<ContentEntry>,
}

/// The NAR hash of the tree at `path` (what `nix-hash --type ALGO PATH` prints).
pub fn nar_hash(path: &Path, algo: HashAlgo) -> Result<Hash, TreeError> {
    let mut hasher = NarHasher::new(algo)?;
    disk::walk(path, &WalkOptions::nix(), &mut hasher)?;
    hasher.finish()
}

/// The SWHID of the tree at `path` (what `swh identify` prints when `options` says
/// [`disk::ExecutableRule::Any`], what git computes when it says `Owner`).
pub fn swhid(path: &Path, options: &WalkOptions) -> Result<Swhid, TreeError> {
    let mut hasher = SwhidHasher::new();
    disk::walk(path, options, &mut hasher)?;
    Ok(hasher.root().expect("a completed walk yields a root"))
}

/// The NAR hash, the SWHID (git's executable rule) and every content id, reading each file once.
pub fn hash_tree(path: &Path, algo: HashAlgo) -> Result<TreeHashes, TreeError> {
    let mut sink = Tee::new(NarHasher::new(algo)?, SwhidHasher::recording_contents());
    disk::walk(path, &WalkOptions::nix(), &mut sink)?;
    let (nar, swhid) = sink.into_inner();
    let (swhid, contents) = swhid.finish().expect("a completed walk yields a root");
    Ok(TreeHashes { nar: nar.finish()?, swhid, contents })
}

/// The flat hash of a file's bytes (what `nix-hash --flat` and `nix hash file` print).
pub fn file_hash(path: &Path, algo: HashAlgo) -> Result<Hash, TreeError> {
    let read_error = |source| TreeError::Read { path: path.to_owned(), source };
    let file = File::open(path).map_err(read_error)?;
    Hasher::hash_reader(algo, file).map_err(read_error)
}
