//! A local content-addressed cache of fetched sources, so that fetching the same source again
//! asks nobody.
//!
//! Layout under the data directory: `cache/<algo>/<hex>` holds a flat file, `cache/nar-<algo>/<hex>`
//! the NAR of a tree; beside each, `<hex>.blake3` holds the BLAKE3 of the stored bytes, taken when
//! they were stored (after their Nix hash was verified). A read recomputes the BLAKE3 (fast) and
//! treats a mismatch as a miss, so a damaged entry is fetched again rather than handed over.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::atomic::{self, Existing};
use crate::hashing::{Hash, HashMode};

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// The cache under `data_dir`.
    pub fn new(data_dir: &Path) -> Cache {
        Cache { root: data_dir.join("cache") }
    }

    /// Where the entry for `hash` is (or would be) kept.
    pub(crate) fn path(&self, hash: &Hash, mode: HashMode) -> PathBuf {
        let kind = match mode {
            HashMode::Flat => hash.algo().name().to_owned(),
            HashMode::Recursive => format!("nar-{}", hash.algo()),
        };
        self.root.join(kind).join(hash.to_hex())
    }

    /// The stored bytes (a file, or a NAR), if present and intact; a damaged entry is removed.
    pub(crate) fn get(&self, hash: &Hash, mode: HashMode) -> Option<Vec<u8>> {
        let path = self.path(hash, mode);
        let bytes = fs::read(&path).ok()?;
        let recorded = fs::read_to_string(blake3_path(&path)).ok()?;
        if blake3::hash(&bytes).to_hex().as_str() != recorded.trim() {
            self.discard(&path);
            return None;
        }
        Some(bytes)
    }

    /// The BLAKE3 of `file`, opened from the entry for `hash`, if it is the one recorded for
    /// it, read in pieces (for callers that then stream it rather than hold it whole); a
    /// damaged entry is removed.
    pub(crate) fn intact_digest(&self, hash: &Hash, mode: HashMode, file: &mut fs::File) -> Option<blake3::Hash> {
        let path = self.path(hash, mode);
        let recorded = fs::read_to_string(blake3_path(&path)).ok()?;
        let mut hasher = blake3::Hasher::new();
        if hasher.update_reader(file).is_ok() {
            let digest = hasher.finalize();
            if digest.to_hex().as_str() == recorded.trim() {
                return Some(digest);
            }
        }
        self.discard(&path);
        None
    }

    /// Removes the entry for `hash`, found damaged by a caller that read it.
    pub(crate) fn discard_entry(&self, hash: &Hash, mode: HashMode) {
        self.discard(&self.path(hash, mode));
    }

    /// Removes a damaged entry (bit rot, a file changed in place), so that the next store of
    /// the same hash replaces it instead of keeping it: stores keep what is there, since a
    /// content-addressed entry is the same bytes, which a damaged one is not.
    fn discard(&self, entry: &Path) {
        let _ = fs::remove_file(entry);
        let _ = fs::remove_file(blake3_path(entry));
    }

    /// Stores verified bytes (the file itself, or a tree's NAR) from `reader`.
    pub(crate) fn put(&self, hash: &Hash, mode: HashMode, mut reader: impl Read) -> io::Result<()> {
        self.put_with(hash, mode, |writer| io::copy(&mut reader, writer).map(drop))
    }

    /// Stores verified bytes that `write` writes.
    pub(crate) fn put_with(
        &self,
        hash: &Hash,
        mode: HashMode,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()> {
        let path = self.path(hash, mode);
        fs::create_dir_all(atomic::parent_dir(&path))?;
        let mut temp = atomic::temp_file_beside(&path)?;
        let mut writer = Blake3Writer {
            inner: io::BufWriter::with_capacity(256 * 1024, temp.as_file_mut()),
            blake: blake3::Hasher::new(),
        };
        write(&mut writer)?;
        writer.inner.flush()?;
        let digest = writer.blake.finalize();
        drop(writer);
        atomic::write(&blake3_path(&path), digest.to_hex().as_bytes(), Existing::Replace)?;
        // Another fetch may have stored the same bytes first: what is there is kept.
        atomic::persist(temp, &path, Existing::Keep)
    }
}

/// Writes through, hashing what it writes.
struct Blake3Writer<W> {
    inner: W,
    blake: blake3::Hasher,
}

impl<W: Write> Write for Blake3Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.blake.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn blake3_path(entry: &Path) -> PathBuf {
    let mut name = entry.file_name().unwrap_or_default().to_owned();
    name.push(".blake3");
    entry.with_file_name(name)
}
