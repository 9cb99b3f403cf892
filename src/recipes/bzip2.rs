//! The bzip2 layer of a recipe.
//!
//! A bzip2 file is one or more streams (`pbzip2` writes one per chunk), each `BZh` and a block
//! size digit (`1` to `9`, hundreds of kB), blocks, and an end-of-stream marker with the stream's
//! CRC, padded to a byte; anything may follow the last stream. libbzip2's output depends only on
//! the block size (the work factor chooses a sorting algorithm, not the result), and libbz2-rs
//! reproduces libbzip2 1.0.8 byte for byte; so a stream is kept as its level and how many bytes it
//! holds. Other encoders (`lbzip2`) write different blocks: such files are reported unsupported.

use serde::{Deserialize, Serialize};

use super::{MAX_PLAIN, OutOfBounds, RecipeError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bzip2Layer {
    #[serde(deserialize_with = "super::bounded::vec")]
    pub streams: Vec<Bzip2Stream>,
    /// Bytes after the last stream.
    pub trailing: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bzip2Stream {
    /// The block size level, 1 to 9.
    pub level: u8,
    /// How many uncompressed bytes the stream holds.
    pub plain_len: u64,
}

const CHUNK: usize = 256 * 1024;
const MAX_STREAMS: usize = MAX_PLAIN / 100_000 + 1;

fn compress(level: u8, plain: &[u8]) -> Result<Vec<u8>, RecipeError> {
    let damaged = |e: bzip2::Error| RecipeError::Damaged(format!("bzip2: {e}"));
    if !(1..=9).contains(&level) {
        return Err(RecipeError::Damaged(format!("bzip2: block size level {level}")));
    }
    let mut stream = bzip2::Compress::new(bzip2::Compression::new(u32::from(level)), 30);
    let mut out = Vec::with_capacity(plain.len() / 3 + CHUNK);
    loop {
        out.reserve(CHUNK);
        let consumed = stream.total_in() as usize;
        match stream.compress_vec(&plain[consumed..], &mut out, bzip2::Action::Finish).map_err(damaged)? {
            bzip2::Status::StreamEnd => return Ok(out),
            _ => continue,
        }
    }
}

impl Bzip2Layer {
    /// Models the bzip2 file `bytes`; returns the layer and the uncompressed bytes.
    pub(crate) fn create(bytes: &[u8]) -> Result<(Bzip2Layer, Vec<u8>), RecipeError> {
        let unsupported = |why: String| RecipeError::Unsupported(format!("bzip2: {why}"));
        let mut streams = Vec::new();
        let mut plain = Vec::new();
        let mut pos = 0;
        while bytes.len() - pos >= 14 && bytes[pos..].starts_with(b"BZh") {
            let level = bytes[pos + 3].wrapping_sub(b'0');
            if !(1..=9).contains(&level) {
                return Err(unsupported(format!("block size `{}`", char::from(bytes[pos + 3]))));
            }
            let mut decoder = bzip2::Decompress::new(false);
            let start = plain.len();
            loop {
                plain.reserve(CHUNK * 4);
                let consumed = decoder.total_in() as usize;
                let status = decoder
                    .decompress_vec(&bytes[pos + consumed..], &mut plain)
                    .map_err(|e| unsupported(format!("a stream does not decompress: {e}")))?;
                if matches!(status, bzip2::Status::StreamEnd) {
                    break;
                }
                if plain.len() > MAX_PLAIN {
                    return Err(unsupported(format!("it decompresses to more than {MAX_PLAIN} bytes")));
                }
                if decoder.total_in() as usize == consumed && plain.len() < plain.capacity() {
                    return Err(unsupported("a stream is cut short".into()));
                }
            }
            let end = pos + decoder.total_in() as usize;
            let stream_plain = &plain[start..];
            if compress(level, stream_plain)? != bytes[pos..end] {
                return Err(unsupported("libbzip2 does not reproduce the stream (another encoder wrote it)".into()));
            }
            streams.push(Bzip2Stream { level, plain_len: stream_plain.len() as u64 });
            pos = end;
        }
        if streams.is_empty() {
            return Err(unsupported("no stream".into()));
        }
        Ok((Bzip2Layer { streams, trailing: bytes[pos..].to_vec() }, plain))
    }

    /// Within what real files need: every stream but a lone one holds data (pbzip2 writes one
    /// per chunk of at least 100 kB), and each level is 1 to 9.
    pub(super) fn check_shape(&self) -> Result<(), OutOfBounds> {
        if self.streams.len() > MAX_STREAMS {
            return Err(OutOfBounds(format!("bzip2: {} streams, more than {MAX_STREAMS}", self.streams.len())));
        }
        if self.streams.len() > 1 && self.streams.iter().any(|s| s.plain_len == 0) {
            return Err(OutOfBounds("bzip2: an empty stream among others".into()));
        }
        match self.streams.iter().find(|s| !(1..=9).contains(&s.level)) {
            Some(stream) => Err(OutOfBounds(format!("bzip2: block size level {}", stream.level))),
            None => Ok(()),
        }
    }

    /// Recompresses `plain` exactly as the original file was.
    pub(crate) fn apply(&self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), RecipeError> {
        let pieces = super::split_by_lengths(plain, self.streams.iter().map(|s| s.plain_len), "bzip2 streams")?;
        for (stream, piece) in self.streams.iter().zip(pieces) {
            out.extend_from_slice(&compress(stream.level, piece)?);
        }
        out.extend_from_slice(&self.trailing);
        Ok(())
    }
}
