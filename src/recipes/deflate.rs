//! Deflate streams (in gzip members and zip entries), kept as the encoder that wrote them.
//!
//! The same data deflates to different bytes with every implementation and level, so a recipe
//! must say how to get the exact stream back. Most streams come from a few encoders: zlib (GNU
//! gzip's algorithm, Python, Java, Node), zlib-rs, a port of zlib-ng that cargo's `flate2`
//! has used since 2025 (so recent `.crate` files), and miniz_oxide, flate2's default backend
//! before that (older `.crate` files, Rust tools). Those are recognised by re-encoding the data
//! at each level and comparing as the output comes (a wrong guess is caught within its first
//! block), and kept as the encoder and level. Anything else is kept as preflate-rs's corrections
//! against its own prediction of the encoder's choices, which are small for deflate encoders of
//! the zlib family, or, for streams preflate cannot model or models poorly, as the stream's own
//! decisions ([`super::deflate_tokens`]), which any valid stream has.
//!
//! The encoders are pinned, since their output is part of the recipe format: zlib 1.3.2 (bundled
//! by libz-sys, not the system's; distributions that ship zlib-ng as zlib deflate differently),
//! zlib-rs 0.6.8 and miniz_oxide 0.8.9, each with a 32 KiB window and the default strategy.

use serde::{Deserialize, Serialize};

use super::{RecipeError, deflate_tokens, preflate_process};

/// How to recreate one raw deflate stream from its uncompressed bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Deflate {
    /// zlib at this level (1 to 9).
    Zlib { level: u8 },
    /// zlib-rs at this level (1 to 9).
    ZlibRs { level: u8 },
    /// preflate-rs 0.7.1's corrections.
    Preflate { corrections: Vec<u8> },
    /// miniz_oxide at this level (1 to 10); since recipe format version 3.
    Miniz { level: u8 },
    /// The stream's own blocks and LZ77 parse ([`super::deflate_tokens`]); since recipe format
    /// version 3.
    Recorded { record: Vec<u8> },
}

/// Levels in the order they are tried: each encoder's default and best first.
const ZLIB_LEVELS: [u8; 9] = [6, 9, 1, 5, 2, 3, 4, 7, 8];
const ZLIB_RS_LEVELS: [u8; 9] = [9, 6, 1, 5, 2, 3, 4, 7, 8];
/// flate2's `best()` (what cargo wrote crates with) first; 10 is miniz's own "uber" level.
const MINIZ_LEVELS: [u8; 10] = [9, 6, 1, 5, 2, 3, 4, 7, 8, 10];
const CHUNK: usize = 64 << 10;

/// One of the encoders, fed in chunks.
enum Encoder {
    Zlib(flate2::Compress),
    ZlibRs(Box<zlib_rs::Deflate>),
    Miniz(Box<miniz_oxide::deflate::core::CompressorOxide>),
}

impl Encoder {
    fn new(deflate: &Deflate) -> Result<Encoder, RecipeError> {
        let (level, top) = match deflate {
            Deflate::Zlib { level } | Deflate::ZlibRs { level } => (*level, 9),
            Deflate::Miniz { level } => (*level, 10),
            Deflate::Preflate { .. } | Deflate::Recorded { .. } => unreachable!("only encoders are fed in chunks"),
        };
        if !(1..=top).contains(&level) {
            return Err(RecipeError::Damaged(format!("deflate level {level}")));
        }
        Ok(match deflate {
            Deflate::Zlib { .. } => Encoder::Zlib(flate2::Compress::new(flate2::Compression::new(level.into()), false)),
            Deflate::Miniz { .. } => {
                // Raw deflate (window bits -15) with the default strategy, as flate2 sets it up.
                let flags = miniz_oxide::deflate::core::create_comp_flags_from_zip_params(level.into(), -15, 0);
                Encoder::Miniz(Box::new(miniz_oxide::deflate::core::CompressorOxide::new(flags)))
            }
            _ => Encoder::ZlibRs(Box::new(zlib_rs::Deflate::new(level.into(), false, 15))),
        })
    }

    /// Compresses `input` into the spare capacity of `out`; true once the stream has ended.
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>, finish: bool) -> Result<(usize, bool), RecipeError> {
        match self {
            Encoder::Zlib(stream) => {
                let before = stream.total_in();
                let flush = if finish { flate2::FlushCompress::Finish } else { flate2::FlushCompress::None };
                let status =
                    stream.compress_vec(input, out, flush).map_err(|e| RecipeError::Damaged(format!("zlib: {e}")))?;
                Ok(((stream.total_in() - before) as usize, status == flate2::Status::StreamEnd))
            }
            Encoder::ZlibRs(stream) => {
                let (before_in, before_out) = (stream.total_in(), stream.total_out());
                let len = out.len();
                out.resize(out.capacity(), 0);
                let flush = if finish { zlib_rs::DeflateFlush::Finish } else { zlib_rs::DeflateFlush::NoFlush };
                let status = stream.compress(input, &mut out[len..], flush);
                let written = (stream.total_out() - before_out) as usize;
                out.truncate(len + written);
                let status = status.map_err(|e| RecipeError::Damaged(format!("zlib-rs: {}", e.as_str())))?;
                Ok(((stream.total_in() - before_in) as usize, status == zlib_rs::Status::StreamEnd))
            }
            Encoder::Miniz(stream) => {
                let len = out.len();
                out.resize(out.capacity(), 0);
                let flush = if finish { miniz_oxide::MZFlush::Finish } else { miniz_oxide::MZFlush::None };
                let result = miniz_oxide::deflate::stream::deflate(stream, input, &mut out[len..], flush);
                out.truncate(len + result.bytes_written);
                let status = result.status.map_err(|e| RecipeError::Damaged(format!("miniz_oxide: {e:?}")))?;
                Ok((result.bytes_consumed, status == miniz_oxide::MZStatus::StreamEnd))
            }
        }
    }
}

/// Deflates `plain` with an encoder; with `expected`, stops at the first byte that differs from
/// it and returns `None`.
fn encode(plain: &[u8], deflate: &Deflate, expected: Option<&[u8]>) -> Result<Option<Vec<u8>>, RecipeError> {
    let mut encoder = Encoder::new(deflate)?;
    let mut out = Vec::with_capacity(expected.map_or(plain.len() / 2, <[u8]>::len) + CHUNK);
    let mut consumed = 0;
    loop {
        let input = &plain[consumed..(consumed + CHUNK).min(plain.len())];
        let finish = consumed + input.len() == plain.len();
        let before = out.len();
        out.reserve(CHUNK);
        let (used, ended) = encoder.feed(input, &mut out, finish)?;
        consumed += used;
        if let Some(expected) = expected
            && expected.get(before..out.len()) != Some(&out[before..])
        {
            return Ok(None);
        }
        if ended {
            return Ok(Some(out));
        }
    }
}

/// Which encoder wrote `deflated` from `plain`: zlib, zlib-rs or miniz_oxide at some level, else preflate's
/// corrections. `name` says what the stream is, in errors.
pub(crate) fn model(plain: &[u8], deflated: &[u8], name: &str) -> Result<Deflate, RecipeError> {
    let candidates = ZLIB_LEVELS
        .map(|level| Deflate::Zlib { level })
        .into_iter()
        .chain(ZLIB_RS_LEVELS.map(|level| Deflate::ZlibRs { level }))
        .chain(MINIZ_LEVELS.map(|level| Deflate::Miniz { level }));
    for candidate in candidates {
        if encode(plain, &candidate, Some(deflated))?.is_some_and(|out| out == deflated) {
            return Ok(candidate);
        }
    }
    let preflate = match preflate_process::model(deflated) {
        Ok(model) if model.compressed_size == deflated.len() as u64 && model.text_is(plain) => Some(model.corrections),
        _ => None,
    };
    // preflate's corrections are tiny for the zlib family and grow with every choice it did not
    // predict; past a sixteenth of the stream, a record of the choices themselves may be smaller.
    if let Some(corrections) = &preflate
        && corrections.len() <= deflated.len() / 16
    {
        return Ok(Deflate::Preflate { corrections: preflate.expect("just matched") });
    }
    let recorded = deflate_tokens::record(plain, deflated)
        .map_err(|why| RecipeError::Unsupported(format!("the deflate stream of {name}: {why}")))?;
    // Like every candidate, the record is proven on the stream itself (a recipe's check rebuilds
    // only the uncompressed data).
    if deflate_tokens::rebuild(plain, &recorded)? != deflated {
        return Err(RecipeError::Unsupported(format!("the recorded deflate stream of {name} rebuilds otherwise")));
    }
    match preflate {
        Some(corrections) if corrections.len() <= compressed_len(&recorded) => Ok(Deflate::Preflate { corrections }),
        _ => Ok(Deflate::Recorded { record: recorded }),
    }
}

/// About what `bytes` take once the recipe is compressed (preflate's corrections are already
/// entropy-coded; a record is not).
fn compressed_len(bytes: &[u8]) -> usize {
    let mut encoder = liblzma::write::XzEncoder::new(Vec::new(), 6);
    std::io::Write::write_all(&mut encoder, bytes).expect("writing to memory");
    encoder.finish().expect("writing to memory").len()
}

/// The raw deflate stream `deflate` makes of `plain`.
pub(crate) fn recreate(plain: &[u8], deflate: &Deflate) -> Result<Vec<u8>, RecipeError> {
    match deflate {
        Deflate::Preflate { corrections } => preflate_process::recreate(plain, corrections)
            .map_err(|e| RecipeError::Damaged(format!("preflate cannot recreate a deflate stream: {e}"))),
        Deflate::Recorded { record } => deflate_tokens::rebuild(plain, record),
        encoder => Ok(encode(plain, encoder, None)?.expect("an unchecked encoding completes")),
    }
}

/// Why a deflate stream does not inflate.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InflateError {
    #[error("the deflate stream does not inflate: {0}")]
    Corrupt(flate2::DecompressError),
    #[error("it inflates to more than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the deflate stream is cut short")]
    CutShort,
}

/// A raw deflate stream's uncompressed bytes and its length: inflated by zlib, at most
/// `limit` bytes.
pub(crate) fn inflate(deflated: &[u8], limit: usize) -> Result<(Vec<u8>, usize), InflateError> {
    let mut inflater = flate2::Decompress::new(false);
    let mut out = Vec::with_capacity(deflated.len().saturating_mul(3).min(limit).min(1 << 26));
    loop {
        out.reserve(CHUNK * 4);
        let consumed = inflater.total_in() as usize;
        let status = inflater
            .decompress_vec(&deflated[consumed..], &mut out, flate2::FlushDecompress::None)
            .map_err(InflateError::Corrupt)?;
        if status == flate2::Status::StreamEnd {
            return Ok((out, inflater.total_in() as usize));
        }
        if out.len() > limit {
            return Err(InflateError::TooLarge { limit });
        }
        if inflater.total_in() as usize == consumed && out.len() < out.capacity() {
            return Err(InflateError::CutShort);
        }
    }
}
