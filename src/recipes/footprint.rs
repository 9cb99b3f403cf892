//! What making a recipe of a file holds in memory at its peak, reckoned before anything is
//! unpacked, so that a decompression bomb is refused before it is decompressed and `load` can
//! reserve what a capture really takes rather than what its download weighs.
//!
//! The peak is the file, its uncompressed stream (for a compressed tar), the unpacked tree (its
//! files' contents, held once), and the encoder the compression layer tries (liblzma's and
//! libzstd's match finders; preflate runs in a child process with its own limits, see
//! [`super::preflate_process`]). The container's rebuilt stream is compared as it is written,
//! never held.
//!
//! Quirks:
//! - the uncompressed length is counted by running the file through its decoder into nothing
//!   (one more decompression pass, in constant memory); a decoder error ends the count, since
//!   making the recipe meets and reports the same error;
//! - a zip's length is what its central directory declares; unpacking refuses more;
//! - making the recipe is then held to the length counted, so a file that decodes differently
//!   the second time cannot go past what was reserved.

use std::io::{Read, Write};

use super::{MAX_PLAIN, RecipeError, tar};
use crate::hashing::tree::zip_archive;

/// What making any recipe takes besides the file, its stream, its tree and its encoders: the
/// process's own code and buffers, liblzma's and the tar reader's tables (measured on 125 Debian
/// upstream tarballs: at most 22 MiB).
const WORKING_SET: u64 = 32 << 20;

/// The compressors recipes model around a tar stream, told by their magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compressor {
    None,
    Gzip,
    Bzip2,
    Zstd,
    Lzw,
    Lzip,
    Xz,
}

impl Compressor {
    fn of(file: &[u8]) -> Compressor {
        if file.starts_with(&[0x1f, 0x8b]) {
            Compressor::Gzip
        } else if file.starts_with(b"BZh") {
            Compressor::Bzip2
        } else if file.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compressor::Zstd
        } else if file.starts_with(&[0x1f, 0x9d]) {
            Compressor::Lzw
        } else if file.starts_with(b"LZIP") {
            Compressor::Lzip
        } else if file.starts_with(b"\xfd7zXZ\0") {
            Compressor::Xz
        } else {
            Compressor::None
        }
    }

    /// The most memory its encoders take while a recipe is made of a stream of `plain` bytes
    /// compressed to `file` bytes (before the tree is unpacked, so in place of it):
    /// - liblzma's match finder needs about 11 times its dictionary (674 MiB at `xz -9`), and the
    ///   dictionary is never larger than the data, but its hash tables are set up whole (64 MiB
    ///   measured for a 2.5 MB `xz -9` stream); libzstd's largest levels need less;
    /// - preflate, for a gzip stream no zlib level reproduces, runs in a child process that
    ///   inflates the stream again and models it: about 2.2 times the text (measured: 640 MiB
    ///   for 300 MiB), and never more than its address-space limit (see
    ///   [`super::preflate_process`]).
    fn encoder_bytes(self, plain: u64, file: u64) -> u64 {
        match self {
            Compressor::Xz | Compressor::Lzip | Compressor::Zstd => {
                plain.saturating_mul(11).saturating_add(64 << 20).min(760 << 20)
            }
            Compressor::Gzip => {
                (plain.saturating_mul(9) / 4 + (16 << 20)).min(super::preflate_process::address_space_limit(file))
            }
            Compressor::None | Compressor::Bzip2 | Compressor::Lzw => 0,
        }
    }
}

/// What a file is, as far as recipes go.
#[derive(Debug, Clone)]
pub(crate) enum Format {
    Zip(zip_archive::Layout),
    Tar(Compressor),
}

/// A file's sizes as making its recipe will meet them.
#[derive(Debug, Clone)]
pub struct Footprint {
    file: u64,
    /// The uncompressed stream's length (a tar's); a zip's entries' declared lengths, summed.
    unpacked: u64,
    pub(crate) format: Format,
}

impl Footprint {
    /// Measures `file` (streaming it through its decoder); refuses a file that is no archive a
    /// recipe models, and one that unpacks to more than [`MAX_PLAIN`] bytes.
    pub fn of(file: &[u8]) -> Result<Footprint, RecipeError> {
        let too_large = |what: &str| {
            RecipeError::Unsupported(format!("the {what} is larger than {MAX_PLAIN} bytes (a decompression bomb?)"))
        };
        if file.len() > MAX_PLAIN {
            return Err(too_large("file"));
        }
        let compressor = Compressor::of(file);
        // A zip may start with anything (a self-extractor's stub): its end record says it is one.
        let zip_magic = file.starts_with(b"PK\x03\x04") || file.starts_with(b"PK\x05\x06");
        if zip_magic || (compressor != Compressor::Gzip && !tar::starts_like_tar(file)) {
            match zip_archive::layout(file) {
                Ok(layout) => {
                    let unpacked = layout.entries.iter().fold(0u64, |sum, entry| sum.saturating_add(entry.size));
                    if unpacked > MAX_PLAIN as u64 {
                        return Err(too_large("unpacked zip"));
                    }
                    return Ok(Footprint { file: file.len() as u64, unpacked, format: Format::Zip(layout) });
                }
                Err(err) if zip_magic => return Err(RecipeError::Unpack(err)),
                Err(_) => {}
            }
        }
        let limit = MAX_PLAIN;
        let unpacked = match compressor {
            Compressor::None if tar::starts_like_tar(file) => file.len() as u64,
            Compressor::None => {
                return Err(RecipeError::Unsupported(
                    "the file is neither a zip file nor a tar archive (plain, or compressed with gzip, xz, bzip2 or zstd)"
                        .into(),
                ));
            }
            Compressor::Gzip => count(flate2::bufread::MultiGzDecoder::new(file), limit),
            Compressor::Bzip2 => count(bzip2::bufread::MultiBzDecoder::new(file), limit),
            Compressor::Zstd => super::zstd::plain_len(file, limit),
            Compressor::Lzw => super::lzw::plain_len(file, limit) as u64,
            Compressor::Lzip => super::lzip::plain_len(file, limit),
            Compressor::Xz => super::xz::plain_len(file, limit),
        };
        if unpacked > MAX_PLAIN as u64 {
            return Err(too_large("uncompressed tar stream"));
        }
        Ok(Footprint { file: file.len() as u64, unpacked, format: Format::Tar(compressor) })
    }

    /// The length the file unpacks to (its tar stream, or its zip entries).
    pub fn unpacked(&self) -> u64 {
        self.unpacked
    }

    /// The most memory making the recipe holds at once, in bytes: a working set, the file, the
    /// uncompressed stream when it is not the file itself, then the encoders tried (the
    /// compression layer is made first) or the tree's contents, whichever is larger.
    pub fn peak(&self) -> u64 {
        let (stream, encoder) = match self.format {
            Format::Tar(Compressor::None) | Format::Zip(_) => (0, 0),
            Format::Tar(compressor) => (self.unpacked, compressor.encoder_bytes(self.unpacked, self.file)),
        };
        WORKING_SET + self.file + stream + self.unpacked.max(encoder)
    }
}

/// How many bytes `decoder` gives, at most `limit + 1` (so that going past the limit shows);
/// those before an error count.
pub(super) fn count(decoder: impl Read, limit: usize) -> u64 {
    struct Counter(u64);
    impl Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len() as u64;
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    let _ = std::io::copy(&mut decoder.take(limit as u64 + 1), &mut counter);
    counter.0
}
