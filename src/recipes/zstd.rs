//! The zstd layer of a recipe.
//!
//! A zstd file is one or more frames (magic `28 b5 2f fd`), each a header (whether it records the
//! content size and a checksum, and the window it needs), blocks, and an optional checksum;
//! anything may follow the last frame. libzstd's output depends on more than its level:
//! - its version: the same level compresses differently from one release to the next (1.5.4 and
//!   1.5.7 differ at level 3), so a layer records the version it was made with and applying it
//!   with another one is refused rather than guessed at;
//! - whether the frame records its content size: the `zstd` command does for a file and not for
//!   standard input, and the header says which;
//! - the checksum flag (`--no-check`), also in the header;
//! - the multithreaded format: the `zstd` command (built with threads, as Debian's is) compresses
//!   with at least one worker even without `-T`, and that output is the same for any number of
//!   workers (`-T0` included) but not the single-threaded one libraries write by default;
//! - long-distance matching (`--long`), which also sets a window of 2^27 bytes unless told
//!   otherwise; the window the header names tells where to look.
//!
//! So a frame is kept as those parameters and how many bytes it holds. Candidates are tried in
//! the order real files make likely and each one stops at its first byte that differs, so a
//! wrong guess costs little; the first that reproduces the frame is kept.

use std::io::Write;

use serde::{Deserialize, Serialize};
use zstd::stream::raw::{CParameter, Encoder};

use super::{OutOfBounds, RecipeError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZstdLayer {
    /// `ZSTD_versionNumber()` of the libzstd that made it (10,504 for 1.5.4).
    pub libzstd: u32,
    #[serde(deserialize_with = "super::bounded::vec")]
    pub frames: Vec<ZstdFrame>,
    /// Bytes after the last frame.
    pub trailing: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZstdFrame {
    /// The compression level: 1 to 22, or negative for `--fast=N`.
    pub level: i32,
    /// Written by the multithreaded encoder (one worker or more) rather than the plain one.
    pub multithreaded: bool,
    pub checksum: bool,
    pub content_size: bool,
    /// Long-distance matching with this window log (`--long` is 27).
    pub long_window_log: Option<u32>,
    /// How many uncompressed bytes the frame holds.
    pub plain_len: u64,
}

const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// The largest window a recipe may ask for: 2^27 bytes, `--long`'s default. Larger ones need
/// `--memory` to decompress and are refused, so that a hostile recipe cannot make apply reserve
/// gigabytes.
const MAX_WINDOW_LOG: u32 = 27;

/// How many bytes the zstd file `bytes` decompresses to (every frame, counted without keeping
/// them; at most `limit + 1`).
pub(super) fn plain_len(bytes: &[u8], limit: usize) -> u64 {
    let Ok(mut decoder) = zstd::stream::read::Decoder::with_buffer(bytes) else { return 0 };
    if decoder.window_log_max(MAX_WINDOW_LOG).is_err() {
        return 0;
    }
    super::footprint::count(decoder, limit)
}
const MIN_LEVEL: i32 = -7;
const MAX_LEVEL: i32 = 22;
const MAX_FRAMES: usize = 1 << 16;
/// The order levels are tried in: the default, the usual "best" levels, then the rest.
const LEVEL_ORDER: &[i32] =
    &[3, 19, 9, 1, 22, 6, 12, 15, 10, 2, 4, 5, 7, 8, 11, 13, 14, 16, 17, 18, 20, 21, -1, -2, -3, -4, -5, -6, -7];

/// The libzstd this build links (see `Cargo.toml`).
pub(crate) fn libzstd_version() -> u32 {
    zstd::zstd_safe::version_number()
}

impl ZstdFrame {
    fn encoder(&self) -> std::io::Result<Encoder<'static>> {
        let mut encoder = Encoder::new(self.level)?;
        encoder.set_parameter(CParameter::NbWorkers(u32::from(self.multithreaded)))?;
        encoder.set_parameter(CParameter::ChecksumFlag(self.checksum))?;
        encoder.set_parameter(CParameter::ContentSizeFlag(self.content_size))?;
        if let Some(window_log) = self.long_window_log {
            encoder.set_parameter(CParameter::EnableLongDistanceMatching(true))?;
            encoder.set_parameter(CParameter::WindowLog(window_log))?;
        }
        if self.content_size {
            encoder.set_pledged_src_size(Some(self.plain_len))?;
        }
        Ok(encoder)
    }

    /// Compresses `plain` with these parameters into `out`.
    fn compress_into(&self, plain: &[u8], out: impl Write) -> std::io::Result<()> {
        let mut writer = zstd::stream::zio::Writer::new(out, self.encoder()?);
        for chunk in plain.chunks(1 << 20) {
            writer.write_all(chunk)?;
        }
        writer.finish()
    }
}

/// The flags of a frame header: (content size recorded, checksum, window log if it names one).
fn header_flags(frame: &[u8]) -> Option<(bool, bool, Option<u32>)> {
    let descriptor = *frame.get(4)?;
    let single_segment = descriptor & 0x20 != 0;
    let content_size = descriptor >> 6 != 0 || single_segment;
    let checksum = descriptor & 0x04 != 0;
    let window_log = match single_segment {
        true => None,
        false => Some(10 + u32::from(*frame.get(5)? >> 3)),
    };
    Some((content_size, checksum, window_log))
}

impl ZstdLayer {
    /// Models the zstd file `bytes`; returns the layer and the uncompressed bytes.
    pub(crate) fn create(bytes: &[u8], limit: usize) -> Result<(ZstdLayer, Vec<u8>), RecipeError> {
        let unsupported = |why: String| RecipeError::Unsupported(format!("zstd: {why}"));
        let mut frames = Vec::new();
        let mut plain = Vec::new();
        let mut pos = 0;
        while bytes[pos..].starts_with(&MAGIC) {
            let frame_len = zstd::zstd_safe::find_frame_compressed_size(&bytes[pos..]).map_err(|code| {
                unsupported(format!("a frame is damaged ({})", zstd::zstd_safe::get_error_name(code)))
            })?;
            let frame = &bytes[pos..pos + frame_len];
            let (content_size, checksum, window_log) =
                header_flags(frame).ok_or_else(|| unsupported("a frame header is cut short".into()))?;
            if window_log.is_some_and(|log| log > MAX_WINDOW_LOG) {
                return Err(unsupported(format!("a window over 2^{MAX_WINDOW_LOG} bytes")));
            }
            let start = plain.len();
            let mut decoder = zstd::stream::read::Decoder::with_buffer(frame)
                .map_err(|e| unsupported(format!("failed to start decoding: {e}")))?
                .single_frame();
            decoder.window_log_max(MAX_WINDOW_LOG).map_err(|e| unsupported(e.to_string()))?;
            let room = (limit - start) as u64 + 1;
            std::io::copy(&mut std::io::Read::take(decoder, room), &mut plain)
                .map_err(|e| unsupported(format!("a frame does not decompress: {e}")))?;
            if plain.len() > limit {
                return Err(unsupported(format!("it decompresses to more than {limit} bytes")));
            }
            let frame_plain = &plain[start..];
            let found = candidates(content_size, checksum, window_log, frame_plain.len() as u64)
                .find(|candidate| {
                    let mut compare = super::Compare::new(frame);
                    candidate.compress_into(frame_plain, &mut compare).is_ok() && compare.done()
                })
                .ok_or_else(|| {
                    unsupported(format!(
                        "libzstd {} reproduces no frame at any level (another version or encoder wrote it)",
                        version_name(libzstd_version())
                    ))
                })?;
            frames.push(found);
            pos += frame_len;
        }
        if frames.is_empty() {
            return Err(unsupported("no frame".into()));
        }
        Ok((ZstdLayer { libzstd: libzstd_version(), frames, trailing: bytes[pos..].to_vec() }, plain))
    }

    /// Within what real files need, and what this build can reproduce.
    pub(super) fn check_shape(&self) -> Result<(), OutOfBounds> {
        if self.frames.is_empty() || self.frames.len() > MAX_FRAMES {
            return Err(OutOfBounds(format!("zstd: {} frames", self.frames.len())));
        }
        for frame in &self.frames {
            if !(MIN_LEVEL..=MAX_LEVEL).contains(&frame.level) || frame.level == 0 {
                return Err(OutOfBounds(format!("zstd: level {}", frame.level)));
            }
            if frame.long_window_log.is_some_and(|log| !(10..=MAX_WINDOW_LOG).contains(&log)) {
                return Err(OutOfBounds(format!("zstd: window log {:?}", frame.long_window_log)));
            }
        }
        Ok(())
    }

    /// Recompresses `plain` exactly as the original file was.
    pub(crate) fn apply(&self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), RecipeError> {
        if self.libzstd != libzstd_version() {
            return Err(RecipeError::Unsupported(format!(
                "zstd: the recipe needs libzstd {}, and this build has {}",
                version_name(self.libzstd),
                version_name(libzstd_version())
            )));
        }
        let pieces = super::split_by_lengths(plain, self.frames.iter().map(|f| f.plain_len), "zstd frames")?;
        for (frame, piece) in self.frames.iter().zip(pieces) {
            frame.compress_into(piece, &mut *out).map_err(|e| RecipeError::Damaged(format!("zstd: {e}")))?;
        }
        out.extend_from_slice(&self.trailing);
        Ok(())
    }
}

/// The frames worth trying for a header's flags, most likely first. A window of 2^27 or more
/// comes from `--ultra -22` or from `--long`; smaller ones never from `--long`; an unnamed one
/// (single segment) from anything. For each level, the `zstd` command's multithreaded format
/// is tried before libraries' plain one.
fn candidates(
    content_size: bool,
    checksum: bool,
    window_log: Option<u32>,
    plain_len: u64,
) -> impl Iterator<Item = ZstdFrame> {
    let plain = LEVEL_ORDER.iter().map(|&level| (level, None));
    let long = |log: u32| LEVEL_ORDER.iter().map(move |&level| (level, Some(log)));
    let settings: Vec<(i32, Option<u32>)> = match window_log {
        Some(log) if log >= 27 => {
            std::iter::once((MAX_LEVEL, None)).chain(long(log)).chain(plain.filter(|&(l, _)| l != MAX_LEVEL)).collect()
        }
        Some(_) => plain.collect(),
        // A frame is single-segment when its window holds all of it, and a level's window never
        // grows past its default: a frame larger than that at a level came from `--long` (or
        // another window setting), so the level is not worth a full compression without it.
        // Where a level's window is too small, its `--long` form is tried in its place, so that
        // a `--long -19` file does not wait for every other level first.
        None => LEVEL_ORDER
            .iter()
            .flat_map(|&level| {
                let fits = plain_len <= 1 << default_window_log(level);
                [(level, None), (level, Some(27))].into_iter().filter(move |&(_, long)| long.is_some() || fits)
            })
            .collect(),
    };
    settings.into_iter().flat_map(move |(level, long_window_log)| {
        [true, false].into_iter().map(move |multithreaded| ZstdFrame {
            level,
            multithreaded,
            checksum,
            content_size,
            long_window_log,
            plain_len,
        })
    })
}

/// The window log libzstd 1.5.4 gives a level for inputs over 256 KiB (its `clevels.h`; smaller
/// inputs get smaller windows), the largest that level uses without other settings.
fn default_window_log(level: i32) -> u32 {
    const BY_LEVEL: [u32; 23] =
        [19, 19, 20, 21, 21, 21, 21, 21, 21, 22, 22, 22, 22, 22, 22, 22, 22, 23, 23, 23, 25, 26, 27];
    BY_LEVEL[level.clamp(0, MAX_LEVEL) as usize]
}

/// `10504` as `1.5.4`.
fn version_name(number: u32) -> String {
    format!("{}.{}.{}", number / 10_000, number / 100 % 100, number % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_says_content_size_checksum_and_window() {
        // Debian's `zstd` 1.5.4: `-3` of a 5 MB file; the same from standard input (no content
        // size); `--no-check` from standard input; `--long -19` of the file (single segment: the
        // content size bounds the window, and no window descriptor follows).
        let magic = |rest: &[u8]| [&MAGIC[..], rest].concat();
        assert_eq!(header_flags(&magic(&[0x84, 0x58, 0x00, 0xa0])), Some((true, true, Some(21))));
        assert_eq!(header_flags(&magic(&[0x04, 0x58, 0x54, 0xb5])), Some((false, true, Some(21))));
        assert_eq!(header_flags(&magic(&[0x00, 0x58, 0x31, 0x00])), Some((false, false, Some(21))));
        assert_eq!(header_flags(&magic(&[0xa4, 0x00, 0xa0, 0x50])), Some((true, true, None)));
    }

    #[test]
    fn single_segment_frames_larger_than_a_levels_window_skip_it() {
        let levels = |plain_len| -> Vec<i32> {
            candidates(true, true, None, plain_len).filter(|f| f.long_window_log.is_none()).map(|f| f.level).collect()
        };
        // `zstd -3` of a 1 MiB file is single-segment (its 2 MiB window holds it); of a 5 MB file
        // it is not, so a 5 MB single-segment frame is tried at levels whose window holds it.
        assert!(levels(1 << 20).contains(&3));
        assert!(!levels(5 << 20).contains(&3));
        assert!(levels(5 << 20).contains(&19) && levels(100 << 20).contains(&22));
        // Past the default level's window, `--long` comes first.
        assert_eq!(candidates(true, true, None, 5 << 20).next().unwrap().long_window_log, Some(27));
        assert_eq!(candidates(true, true, None, 1 << 20).next().unwrap().long_window_log, None);
    }

    #[test]
    fn versions_read_as_releases() {
        assert_eq!(version_name(10504), "1.5.4");
        assert_eq!(libzstd_version(), 10504, "Cargo.toml pins libzstd 1.5.4");
    }
}
