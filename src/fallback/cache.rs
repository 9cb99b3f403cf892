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

use crate::hashing::Hash;
use crate::hashing::tree::disk::{parent_dir, persist_no_replace};

use super::Mode;

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// The cache under `data_dir`.
    pub fn new(data_dir: &Path) -> Cache {
        Cache { root: data_dir.join("cache") }
    }

    /// The default data directory: `$XDG_DATA_HOME/swh-bridge`, else `~/.local/share/swh-bridge`.
    pub fn default_data_dir() -> PathBuf {
        match std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
            Some(dir) => PathBuf::from(dir).join("swh-bridge"),
            None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".local/share/swh-bridge"),
        }
    }

    /// Where the entry for `hash` is (or would be) kept.
    pub fn path(&self, hash: &Hash, mode: Mode) -> PathBuf {
        let kind = match mode {
            Mode::Flat => hash.algo().name().to_owned(),
            Mode::Recursive => format!("nar-{}", hash.algo()),
        };
        self.root.join(kind).join(hash.to_hex())
    }

    /// The stored bytes (a file, or a NAR), if present and intact.
    pub fn get(&self, hash: &Hash, mode: Mode) -> Option<Vec<u8>> {
        let path = self.path(hash, mode);
        let bytes = fs::read(&path).ok()?;
        let recorded = fs::read_to_string(blake3_path(&path)).ok()?;
        (blake3::hash(&bytes).to_hex().as_str() == recorded.trim()).then_some(bytes)
    }

    /// Whether `file`, opened from the entry for `hash`, is intact, read in pieces (for callers
    /// that then stream it rather than hold it whole).
    pub fn is_intact_file(&self, hash: &Hash, mode: Mode, file: &mut fs::File) -> bool {
        let Ok(recorded) = fs::read_to_string(blake3_path(&self.path(hash, mode))) else { return false };
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(file).is_ok() && hasher.finalize().to_hex().as_str() == recorded.trim()
    }

    /// Stores verified bytes (the file itself, or a tree's NAR) from `reader`.
    pub fn put(&self, hash: &Hash, mode: Mode, mut reader: impl Read) -> io::Result<()> {
        self.put_with(hash, mode, |writer| io::copy(&mut reader, writer).map(drop))
    }

    /// Stores verified bytes that `write` writes.
    pub fn put_with(
        &self,
        hash: &Hash,
        mode: Mode,
        write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()> {
        let path = self.path(hash, mode);
        fs::create_dir_all(parent_dir(&path))?;
        let temp = tempfile::NamedTempFile::new_in(parent_dir(&path))?;
        let mut writer =
            Blake3Writer { inner: io::BufWriter::with_capacity(256 * 1024, temp), blake: blake3::Hasher::new() };
        write(&mut writer)?;
        let temp = writer.inner.into_inner().map_err(|e| e.into_error())?;
        fs::write(blake3_path(&path), writer.blake.finalize().to_hex().as_str())?;
        match temp.persist_noclobber(&path) {
            Ok(_) => Ok(()),
            // Another fetch stored the same bytes first.
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e.error),
        }
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

/// Copies `bytes` to `out` through a temporary file and a no-replace rename.
pub(crate) fn write_file_atomically(bytes: &[u8], out: &Path) -> io::Result<()> {
    let mut temp = tempfile::NamedTempFile::new_in(parent_dir(out))?;
    temp.write_all(bytes)?;
    persist_no_replace(temp, out)
}
