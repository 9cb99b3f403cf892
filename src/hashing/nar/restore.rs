use std::io::{self, Read};
use std::path::Path;

use super::parse_with_limits;
use crate::atomic::{rename_no_replace, staging_dir_beside};
use crate::hashing::tree::disk::Restorer;
use crate::hashing::tree::{Limits, TreeError};
use crate::hashing::{Hash, HashAlgo, Hasher};

/// What [`restore`] unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The NAR's hash, in the algorithm of the expected hash (sha256 when none was given).
    pub nar_hash: Hash,
    pub nar_size: u64,
}

/// Unpacks the NAR read from `reader` to `dest`, which must not exist (as `nix-store --restore`).
///
/// The tree is built in a temporary directory beside `dest` and renamed into place only once the
/// whole stream has parsed, nothing follows it, and its hash equals `expected` (if given): a
/// failed or interrupted restore leaves nothing at `dest`, and nothing that appeared at `dest` in
/// the meantime is replaced. (Files are not fsynced: a crash right after the rename can leave a
/// short file, which the hash check of whoever reads it next will catch.)
pub fn restore(reader: impl Read, dest: &Path, expected: Option<&Hash>, limits: Limits) -> Result<Restored, TreeError> {
    if dest.symlink_metadata().is_ok() {
        return Err(TreeError::DestinationExists { path: dest.to_owned() });
    }
    let staging = staging_dir_beside(dest).map_err(|source| TreeError::Write { path: dest.to_owned(), source })?;
    let staged = staging.path().join("tree");

    let algo = expected.map_or(HashAlgo::Sha256, Hash::algo);
    let mut input = HashingReader { inner: reader, hasher: algo.hasher() };
    let nar_size = parse_with_limits(&mut input, &mut Restorer::new(&staged), limits)?;
    let mut probe = [0u8; 1];
    if input.read(&mut probe).map_err(TreeError::NarInput)? != 0 {
        return Err(TreeError::MalformedNar { offset: nar_size, reason: "data follows the end of the NAR".into() });
    }
    let nar_hash = input.hasher.finish();
    if let Some(expected) = expected {
        if *expected != nar_hash {
            return Err(TreeError::HashMismatch { expected: expected.clone(), actual: nar_hash });
        }
    }
    rename_no_replace(&staged, dest).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => TreeError::DestinationExists { path: dest.to_owned() },
        _ => TreeError::Write { path: dest.to_owned(), source },
    })?;
    Ok(Restored { nar_hash, nar_size })
}

/// Hashes every byte it passes on.
struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
