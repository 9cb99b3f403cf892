//! The bzip2 layer of a recipe.
//!
//! A bzip2 file is one or more streams (`pbzip2` writes one per chunk), each `BZh` and a block
//! size digit (`1` to `9`, hundreds of kB), blocks, and an end-of-stream marker with the stream's
//! CRC, padded to a byte; anything may follow the last stream. libbzip2's output depends only on
//! the block size (the work factor chooses a sorting algorithm, not the result), and libbz2-rs
//! reproduces libbzip2 1.0.8 byte for byte; so a stream libbzip2 wrote is kept as its level and
//! how many bytes it holds. Other encoders (`lbzip2`) choose their own blocks and Huffman tables:
//! such a stream is kept as those choices ([`super::bzip2_blocks`]).
//!
//! Format version 4 added recorded streams; a layer without one is written as version 1's, which
//! older releases read.

use std::io::Write;

use serde::{Deserialize, Serialize};

use super::bzip2_blocks::{self, RecordedStream};
use super::{MAX_PLAIN, OutOfBounds, RecipeError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bzip2Layer {
    #[serde(deserialize_with = "super::bounded::vec")]
    pub streams: Vec<Bzip2Stream>,
    /// Bytes after the last stream.
    pub trailing: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Bzip2Stream {
    /// What libbzip2 writes at this block size level (1 to 9) for `plain_len` bytes.
    Libbzip2 { level: u8, plain_len: u64 },
    /// Another encoder's stream, kept as its blocks' choices.
    Recorded(RecordedStream),
}

/// Format versions 1 to 3's layer: libbzip2 streams only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bzip2LayerV1 {
    #[serde(deserialize_with = "super::bounded::vec")]
    pub streams: Vec<Libbzip2Stream>,
    pub trailing: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Libbzip2Stream {
    pub level: u8,
    pub plain_len: u64,
}

impl From<Bzip2LayerV1> for Bzip2Layer {
    fn from(layer: Bzip2LayerV1) -> Bzip2Layer {
        let streams = layer
            .streams
            .into_iter()
            .map(|Libbzip2Stream { level, plain_len }| Bzip2Stream::Libbzip2 { level, plain_len })
            .collect();
        Bzip2Layer { streams, trailing: layer.trailing }
    }
}

impl Bzip2Layer {
    /// The layer as format version 1 writes it, if it has no recorded stream.
    pub(super) fn as_v1(&self) -> Option<Bzip2LayerV1> {
        let streams = self
            .streams
            .iter()
            .map(|stream| match *stream {
                Bzip2Stream::Libbzip2 { level, plain_len } => Some(Libbzip2Stream { level, plain_len }),
                Bzip2Stream::Recorded(_) => None,
            })
            .collect::<Option<_>>()?;
        Some(Bzip2LayerV1 { streams, trailing: self.trailing.clone() })
    }
}

impl Bzip2Stream {
    /// How many uncompressed bytes the stream holds (`None` if a hostile record overflows).
    fn plain_len(&self) -> Option<u64> {
        match self {
            Bzip2Stream::Libbzip2 { plain_len, .. } => Some(*plain_len),
            Bzip2Stream::Recorded(stream) => stream.plain_len(),
        }
    }
}

const CHUNK: usize = 256 * 1024;
const MAX_STREAMS: usize = MAX_PLAIN / 100_000 + 1;

/// Compresses `plain` with libbzip2 into `sink`, a chunk at a time; `false` as soon as the sink
/// refuses a chunk (a [`super::Compare`] at the first difference).
fn compress_to(level: u8, plain: &[u8], sink: &mut impl Write) -> Result<bool, RecipeError> {
    let damaged = |e: bzip2::Error| RecipeError::Damaged(format!("bzip2: {e}"));
    if !(1..=9).contains(&level) {
        return Err(RecipeError::Damaged(format!("bzip2: block size level {level}")));
    }
    let mut stream = bzip2::Compress::new(bzip2::Compression::new(u32::from(level)), 30);
    let mut chunk = Vec::with_capacity(CHUNK);
    loop {
        chunk.clear();
        let consumed = stream.total_in() as usize;
        let status = stream.compress_vec(&plain[consumed..], &mut chunk, bzip2::Action::Finish).map_err(damaged)?;
        if sink.write_all(&chunk).is_err() {
            return Ok(false);
        }
        if matches!(status, bzip2::Status::StreamEnd) {
            return Ok(true);
        }
    }
}

fn compress(level: u8, plain: &[u8]) -> Result<Vec<u8>, RecipeError> {
    let mut out = Vec::with_capacity(plain.len() / 3 + CHUNK);
    compress_to(level, plain, &mut out)?;
    Ok(out)
}

/// Whether libbzip2 at `level` writes exactly `stream` for `plain`.
fn reproduces(level: u8, plain: &[u8], stream: &[u8]) -> Result<bool, RecipeError> {
    let mut compare = super::Compare::new(stream);
    Ok(compress_to(level, plain, &mut compare)? && compare.done())
}

impl Bzip2Layer {
    /// Models the bzip2 file `bytes`; returns the layer and the uncompressed bytes.
    pub(crate) fn create(bytes: &[u8], limit: usize) -> Result<(Bzip2Layer, Vec<u8>), RecipeError> {
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
                if plain.len() > limit {
                    return Err(unsupported(format!("it decompresses to more than {limit} bytes")));
                }
                if decoder.total_in() as usize == consumed && plain.len() < plain.capacity() {
                    return Err(unsupported("a stream is cut short".into()));
                }
            }
            let end = pos + decoder.total_in() as usize;
            let stream_plain = &plain[start..];
            let stream = if reproduces(level, stream_plain, &bytes[pos..end])? {
                Bzip2Stream::Libbzip2 { level, plain_len: stream_plain.len() as u64 }
            } else {
                Bzip2Stream::Recorded(bzip2_blocks::record(&bytes[pos..end], stream_plain).map_err(|e| {
                    unsupported(format!("libbzip2 does not reproduce a stream, and it cannot be recorded: {e}"))
                })?)
            };
            streams.push(stream);
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
        if self.streams.len() > 1 && self.streams.iter().any(|s| s.plain_len() == Some(0)) {
            return Err(OutOfBounds("bzip2: an empty stream among others".into()));
        }
        for stream in &self.streams {
            match stream {
                Bzip2Stream::Libbzip2 { level, .. } if !(1..=9).contains(level) => {
                    return Err(OutOfBounds(format!("bzip2: block size level {level}")));
                }
                Bzip2Stream::Libbzip2 { .. } => {}
                Bzip2Stream::Recorded(recorded) => recorded.check_shape()?,
            }
        }
        Ok(())
    }

    /// Recompresses `plain` exactly as the original file was.
    pub(crate) fn apply(&self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), RecipeError> {
        let lengths = self.streams.iter().map(|s| s.plain_len().unwrap_or(u64::MAX));
        let pieces = super::split_by_lengths(plain, lengths, "bzip2 streams")?;
        for (stream, piece) in self.streams.iter().zip(pieces) {
            match stream {
                Bzip2Stream::Libbzip2 { level, .. } => out.extend_from_slice(&compress(*level, piece)?),
                Bzip2Stream::Recorded(recorded) => out.extend_from_slice(&bzip2_blocks::rebuild(piece, recorded)?),
            }
        }
        out.extend_from_slice(&self.trailing);
        Ok(())
    }
}
