use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use super::MAGIC;
use crate::hashing::background::BackgroundHasher;
use crate::hashing::tree::disk::{self, WalkOptions};
use crate::hashing::tree::{TreeError, TreeSink};
use crate::hashing::{Hash, HashAlgo};

const ZEROS: [u8; 8] = [0; 8];

fn padding(len: u64) -> usize {
    ((8 - len % 8) % 8) as usize
}

/// Serialises tree events as a NAR into `W`.
///
/// Keyword tokens are written in many small pieces: give it a buffered writer.
pub struct NarWriter<W: Write> {
    out: W,
    /// The open file's size, for the padding after its contents.
    file_size: u64,
}

impl<W: Write> NarWriter<W> {
    /// Writes the magic; the tree's events follow.
    pub fn new(mut out: W) -> Result<Self, TreeError> {
        write_str(&mut out, MAGIC)?;
        Ok(NarWriter { out, file_size: 0 })
    }

    /// The writer, once the tree is complete.
    pub(crate) fn into_inner(self) -> W {
        self.out
    }

    pub(crate) fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    fn tokens(&mut self, tokens: &[&[u8]]) -> Result<(), TreeError> {
        for token in tokens {
            write_str(&mut self.out, token)?;
        }
        Ok(())
    }
}

fn write_str(out: &mut impl Write, s: &[u8]) -> Result<(), TreeError> {
    let len = s.len() as u64;
    out.write_all(&len.to_le_bytes()).map_err(TreeError::NarOutput)?;
    out.write_all(s).map_err(TreeError::NarOutput)?;
    out.write_all(&ZEROS[..padding(len)]).map_err(TreeError::NarOutput)
}

impl<W: Write> TreeSink for NarWriter<W> {
    fn file_start(&mut self, executable: bool, size: u64) -> Result<(), TreeError> {
        if executable {
            self.tokens(&[b"(", b"type", b"regular", b"executable", b"", b"contents"])?;
        } else {
            self.tokens(&[b"(", b"type", b"regular", b"contents"])?;
        }
        self.file_size = size;
        self.out.write_all(&size.to_le_bytes()).map_err(TreeError::NarOutput)
    }

    fn file_data(&mut self, data: &[u8]) -> Result<(), TreeError> {
        self.out.write_all(data).map_err(TreeError::NarOutput)
    }

    fn file_end(&mut self) -> Result<(), TreeError> {
        self.out.write_all(&ZEROS[..padding(self.file_size)]).map_err(TreeError::NarOutput)?;
        self.tokens(&[b")"])
    }

    fn symlink(&mut self, target: &[u8]) -> Result<(), TreeError> {
        self.tokens(&[b"(", b"type", b"symlink", b"target", target, b")"])
    }

    fn directory_start(&mut self) -> Result<(), TreeError> {
        self.tokens(&[b"(", b"type", b"directory"])
    }

    fn entry_start(&mut self, name: &[u8]) -> Result<(), TreeError> {
        self.tokens(&[b"entry", b"(", b"name", name, b"node"])
    }

    fn entry_end(&mut self) -> Result<(), TreeError> {
        self.tokens(&[b")"])
    }

    fn directory_end(&mut self) -> Result<(), TreeError> {
        self.tokens(&[b")"])
    }
}

/// The bytes around a lone regular, non-executable file's contents in its NAR (what `nix-store
/// --dump` writes for a flat fixed output): the NAR is `header`, the contents, then `trailer`.
pub fn lone_file_framing(size: u64) -> (Vec<u8>, Vec<u8>) {
    let mut writer = NarWriter::new(Vec::new()).expect("writing to memory does not fail");
    writer.file_start(false, size).expect("writing to memory does not fail");
    let header = std::mem::take(writer.get_mut());
    writer.file_end().expect("writing to memory does not fail");
    (header, writer.into_inner())
}

/// Writes the NAR of the tree at `path` to `out` (what `nix-store --dump PATH` prints).
pub fn dump_path(path: &Path, out: impl Write) -> Result<(), TreeError> {
    let mut writer = NarWriter::new(std::io::BufWriter::with_capacity(256 * 1024, out))?;
    disk::walk(path, &WalkOptions::nix(), &mut writer)?;
    writer.into_inner().flush().map_err(TreeError::NarOutput)
}

/// Hashes the NAR of the tree it is fed on a second thread, which also reads large files itself.
pub struct NarHasher {
    nar: NarWriter<BackgroundHasher>,
}

impl NarHasher {
    pub fn new(algo: HashAlgo) -> Result<NarHasher, TreeError> {
        Ok(NarHasher { nar: NarWriter::new(BackgroundHasher::new(algo)?)? })
    }

    /// The NAR's hash, once the tree is complete.
    pub fn finish(self) -> Result<Hash, TreeError> {
        self.nar.into_inner().finish()
    }
}

impl TreeSink for NarHasher {
    fn file_start(&mut self, executable: bool, size: u64) -> Result<(), TreeError> {
        self.nar.file_start(executable, size)
    }
    fn file_handle(&mut self, file: &Arc<File>, path: &Path, size: u64) -> Result<bool, TreeError> {
        self.nar.get_mut().hash_file(Arc::clone(file), path.to_owned(), size);
        Ok(true)
    }
    fn file_data(&mut self, data: &[u8]) -> Result<(), TreeError> {
        self.nar.file_data(data)
    }
    fn file_end(&mut self) -> Result<(), TreeError> {
        self.nar.file_end()
    }
    fn symlink(&mut self, target: &[u8]) -> Result<(), TreeError> {
        self.nar.symlink(target)
    }
    fn directory_start(&mut self) -> Result<(), TreeError> {
        self.nar.directory_start()
    }
    fn entry_start(&mut self, name: &[u8]) -> Result<(), TreeError> {
        self.nar.entry_start(name)
    }
    fn entry_end(&mut self) -> Result<(), TreeError> {
        self.nar.entry_end()
    }
    fn directory_end(&mut self) -> Result<(), TreeError> {
        self.nar.directory_end()
    }
}
