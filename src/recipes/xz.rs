//! The xz layer of a recipe.
//!
//! An xz file is a stream: a 12-byte header (with the integrity check's type), blocks (each with
//! a header naming its filters, then LZMA2 data, padding and the check), an index and a footer;
//! streams may be followed by zero padding. liblzma's encoder is deterministic for given
//! settings, and `xz` has used the same encoder for many years, so the layer records settings,
//! not bytes: the preset (0 to 9, and whether `-e`), the dictionary size (xz shrinks it for
//! small inputs), the check, and, for files written by the multithreaded encoder (`xz -T`,
//! whose block headers record their sizes), the block size. They are found by re-encoding with
//! each candidate and comparing as the output comes, so a wrong guess costs little.

use serde::{Deserialize, Serialize};

use super::{OutOfBounds, RecipeError};
use liblzma::stream::{Action, Check, Filters, LzmaOptions, MtStreamBuilder, PRESET_EXTREME, Status, Stream};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XzLayer {
    /// 0 to 9, with liblzma's extreme flag for `-e`.
    pub preset: u32,
    pub dict_size: u32,
    /// The check type of the stream header: 0 none, 1 CRC32, 4 CRC64, 10 SHA-256.
    pub check: u8,
    /// The block size of the multithreaded encoder, for files it wrote.
    pub block_size: Option<u64>,
    /// Bytes after the stream (stream padding).
    pub trailing: Vec<u8>,
}

const CHUNK: usize = 64 * 1024;
const MAX_DICT: u32 = 64 << 20;
const MAX_BLOCK: u64 = 1 << 30;
/// What liblzma may allocate to decode: the largest dictionary modelled, and room for the rest.
const DECODER_MEMORY: u64 = MAX_DICT as u64 + (16 << 20);

/// How many bytes the xz file `bytes` decompresses to (every stream, counted without keeping them;
/// at most `limit + 1`).
pub(super) fn plain_len(bytes: &[u8], limit: usize) -> u64 {
    match Stream::new_stream_decoder(DECODER_MEMORY, liblzma::stream::CONCATENATED) {
        Ok(stream) => super::footprint::count(liblzma::read::XzDecoder::new_stream(bytes, stream), limit),
        Err(_) => 0,
    }
}

fn check_of(id: u8) -> Option<Check> {
    match id {
        0 => Some(Check::None),
        1 => Some(Check::Crc32),
        4 => Some(Check::Crc64),
        10 => Some(Check::Sha256),
        _ => None,
    }
}

/// A multibyte integer of the xz format.
fn varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..9 {
        let byte = *bytes.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// From the first block header: the uncompressed size if recorded, and LZMA2's dictionary size.
fn first_block(bytes: &[u8]) -> Result<(Option<u64>, u32), RecipeError> {
    let unsupported = |why: &str| RecipeError::Unsupported(format!("xz: {why}"));
    let header_size = usize::from(*bytes.get(12).ok_or_else(|| unsupported("no block"))?) * 4 + 4;
    let flags = *bytes.get(13).ok_or_else(|| unsupported("no block"))?;
    if flags & 0x03 != 0 {
        return Err(unsupported("a block with several filters (a BCJ filter, say)"));
    }
    let mut pos = 14;
    if flags & 0x40 != 0 {
        varint(bytes, &mut pos).ok_or_else(|| unsupported("a damaged block header"))?;
    }
    let uncompressed = if flags & 0x80 != 0 {
        Some(varint(bytes, &mut pos).ok_or_else(|| unsupported("a damaged block header"))?)
    } else {
        None
    };
    let filter = varint(bytes, &mut pos).ok_or_else(|| unsupported("a damaged block header"))?;
    let props_len = varint(bytes, &mut pos).ok_or_else(|| unsupported("a damaged block header"))?;
    if filter != 0x21 || props_len != 1 || pos >= 12 + header_size {
        return Err(unsupported("a filter other than LZMA2"));
    }
    let props = u32::from(bytes[pos]);
    if props > 40 {
        return Err(unsupported("a damaged LZMA2 dictionary size"));
    }
    let dict = if props == 40 { u32::MAX } else { (2 | (props & 1)) << (props / 2 + 11) };
    Ok((uncompressed, dict))
}

/// The dictionary size of each preset, 0 to 9, as xz(1) documents it.
const PRESET_DICT_SIZES: [u32; 10] =
    [256 << 10, 1 << 20, 2 << 20, 4 << 20, 4 << 20, 8 << 20, 8 << 20, 16 << 20, 32 << 20, 64 << 20];

/// Presets in the order worth trying for a stream whose header names `dict_size`: those whose
/// dictionary it is, then those xz would have shrunk to it (it does for inputs smaller than the
/// dictionary), then the rest (a dictionary set by hand); within each, the default (6) first,
/// then the smallest dictionaries (the fastest presets).
fn likely_presets(dict_size: u32) -> Vec<u32> {
    let mut presets: Vec<u32> = (0..10).collect();
    presets.sort_by_key(|&p| {
        let preset_dict = PRESET_DICT_SIZES[p as usize];
        let rank = match preset_dict.cmp(&dict_size) {
            std::cmp::Ordering::Equal => 0,
            std::cmp::Ordering::Greater => 1,
            std::cmp::Ordering::Less => 2,
        };
        (rank, p != 6, preset_dict, std::cmp::Reverse(p))
    });
    presets
}

impl XzLayer {
    fn encoder(&self) -> Result<Stream, RecipeError> {
        let damaged = |e: liblzma::stream::Error| RecipeError::Damaged(format!("xz: {e}"));
        let check =
            check_of(self.check).ok_or_else(|| RecipeError::Damaged(format!("xz: check type {}", self.check)))?;
        let mut options = LzmaOptions::new_preset(self.preset).map_err(damaged)?;
        options.dict_size(self.dict_size);
        let mut filters = Filters::new();
        filters.lzma2(&options);
        match self.block_size {
            None => Stream::new_stream_encoder(&filters, check).map_err(damaged),
            Some(block_size) => MtStreamBuilder::new()
                .filters(filters)
                .check(check)
                .block_size(block_size)
                .threads(2)
                .encoder()
                .map_err(damaged),
        }
    }

    /// Encodes `plain`, stopping at the first byte that differs from `expected` (if given).
    fn encode(&self, plain: &[u8], expected: Option<&[u8]>) -> Result<Option<Vec<u8>>, RecipeError> {
        let mut stream = self.encoder()?;
        let mut out = Vec::with_capacity(expected.map_or(plain.len() / 4, <[u8]>::len) + CHUNK);
        let mut consumed = 0;
        loop {
            let input = &plain[consumed..(consumed + CHUNK).min(plain.len())];
            let action = if consumed + input.len() == plain.len() { Action::Finish } else { Action::Run };
            let before_in = stream.total_in();
            let before_out = out.len();
            out.reserve(CHUNK);
            let status =
                stream.process_vec(input, &mut out, action).map_err(|e| RecipeError::Damaged(format!("xz: {e}")))?;
            consumed += (stream.total_in() - before_in) as usize;
            if let Some(expected) = expected
                && expected.get(before_out..out.len()) != Some(&out[before_out..])
            {
                return Ok(None);
            }
            if matches!(status, Status::StreamEnd) {
                return Ok(Some(out));
            }
        }
    }

    /// Models the xz file `bytes`; returns the layer and the uncompressed bytes.
    pub(crate) fn create(bytes: &[u8], limit: usize) -> Result<(XzLayer, Vec<u8>), RecipeError> {
        let unsupported = |why: String| RecipeError::Unsupported(format!("xz: {why}"));
        let check = bytes.get(7).map(|flags| flags & 0x0f).ok_or_else(|| unsupported("no stream header".into()))?;
        let mut decoder = Stream::new_stream_decoder(DECODER_MEMORY, 0).map_err(|e| unsupported(e.to_string()))?;
        let mut plain = Vec::with_capacity(bytes.len().saturating_mul(4).min(limit));
        loop {
            plain.reserve(CHUNK * 4);
            let before = decoder.total_in() as usize;
            let status = decoder
                .process_vec(&bytes[before..], &mut plain, Action::Finish)
                .map_err(|e| unsupported(format!("the stream does not decompress: {e}")))?;
            if matches!(status, Status::StreamEnd) {
                break;
            }
            if plain.len() > limit {
                return Err(unsupported(format!("it decompresses to more than {limit} bytes")));
            }
            if decoder.total_in() as usize == before && plain.len() < plain.capacity() {
                return Err(unsupported("the stream is cut short".into()));
            }
        }
        let stream_len = decoder.total_in() as usize;
        let (block_size, dict_size) = first_block(bytes)?;
        let trailing = bytes[stream_len..].to_vec();
        let stream = &bytes[..stream_len];
        for preset in likely_presets(dict_size).into_iter().flat_map(|p| [p, p | PRESET_EXTREME]) {
            let layer = XzLayer { preset, dict_size, check, block_size, trailing: trailing.clone() };
            if layer.encode(&plain, Some(stream))?.is_some_and(|out| out == stream) {
                return Ok((layer, plain));
            }
        }
        Err(unsupported("no liblzma preset reproduces the stream (another encoder wrote it)".into()))
    }

    /// Within what `xz` writes: presets 0 to 9 (with or without `-e`), a dictionary of at most
    /// preset 9's 64 MiB, a known check, a multithreaded block size of at most 1 GiB. A larger
    /// dictionary or block would make applying the recipe take gigabytes.
    pub(super) fn check_shape(&self) -> Result<(), OutOfBounds> {
        if self.preset & !PRESET_EXTREME > 9 {
            return Err(OutOfBounds(format!("xz: preset {:#x}", self.preset)));
        }
        if self.dict_size > MAX_DICT {
            return Err(OutOfBounds(format!("xz: a dictionary of {} bytes, more than {MAX_DICT}", self.dict_size)));
        }
        if check_of(self.check).is_none() {
            return Err(OutOfBounds(format!("xz: check type {}", self.check)));
        }
        match self.block_size {
            Some(size) if size > MAX_BLOCK => {
                Err(OutOfBounds(format!("xz: blocks of {size} bytes, more than {MAX_BLOCK}")))
            }
            _ => Ok(()),
        }
    }

    /// Recompresses `plain` exactly as the original file was.
    pub(crate) fn apply(&self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), RecipeError> {
        let encoded = self.encode(plain, None)?.expect("an unchecked encoding completes");
        out.extend_from_slice(&encoded);
        out.extend_from_slice(&self.trailing);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_whose_dictionary_the_header_names_come_first() {
        // `xz -9` of a large file names 64 MiB; `xz -0` 256 KiB; `xz -6` of a 700 kB file
        // names 768 KiB, its dictionary shrunk to the input.
        assert_eq!(likely_presets(64 << 20)[0], 9);
        assert_eq!(likely_presets(8 << 20)[..2], [6, 5]);
        assert_eq!(likely_presets(256 << 10)[0], 0);
        assert_eq!(likely_presets(768 << 10)[..3], [6, 1, 2]);
        assert_eq!(likely_presets(768 << 10).len(), 10);
    }
}
