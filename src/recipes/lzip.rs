//! The lzip layer of a recipe (`.tar.lz`).
//!
//! An lzip file is one or more members, each a 6-byte header (`LZIP`, version 1, the coded
//! dictionary size), an LZMA stream with an end marker, and a 20-byte trailer (CRC-32, data size,
//! member size). `lzip` and `plzip` write the same bytes for the same member: both use the
//! encoder of lzlib, which reproduces them given two settings, the dictionary size and the match
//! length limit. The dictionary size is the header's (`lzip` shrinks it to a small file's size
//! before coding it; the encoder then works with the coded value), and the match length limit is
//! found by re-encoding: each level's first (`-6`'s 36, then `-9`'s 273, then the other levels'),
//! then every other value `--match-length` accepts. `-0` is lzlib's fast encoder, which it selects
//! by a dictionary of 65,535 bytes and a limit of 16; its header says 65,536, or the member's size
//! for a smaller member. `plzip` cuts its
//! input into members (1 MiB at `-0`, twice the dictionary otherwise), so members are kept one by
//! one, each with its own settings and length.
//!
//! Members are found from the end, as lzip itself does: each trailer gives its member's size.
//! Data after the last member (which lzip tolerates) is refused here. Decoding is liblzma's lzip
//! decoder, with a memory limit; encoding is lzlib 1.15, bundled by lzlib-sys and pinned, since
//! its output is part of the format.

use std::io::Write;
use std::ptr::NonNull;

use serde::{Deserialize, Serialize};

use super::{OutOfBounds, RecipeError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LzipLayer {
    #[serde(deserialize_with = "super::bounded::vec")]
    pub members: Vec<LzipMember>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LzipMember {
    /// The dictionary size lzlib is given (65,535 for the fast encoder).
    pub dict_size: u32,
    pub match_len_limit: u16,
    /// How many uncompressed bytes the member holds.
    pub plain_len: u64,
}

const MAGIC: &[u8; 5] = b"LZIP\x01";
const HEADER_LEN: usize = 6;
const TRAILER_LEN: usize = 20;
/// lzlib's smallest dictionary, and the largest one a recipe may ask for: lzip `-9`'s 32 MiB,
/// twice over. lzlib's manual puts the encoder at up to 2 + 9 times the dictionary in memory,
/// so about 700 MiB at most, as for the xz layer's 64 MiB dictionaries.
const MIN_DICT: u32 = 1 << 12;
const MAX_DICT: u32 = 64 << 20;
const MATCH_LEN_LIMITS: std::ops::RangeInclusive<u16> = 5..=273;
/// The fast encoder's settings (`-0`).
const FAST: (u32, u16) = (65_535, 16);
/// Levels 1 to 9's match length limits, the default (`-6`) and the best first.
const LEVEL_MATCH_LENS: [u16; 9] = [36, 273, 5, 6, 8, 12, 20, 68, 132];
const MAX_MEMBERS: usize = 1 << 16;
/// lzlib's largest member, which no real member reaches: members are never cut by size.
const MAX_MEMBER_SIZE: u64 = 1 << 51;

/// The dictionary size a header's byte codes: a power of two, less sixteenths of it.
fn coded_dict_size(byte: u8) -> u32 {
    let base = 1u32 << (byte & 0x1f).min(29);
    base - base / 16 * u32::from(byte >> 5)
}

/// lzlib's encoder, for one member.
struct Encoder(NonNull<lzlib_sys::LZ_Encoder>);

impl Encoder {
    fn new(dict_size: u32, match_len_limit: u16) -> std::io::Result<Encoder> {
        // SAFETY: lzlib checks its arguments and returns an encoder that reports its own
        // errors, or null when out of memory.
        let raw = unsafe { lzlib_sys::LZ_compress_open(dict_size as i32, i32::from(match_len_limit), MAX_MEMBER_SIZE) };
        let encoder = Encoder(NonNull::new(raw).ok_or_else(|| std::io::Error::other("lzlib: out of memory"))?);
        // SAFETY: the encoder is live until dropped.
        if unsafe { lzlib_sys::LZ_compress_errno(encoder.0.as_ptr()) } != lzlib_sys::LZ_Errno_LZ_ok {
            return Err(std::io::Error::other(format!(
                "lzlib refuses a dictionary of {dict_size} bytes with match length limit {match_len_limit}"
            )));
        }
        Ok(encoder)
    }

    /// Compresses `plain` as one member into `out`, which may stop it by failing.
    fn compress(self, plain: &[u8], out: &mut impl Write) -> std::io::Result<()> {
        let raw = self.0.as_ptr();
        let mut buffer = vec![0u8; 64 << 10];
        let (mut fed, mut finished_input) = (0, false);
        loop {
            if !finished_input {
                let chunk = &plain[fed..(fed + (1 << 20)).min(plain.len())];
                // SAFETY: `chunk` is valid for its length, which fits an i32.
                let taken = unsafe { lzlib_sys::LZ_compress_write(raw, chunk.as_ptr(), chunk.len() as i32) };
                fed += usize::try_from(taken).map_err(|_| std::io::Error::other("lzlib: write failed"))?;
                if fed == plain.len() {
                    // SAFETY: as above.
                    unsafe { lzlib_sys::LZ_compress_finish(raw) };
                    finished_input = true;
                }
            }
            // SAFETY: `buffer` is valid for its length.
            let read = unsafe { lzlib_sys::LZ_compress_read(raw, buffer.as_mut_ptr(), buffer.len() as i32) };
            let read = usize::try_from(read).map_err(|_| std::io::Error::other("lzlib: read failed"))?;
            out.write_all(&buffer[..read])?;
            // SAFETY: as above.
            if unsafe { lzlib_sys::LZ_compress_finished(raw) } == 1 {
                return Ok(());
            }
        }
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: the encoder was opened by `new` and is closed once.
        unsafe { lzlib_sys::LZ_compress_close(self.0.as_ptr()) };
    }
}

impl LzipMember {
    fn compress_into(&self, plain: &[u8], out: &mut impl Write) -> std::io::Result<()> {
        Encoder::new(self.dict_size, self.match_len_limit)?.compress(plain, out)
    }
}

/// What liblzma may allocate to decode: the largest dictionary modelled, and room for the rest.
const DECODER_MEMORY: u64 = MAX_DICT as u64 + (16 << 20);

/// How many bytes the lzip file `bytes` decompresses to (every member, counted without keeping
/// them; at most `limit + 1`).
pub(super) fn plain_len(bytes: &[u8], limit: usize) -> u64 {
    match liblzma::stream::Stream::new_lzip_decoder(DECODER_MEMORY, liblzma::stream::CONCATENATED) {
        Ok(stream) => super::footprint::count(liblzma::read::XzDecoder::new_stream(bytes, stream), limit),
        Err(_) => 0,
    }
}

/// Decodes one member with liblzma, at most `limit` bytes.
fn decode_member(member: &[u8], limit: usize, plain: &mut Vec<u8>) -> Result<(), String> {
    let stream = liblzma::stream::Stream::new_lzip_decoder(DECODER_MEMORY, 0).map_err(|e| e.to_string())?;
    let decoder = liblzma::read::XzDecoder::new_stream(member, stream);
    let before = plain.len();
    std::io::copy(&mut std::io::Read::take(decoder, limit as u64 + 1), plain).map_err(|e| e.to_string())?;
    if plain.len() - before > limit {
        return Err(format!("it decompresses to more than {limit} bytes"));
    }
    Ok(())
}

/// The members of an lzip file, as byte ranges, found from the end.
fn members(bytes: &[u8]) -> Result<Vec<std::ops::Range<usize>>, String> {
    let mut members = Vec::new();
    let mut end = bytes.len();
    while end > 0 {
        if end < HEADER_LEN + TRAILER_LEN || members.len() == MAX_MEMBERS {
            return Err("data after the last member, or a damaged trailer".into());
        }
        let size = u64::from_le_bytes(bytes[end - 8..end].try_into().expect("8 bytes"));
        let start = usize::try_from(size).ok().and_then(|size| end.checked_sub(size));
        match start {
            Some(start) if end - start >= HEADER_LEN + TRAILER_LEN && bytes[start..].starts_with(MAGIC) => {
                members.push(start..end);
                end = start;
            }
            _ => return Err("data after the last member, or a damaged trailer".into()),
        }
    }
    members.reverse();
    Ok(members)
}

/// The settings worth trying for a header's dictionary size, most likely first.
fn candidates(dict_size: u32) -> impl Iterator<Item = (u32, u16)> {
    let fast = (dict_size <= FAST.0 + 1).then_some(FAST);
    let levels = LEVEL_MATCH_LENS.into_iter();
    let others = MATCH_LEN_LIMITS.filter(|len| !LEVEL_MATCH_LENS.contains(len));
    fast.into_iter().chain(levels.chain(others).map(move |len| (dict_size, len)))
}

impl LzipLayer {
    /// Models the lzip file `bytes`; returns the layer and the uncompressed bytes.
    pub(crate) fn create(bytes: &[u8], limit: usize) -> Result<(LzipLayer, Vec<u8>), RecipeError> {
        let unsupported = |why: String| RecipeError::Unsupported(format!("lzip: {why}"));
        let mut plain = Vec::new();
        let mut layer = LzipLayer { members: Vec::new() };
        for range in members(bytes).map_err(unsupported)? {
            let member = &bytes[range];
            let dict_size = coded_dict_size(member[5]);
            if !(MIN_DICT..=MAX_DICT).contains(&dict_size) {
                return Err(unsupported(format!("a dictionary of {dict_size} bytes")));
            }
            let start = plain.len();
            decode_member(member, limit - start, &mut plain)
                .map_err(|why| unsupported(format!("a member does not decompress: {why}")))?;
            let member_plain = &plain[start..];
            let found = candidates(dict_size)
                .map(|(dict_size, match_len_limit)| LzipMember {
                    dict_size,
                    match_len_limit,
                    plain_len: member_plain.len() as u64,
                })
                .find(|candidate| {
                    let mut compare = super::Compare::new(member);
                    candidate.compress_into(member_plain, &mut compare).is_ok() && compare.done()
                })
                .ok_or_else(|| {
                    unsupported(
                        "lzlib 1.15 reproduces no member with any match length (another encoder wrote it)".into(),
                    )
                })?;
            layer.members.push(found);
        }
        if layer.members.is_empty() {
            return Err(unsupported("no member".into()));
        }
        Ok((layer, plain))
    }

    /// Within what real files need: the dictionary bounds what applying takes in memory.
    pub(super) fn check_shape(&self) -> Result<(), OutOfBounds> {
        if self.members.is_empty() || self.members.len() > MAX_MEMBERS {
            return Err(OutOfBounds(format!("lzip: {} members", self.members.len())));
        }
        for member in &self.members {
            let fast = (member.dict_size, member.match_len_limit) == FAST;
            if !fast && !(MIN_DICT..=MAX_DICT).contains(&member.dict_size) {
                return Err(OutOfBounds(format!("lzip: a dictionary of {} bytes", member.dict_size)));
            }
            if !MATCH_LEN_LIMITS.contains(&member.match_len_limit) {
                return Err(OutOfBounds(format!("lzip: match length limit {}", member.match_len_limit)));
            }
        }
        Ok(())
    }

    /// Recompresses `plain` exactly as the original file was.
    pub(crate) fn apply(&self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), RecipeError> {
        let pieces = super::split_by_lengths(plain, self.members.iter().map(|m| m.plain_len), "lzip members")?;
        for (member, piece) in self.members.iter().zip(pieces) {
            member.compress_into(piece, out).map_err(|e| RecipeError::Damaged(format!("lzip: {e}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bytes_code_dictionary_sizes() {
        // Header bytes `lzip` 1.23 wrote: at -0 (64 KiB), at -6 for an 870,400-byte and a
        // 3,421,728-byte file (the dictionary shrunk to the file, coded upwards), and `-s4KiB`.
        assert_eq!(coded_dict_size(0x10), 65_536);
        assert_eq!(coded_dict_size(0x54), 917_504);
        assert_eq!(coded_dict_size(0x56), 3_670_016);
        assert_eq!(coded_dict_size(0x0c), 4096);
        // `plzip -0` of a 10,240-byte tar: the fast encoder names the member's size.
        assert_eq!(coded_dict_size(0xce), 10_240);
    }

    #[test]
    fn the_fast_encoder_is_tried_first_only_for_its_dictionary() {
        assert_eq!(candidates(65_536).next(), Some(FAST));
        assert_eq!(candidates(10_240).next(), Some(FAST));
        assert_eq!(candidates(8 << 20).next(), Some((8 << 20, 36)));
        assert_eq!(candidates(8 << 20).count(), MATCH_LEN_LIMITS.count());
    }
}
