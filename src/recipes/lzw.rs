//! The compress layer of a recipe (`.tar.Z`): LZW as ncompress 4.2.4.6 writes it.
//!
//! A `.Z` file is `1f 9d`, a byte holding the largest code width (9 to 16) and the block-mode
//! flag, then LZW codes packed least significant bit first, starting 9 bits wide. The dictionary
//! is plain LZW; what the file does not say is where the encoder chose to act:
//! - the width grows when the next free code needs it, but only between strings, and the code
//!   stream is then padded with zero bits to a multiple of the old width in bytes, counted from
//!   where that width began (the decoder reads whole groups of codes);
//! - once the table is full, every 10,000 input bytes (a checkpoint) the encoder compares the
//!   ratio of input to output so far with the last one and, when it fell, emits CLEAR, pads the
//!   same way and starts over at 9 bits;
//! - both checks run only at the top of its input loop, whose steps are cut by `read()` sizes
//!   (8,192 bytes from a regular file), by the room left in its 8 KiB output buffer, by the next
//!   width change and the next checkpoint; a string in progress may run past a step.
//!
//! So the encoder here replays ncompress's loop step for step (its buffer sizes and checkpoint
//! gap included), given the read size; a `.Z` written from a pipe, where reads come short at
//! the writer's pace, may not be reproducible, and is then refused. Only block mode (the
//! default since compress 3.0) is modelled.

use serde::{Deserialize, Serialize};

use super::bit_writer::BitWriter;
use super::{OutOfBounds, RecipeError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LzwLayer {
    /// The largest code width, 9 to 16 (`-b`).
    pub max_bits: u8,
    /// How many bytes each `read()` of the encoder's input returned (the last one fewer).
    pub read_size: u32,
}

const MAGIC: [u8; 2] = [0x1f, 0x9d];
const BLOCK_MODE: u8 = 0x80;
const INIT_BITS: u32 = 9;
const CLEAR: u32 = 256;
const FIRST: u32 = 257;
const CHECK_GAP: i64 = 10_000;
/// ncompress's output buffer: it flushes OBUFSIZ bytes at a time from a buffer 2,048 larger.
const OBUFSIZ: i64 = 8192;
const OUTBUF_LEN: i64 = OBUFSIZ + 2048;
/// What ncompress reads at a time from a regular file (IBUFSIZ).
const READ_SIZE: u32 = 8192;

/// ncompress's `compress()`, replayed: `plain` read `read_size` bytes at a time.
fn compress(plain: &[u8], max_bits: u8, read_size: usize) -> Vec<u8> {
    let max_bits = u32::from(max_bits);
    let mut table: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
    let (mut ratio, mut checkpoint) = (0i64, CHECK_GAP);
    let mut n_bits = INIT_BITS;
    let mut extcode = (1i64 << n_bits) + 1;
    let (mut stcode, mut free_ent) = (true, FIRST);
    let (mut bytes_out, mut bytes_in) = (0i64, 0i64);
    let (mut outbits, mut boff) = (24i64, 24i64);
    // Codes go out in order; padding is the gap a width change or CLEAR leaves.
    let mut out = BitWriter::after(vec![MAGIC[0], MAGIC[1], max_bits as u8 | BLOCK_MODE]);
    let mut ent = 0u32;
    // Pads the code stream to a whole number of `n_bits`-byte groups since the width began.
    let pad = |out: &mut BitWriter, outbits: i64, boff: i64, n_bits: u32| {
        let group = i64::from(n_bits) << 3;
        let padded = (outbits - 1) + (group - (outbits - boff - 1 + group) % group);
        out.zeros((padded - outbits) as usize);
        padded
    };
    for chunk in plain.chunks(read_size) {
        let rsize = chunk.len() as i64;
        let mut rpos = 0i64;
        if bytes_in == 0 {
            ent = u32::from(chunk[0]);
            rpos = 1;
        }
        let mut rlop = 0i64;
        loop {
            if i64::from(free_ent) >= extcode && ent < FIRST {
                if n_bits < max_bits {
                    outbits = pad(&mut out, outbits, boff, n_bits);
                    boff = outbits;
                    n_bits += 1;
                    extcode = if n_bits < max_bits { (1 << n_bits) + 1 } else { 1 << n_bits };
                } else {
                    extcode = (1 << 16) + OBUFSIZ;
                    stcode = false;
                }
            }
            if !stcode && bytes_in >= checkpoint && ent < FIRST {
                checkpoint = bytes_in + CHECK_GAP;
                let written = bytes_out + (outbits >> 3);
                let rat = if bytes_in > 0x007f_ffff {
                    match written >> 8 {
                        0 => 0x7fff_ffff,
                        scaled => bytes_in / scaled,
                    }
                } else {
                    (bytes_in << 8) / written
                };
                if rat >= ratio {
                    ratio = rat;
                } else {
                    ratio = 0;
                    table.clear();
                    out.bits(CLEAR, n_bits as u8);
                    outbits += i64::from(n_bits);
                    outbits = pad(&mut out, outbits, boff, n_bits);
                    boff = outbits;
                    n_bits = INIT_BITS;
                    extcode = (1 << n_bits) + 1;
                    free_ent = FIRST;
                    stcode = true;
                }
            }
            if outbits >= OBUFSIZ << 3 {
                outbits -= OBUFSIZ << 3;
                boff = -(((OBUFSIZ << 3) - boff) % (i64::from(n_bits) << 3));
                bytes_out += OBUFSIZ;
            }
            let mut step = rsize - rlop;
            step = step.min(extcode - i64::from(free_ent));
            step = step.min(((OUTBUF_LEN - 32) * 8 - outbits) / i64::from(n_bits));
            if !stcode {
                step = step.min(checkpoint - bytes_in);
            }
            rlop += step;
            bytes_in += step;
            // Strings up to the step's end, and past it while one is in progress.
            while rpos < rlop || (ent >= FIRST && rpos < rsize) {
                let c = u32::from(chunk[rpos as usize]);
                rpos += 1;
                let key = ent << 8 | c;
                if let Some(&code) = table.get(&key) {
                    ent = code;
                    continue;
                }
                out.bits(ent, n_bits as u8);
                outbits += i64::from(n_bits);
                if stcode {
                    table.insert(key, free_ent);
                    free_ent += 1;
                }
                ent = c;
            }
            if rpos > rlop {
                bytes_in += rpos - rlop;
                rlop = rpos;
            }
            if rlop >= rsize {
                break;
            }
        }
    }
    if bytes_in > 0 {
        out.bits(ent, n_bits as u8);
    }
    out.finish()
}

/// ncompress's `decompress()`, at most `limit` bytes out.
fn decompress(file: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let mut plain = Vec::new();
    decode(file, limit, &mut plain)?;
    Ok(plain)
}

/// How many bytes the `.Z` file `file` decompresses to, counted without keeping them; an error
/// ends the count (making the recipe reports it).
pub(super) fn plain_len(file: &[u8], limit: usize) -> usize {
    if file.len() < 3 {
        return 0;
    }
    struct Count(usize);
    impl Extend<u8> for Count {
        fn extend<I: IntoIterator<Item = u8>>(&mut self, bytes: I) {
            self.0 += bytes.into_iter().count();
        }
    }
    let mut count = Count(0);
    let _ = decode(file, limit, &mut count);
    count.0
}

/// Decodes `file` into `out`, at most `limit` bytes; returns how many it wrote.
fn decode(file: &[u8], limit: usize, out: &mut impl Extend<u8>) -> Result<usize, String> {
    let max_bits = u32::from(file[2] & 0x1f);
    let max_code = 1u32 << max_bits;
    let total_bits = file.len() as u64 * 8;
    let (mut pos, mut segment) = (24u64, 24u64);
    let mut n_bits = INIT_BITS;
    let mut top = (1u32 << n_bits) - 1;
    let mut free_ent = FIRST;
    let mut prefix = vec![0u16; 1 << 16];
    let mut suffix: Vec<u8> = (0..=255).chain(std::iter::repeat_n(0, (1 << 16) - 256)).collect();
    let (mut old, mut finchar) = (None::<u32>, 0u8);
    let mut produced = 0;
    let mut stack = Vec::new();
    let pad = |pos: u64, segment: u64, n_bits: u32| {
        let group = u64::from(n_bits) * 8;
        segment + (pos - segment).div_ceil(group) * group
    };
    while pos + u64::from(n_bits) <= total_bits {
        if free_ent > top {
            pos = pad(pos, segment, n_bits);
            segment = pos;
            n_bits += 1;
            top = if n_bits == max_bits { max_code } else { (1 << n_bits) - 1 };
            continue;
        }
        let byte = (pos / 8) as usize;
        let word = file[byte..(byte + 3).min(file.len())].iter().rev().fold(0u32, |w, &b| w << 8 | u32::from(b));
        let code = (word >> (pos % 8)) & ((1 << n_bits) - 1);
        pos += u64::from(n_bits);
        let Some(previous) = old else {
            if code >= 256 {
                return Err("the first code is not a byte".into());
            }
            finchar = code as u8;
            produced += 1;
            out.extend([finchar]);
            old = Some(code);
            continue;
        };
        if code == CLEAR {
            free_ent = FIRST - 1;
            pos = pad(pos, segment, n_bits);
            segment = pos;
            n_bits = INIT_BITS;
            top = (1 << n_bits) - 1;
            continue;
        }
        let mut walk = code;
        if code >= free_ent {
            if code > free_ent {
                return Err("a code is not in the table yet".into());
            }
            stack.push(finchar);
            walk = previous;
        }
        while walk >= 256 {
            stack.push(suffix[walk as usize]);
            walk = u32::from(prefix[walk as usize]);
        }
        finchar = suffix[walk as usize];
        stack.push(finchar);
        // Past the limit by at most one string (64 KiB), so that a count shows the excess.
        produced += stack.len();
        out.extend(stack.drain(..).rev());
        if produced > limit {
            return Err(format!("it decompresses to more than {limit} bytes"));
        }
        if free_ent < max_code {
            prefix[free_ent as usize] = previous as u16;
            suffix[free_ent as usize] = finchar;
            free_ent += 1;
        }
        old = Some(code);
    }
    Ok(produced)
}

impl LzwLayer {
    /// Models the `.Z` file `bytes`; returns the layer and the uncompressed bytes.
    pub(crate) fn create(bytes: &[u8], limit: usize) -> Result<(LzwLayer, Vec<u8>), RecipeError> {
        let unsupported = |why: String| RecipeError::Unsupported(format!("compress (.Z): {why}"));
        let flags = *bytes.get(2).ok_or_else(|| unsupported("the header is cut short".into()))?;
        let max_bits = flags & 0x1f;
        if flags & BLOCK_MODE == 0 || flags & 0x60 != 0 || !(9..=16).contains(&max_bits) {
            return Err(unsupported(format!("header flags {flags:#04x} (only block mode, 9 to 16 bits)")));
        }
        let plain = decompress(bytes, limit).map_err(|why| unsupported(format!("it does not decompress: {why}")))?;
        let layer = LzwLayer { max_bits, read_size: READ_SIZE };
        if compress(&plain, max_bits, READ_SIZE as usize) != bytes {
            return Err(unsupported(
                "ncompress's encoder, reading 8,192 bytes at a time, writes otherwise (written from a pipe?)".into(),
            ));
        }
        Ok((layer, plain))
    }

    pub(super) fn check_shape(&self) -> Result<(), OutOfBounds> {
        if !(9..=16).contains(&self.max_bits) || self.read_size == 0 {
            return Err(OutOfBounds(format!("compress: {} bits, reads of {}", self.max_bits, self.read_size)));
        }
        Ok(())
    }

    /// Recompresses `plain` exactly as the original file was.
    pub(crate) fn apply(&self, plain: &[u8], out: &mut Vec<u8>) {
        out.extend(compress(plain, self.max_bits, self.read_size as usize));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_compress_writes_decompresses_and_recompresses() {
        // `printf 'TOBEORNOTTOBEORTOBEORNOT' | compress -c`, ncompress 4.2.4.6.
        let z = [
            0x1f, 0x9d, 0x90, 0x54, 0x9e, 0x08, 0x29, 0xf2, 0x44, 0x8a, 0x93, 0x27, 0x54, 0x02, 0x0e, 0x2c, 0xa8, 0x90,
            0xa0, 0x41, 0x84,
        ];
        let plain = decompress(&z, 1000).unwrap();
        assert_eq!(plain, b"TOBEORNOTTOBEORTOBEORNOT");
        assert_eq!(compress(&plain, 16, 8192), z);
    }
}
