//! Hashes of on-disk trees and files: the NAR hash, the SWHID, or both in one pass.
//!
//! The walk (directory listing, `lstat`, small files) runs on the calling thread; the NAR hash and
//! git's SHA-1 of large files each run on a thread of their own, which reads those files itself.
//! On two cores the three balance out: see the README's performance section.

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
/// [`ExecutableRule::Any`](super::tree::ExecutableRule::Any), what git computes when it says `Owner`).
pub fn swhid(path: &Path, options: &WalkOptions) -> Result<Swhid, TreeError> {
    let mut hasher = SwhidHasher::new().with_worker()?;
    disk::walk(path, options, &mut hasher)?;
    Ok(hasher.finish()?.0)
}

/// The NAR hash, the SWHID (git's executable rule) and every content id, reading each file once.
pub fn hash_tree(path: &Path, algo: HashAlgo) -> Result<TreeHashes, TreeError> {
    let mut sink = Tee::new(NarHasher::new(algo)?, SwhidHasher::new().recording_contents().with_worker()?);
    disk::walk(path, &WalkOptions::nix(), &mut sink)?;
    let (nar, swhid) = sink.into_inner();
    let (swhid, contents) = swhid.finish()?;
    Ok(TreeHashes { nar: nar.finish()?, swhid, contents })
}

/// The flat hash of a file's bytes (what `nix-hash --flat` and `nix hash file` print).
pub fn file_hash(path: &Path, algo: HashAlgo) -> Result<Hash, TreeError> {
    let read_error = |source| TreeError::Read { path: path.to_owned(), source };
    let file = File::open(path).map_err(read_error)?;
    Hasher::hash_reader(algo, file).map_err(read_error)
}
