//! Deflate streams kept as their own decisions: the fallback for streams no pinned encoder
//! reproduces and preflate cannot model (zopfli, 7-Zip, `pigz -11`, zlib-ng, Windows tools).
//!
//! A deflate stream is its uncompressed bytes plus the encoder's choices: where blocks end and
//! how each is coded (stored, fixed or its own Huffman tables), and the LZ77 parse (which bytes
//! are literals, and each match's distance and length). Given the uncompressed bytes (from the
//! tree), those choices rebuild the stream exactly: Huffman codes are canonical, so the code
//! lengths in a block's header fix every code, and every length and distance has a single
//! code and extra bits, except length 258, which code 284 with all extra bits set also names.
//!
//! The record keeps: each block's type and final flag; a dynamic block's header bits verbatim
//! (its tables exactly as coded, run-length quirks included); a stored block's length and the
//! bits that pad it to a byte; the parse as literal runs, match distances and lengths, where a
//! length is left out when it is the longest match at its distance (what most encoders take);
//! and the bits after the last block. Each kind of value is a section of its own, so that the
//! recipe's xz compresses like with like.
//!
//! Bound: at most 6 bytes per match, 1 per literal run, 4 plus the header per block, before
//! the recipe's xz. Rebuilding reads each uncompressed byte once and compares at most 258
//! bytes per match, so a hostile record costs time in proportion to the file it claims to
//! rebuild.

use super::RecipeError;
use super::bit_writer::BitWriter;
use super::huffman::CanonicalCode;

/// The longest match deflate can code.
const MAX_MATCH: usize = 258;
/// Base lengths and extra bits of length codes 257…285.
const LENGTH_BASE: [u16; 29] =
    [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LENGTH_EXTRA: [u8; 29] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
/// Base distances and extra bits of distance codes 0…29.
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
    8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] =
    [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
/// The order in which a dynamic header lists the code length code's lengths.
const CODE_LENGTH_ORDER: [usize; 19] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/// What a parse step was, as the `ops` section records it.
const OP_END_OF_BLOCK: u8 = 0;
/// A match as long as the data allows at its distance (up to 258).
const OP_LONGEST_MATCH: u8 = 1;
/// A match of a length given in the `lengths` section.
const OP_MATCH: u8 = 2;
/// A match of 258 coded as length code 284 with extra bits 31.
const OP_LONG_284: u8 = 3;

const STORED: u8 = 0;
const FIXED: u8 = 1;
const DYNAMIC: u8 = 2;
const FINAL: u8 = 4;

/// Why a deflate stream could not be recorded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unreadable {
    #[error("the deflate stream is invalid: {0}")]
    Invalid(&'static str),
    #[error("the deflate stream does not inflate to the data it is kept against")]
    OtherData,
}

/// Reads bits least significant first, as deflate packs them.
struct BitReader<'a> {
    bytes: &'a [u8],
    bit: usize,
}

impl BitReader<'_> {
    fn bits(&mut self, count: u8) -> Result<u32, Unreadable> {
        if count == 0 {
            return Ok(0);
        }
        let end = self.bit + usize::from(count);
        let bytes = self.bytes.get(self.bit / 8..end.div_ceil(8)).ok_or(Unreadable::Invalid("it ends early"))?;
        let word = bytes.iter().rev().fold(0u64, |word, &byte| word << 8 | u64::from(byte));
        let value = (word >> (self.bit % 8)) as u32 & ((1u64 << count) - 1) as u32;
        self.bit = end;
        Ok(value)
    }
}

/// The table with these code lengths.
fn table(lengths: &[u8]) -> Result<CanonicalCode, Unreadable> {
    CanonicalCode::new(lengths).map_err(|_| Unreadable::Invalid("a Huffman table is over-subscribed"))
}

fn decode(table: &CanonicalCode, input: &mut BitReader) -> Result<u16, Unreadable> {
    table.decode(|| input.bits(1))?.ok_or(Unreadable::Invalid("a code is not in its Huffman table"))
}

fn code_of(table: &CanonicalCode, symbol: usize) -> Result<(u32, u8), RecipeError> {
    table
        .code(symbol)
        .ok_or_else(|| RecipeError::Damaged(format!("deflate symbol {symbol} has no code in its block's table")))
}

/// Copies `count` bits.
fn copy_bits(from: &mut BitReader, to: &mut BitWriter, mut count: usize) -> Result<(), Unreadable> {
    while count > 0 {
        let step = count.min(16) as u8;
        to.bits(from.bits(step)?, step);
        count -= usize::from(step);
    }
    Ok(())
}

/// The fixed block's literal/length and distance codes.
fn fixed_tables() -> (CanonicalCode, CanonicalCode) {
    let mut lengths = [8u8; 288];
    lengths[144..256].fill(9);
    lengths[256..280].fill(7);
    (table(&lengths).expect("valid"), table(&[5; 30]).expect("valid"))
}

/// Reads a dynamic block's header (after its type bits) and returns its two codes.
fn dynamic_tables(input: &mut BitReader) -> Result<(CanonicalCode, CanonicalCode), Unreadable> {
    let literals = input.bits(5)? as usize + 257;
    let distances = input.bits(5)? as usize + 1;
    let code_lengths = input.bits(4)? as usize + 4;
    if literals > 286 || distances > 30 {
        return Err(Unreadable::Invalid("a dynamic header counts too many codes"));
    }
    let mut lengths = [0u8; 19];
    for &at in &CODE_LENGTH_ORDER[..code_lengths] {
        lengths[at] = input.bits(3)? as u8;
    }
    let lencode = table(&lengths)?;
    let mut lengths = vec![0u8; literals + distances];
    let mut at = 0;
    while at < lengths.len() {
        let symbol = decode(&lencode, input)?;
        let (value, repeat) = match symbol {
            0..=15 => (symbol as u8, 1),
            16 => {
                let previous = *lengths[..at].last().ok_or(Unreadable::Invalid("a length repeats nothing"))?;
                (previous, 3 + input.bits(2)? as usize)
            }
            17 => (0, 3 + input.bits(3)? as usize),
            _ => (0, 11 + input.bits(7)? as usize),
        };
        let run = lengths.get_mut(at..at + repeat).ok_or(Unreadable::Invalid("code lengths overrun"))?;
        run.fill(value);
        at += repeat;
    }
    if lengths[256] == 0 {
        return Err(Unreadable::Invalid("a block has no end-of-block code"));
    }
    Ok((table(&lengths[..literals])?, table(&lengths[literals..])?))
}

/// How far back deflate reaches.
const WINDOW: usize = 32768;
/// How many earlier places with the same first three bytes a match's distance is looked for
/// among (zlib -9 looks at as many), which bounds the work per match.
const MAX_CHAIN: usize = 4096;
const NO_PLACE: u32 = u32::MAX;

/// The earlier places of each three-byte prefix within the window, most recent first, as
/// zlib keeps them (a hash of the prefix, a chain through a window-sized ring).
struct Chains {
    head: Vec<u32>,
    previous: Vec<u32>,
    inserted: usize,
}

impl Chains {
    fn new() -> Chains {
        Chains { head: vec![NO_PLACE; 1 << 16], previous: vec![NO_PLACE; WINDOW], inserted: 0 }
    }

    fn hash(prefix: &[u8]) -> usize {
        let value = u32::from(prefix[0]) << 16 | u32::from(prefix[1]) << 8 | u32::from(prefix[2]);
        (value.wrapping_mul(0x9E37_79B1) >> 16) as usize
    }

    /// Adds every place before `at`.
    fn insert_up_to(&mut self, plain: &[u8], at: usize) {
        while self.inserted < at {
            let place = self.inserted;
            if let Some(prefix) = plain.get(place..place + 3) {
                let hash = Chains::hash(prefix);
                self.previous[place % WINDOW] = self.head[hash];
                self.head[hash] = place as u32;
            }
            self.inserted += 1;
        }
    }

    /// The distances whose match at `at` is longer than that of every more recent place: the
    /// choices an encoder searching the chain would improve on in turn. `visit` gets each
    /// one's distance and 1-based rank and says whether to go on.
    fn improving(&self, plain: &[u8], at: usize, mut visit: impl FnMut(usize, usize) -> bool) {
        let Some(prefix) = plain.get(at..at + 3) else { return };
        let limit = MAX_MATCH.min(plain.len() - at);
        let (mut place, mut best, mut rank) = (self.head[Chains::hash(prefix)], 0, 0);
        for _ in 0..MAX_CHAIN {
            if place == NO_PLACE || at - place as usize > WINDOW {
                return;
            }
            let distance = at - place as usize;
            let len = longest_match(plain, at, distance);
            if len > best && len >= 3 {
                (best, rank) = (len, rank + 1);
                if !visit(distance, rank) || best == limit {
                    return;
                }
            }
            let next = self.previous[place as usize % WINDOW];
            if next == NO_PLACE || next >= place {
                return;
            }
            place = next;
        }
    }
}

/// The record's sections, in the order they are written.
#[derive(Default)]
struct Sections {
    blocks: Vec<u8>,
    ops: Vec<u8>,
    runs: Vec<u8>,
    lengths: Vec<u8>,
    ranks: Vec<u8>,
    distances: Vec<u8>,
}

impl Sections {
    fn all(&self) -> [&Vec<u8>; 6] {
        [&self.blocks, &self.ops, &self.runs, &self.lengths, &self.ranks, &self.distances]
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: usize) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The longest match at `distance` before `at` in `plain`, at most 258 bytes.
fn longest_match(plain: &[u8], at: usize, distance: usize) -> usize {
    let limit = MAX_MATCH.min(plain.len() - at);
    (0..limit).find(|&i| plain[at + i] != plain[at + i - distance]).unwrap_or(limit)
}

/// Records `deflated`, a whole raw deflate stream that inflates to `plain`.
pub(crate) fn record(plain: &[u8], deflated: &[u8]) -> Result<Vec<u8>, Unreadable> {
    let mut input = BitReader { bytes: deflated, bit: 0 };
    let mut sections = Sections::default();
    let mut at = 0;
    let mut chains = Chains::new();
    let (fixed_literals, fixed_distances) = fixed_tables();
    loop {
        let last = input.bits(1)? as u8;
        let kind = input.bits(2)? as u8;
        sections.blocks.push(kind | (last * FINAL));
        match kind {
            STORED => {
                let pad_len = (8 - input.bit % 8) % 8;
                sections.blocks.push(input.bits(pad_len as u8)? as u8);
                let len = input.bits(16)?;
                if input.bits(16)? != !len & 0xffff {
                    return Err(Unreadable::Invalid("a stored block's length check fails"));
                }
                let len = len as usize;
                let start = input.bit / 8;
                let stored = deflated.get(start..start + len).ok_or(Unreadable::Invalid("it ends early"))?;
                if plain.get(at..at + len) != Some(stored) {
                    return Err(Unreadable::OtherData);
                }
                sections.blocks.extend_from_slice(&(len as u16).to_le_bytes());
                input.bit += len * 8;
                at += len;
            }
            FIXED | DYNAMIC => {
                let tables;
                let (literals, distances) = if kind == FIXED {
                    (&fixed_literals, &fixed_distances)
                } else {
                    let start = input.bit;
                    tables = dynamic_tables(&mut input)?;
                    let header_bits = input.bit - start;
                    put_varint(&mut sections.blocks, header_bits);
                    let mut copy = BitReader { bytes: deflated, bit: start };
                    let mut header = BitWriter::default();
                    copy_bits(&mut copy, &mut header, header_bits)?;
                    sections.blocks.extend_from_slice(&header.finish());
                    (&tables.0, &tables.1)
                };
                let tables = Tables { literals, distances };
                record_tokens(plain, &mut at, &mut input, &tables, &mut chains, &mut sections)?;
            }
            _ => return Err(Unreadable::Invalid("a block has the reserved type 3")),
        }
        if last == 1 {
            break;
        }
    }
    let pad_len = (8 - input.bit % 8) % 8;
    let pad = input.bits(pad_len as u8)? as u8;
    if at != plain.len() {
        return Err(Unreadable::OtherData);
    }
    if input.bit / 8 != deflated.len() {
        return Err(Unreadable::Invalid("bytes follow its last block"));
    }
    let mut out = vec![pad];
    for section in sections.all() {
        put_varint(&mut out, section.len());
        out.extend_from_slice(section);
    }
    Ok(out)
}

/// A Huffman-coded block's two codes.
struct Tables<'a> {
    literals: &'a CanonicalCode,
    distances: &'a CanonicalCode,
}

/// Records one Huffman-coded block's parse, checking it against `plain` from `at`.
fn record_tokens(
    plain: &[u8],
    at: &mut usize,
    input: &mut BitReader,
    tables: &Tables,
    chains: &mut Chains,
    sections: &mut Sections,
) -> Result<(), Unreadable> {
    let mut run = 0;
    loop {
        let symbol = usize::from(decode(tables.literals, input)?);
        if symbol < 256 {
            if plain.get(*at) != Some(&(symbol as u8)) {
                return Err(Unreadable::OtherData);
            }
            *at += 1;
            run += 1;
            continue;
        }
        put_varint(&mut sections.runs, run);
        run = 0;
        if symbol == 256 {
            sections.ops.push(OP_END_OF_BLOCK);
            return Ok(());
        }
        let code = symbol - 257;
        if code >= 29 {
            return Err(Unreadable::Invalid("a length code is out of range"));
        }
        let len = usize::from(LENGTH_BASE[code]) + input.bits(LENGTH_EXTRA[code])? as usize;
        let dist_code = usize::from(decode(tables.distances, input)?);
        if dist_code >= 30 {
            return Err(Unreadable::Invalid("a distance code is out of range"));
        }
        let distance = usize::from(DIST_BASE[dist_code]) + input.bits(DIST_EXTRA[dist_code])? as usize;
        if distance > *at {
            return Err(Unreadable::Invalid("a match reaches before the start"));
        }
        if len > MAX_MATCH {
            return Err(Unreadable::Invalid("a match is longer than 258"));
        }
        if *at + len > plain.len() {
            return Err(Unreadable::OtherData);
        }
        let longest = longest_match(plain, *at, distance);
        if longest < len {
            return Err(Unreadable::OtherData);
        }
        if code == 27 && len == MAX_MATCH {
            sections.ops.push(OP_LONG_284);
        } else if len == longest {
            sections.ops.push(OP_LONGEST_MATCH);
        } else {
            sections.ops.push(OP_MATCH);
            sections.lengths.push((len - 3) as u8);
        }
        // The distance as its rank among the improving ones, or 0 and the distance itself.
        chains.insert_up_to(plain, *at);
        let mut found = 0;
        chains.improving(plain, *at, |candidate, rank| {
            if candidate == distance {
                found = rank;
            }
            candidate < distance
        });
        put_varint(&mut sections.ranks, found);
        if found == 0 {
            sections.distances.extend_from_slice(&((distance - 1) as u16).to_le_bytes());
        }
        *at += len;
    }
}

/// Reads a record's sections in turn.
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], RecipeError> {
        if len > self.bytes.len() {
            return Err(damaged("it ends early"));
        }
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, RecipeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<usize, RecipeError> {
        let bytes = self.take(2)?;
        Ok(usize::from(u16::from_le_bytes([bytes[0], bytes[1]])))
    }

    fn varint(&mut self) -> Result<usize, RecipeError> {
        // Nothing in a record counts past 2^32 (at most 258 bytes per parse step of a file).
        let mut value = 0u64;
        for shift in (0..35).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return usize::try_from(value).map_err(|_| damaged("a number overflows"));
            }
        }
        Err(damaged("a number overflows"))
    }

    fn section(&mut self) -> Result<Cursor<'a>, RecipeError> {
        let len = self.varint()?;
        Ok(Cursor { bytes: self.take(len)? })
    }
}

fn damaged(why: &str) -> RecipeError {
    RecipeError::Damaged(format!("a recorded deflate stream: {why}"))
}

/// Rebuilds the raw deflate stream that `record` describes, from its uncompressed bytes.
pub(crate) fn rebuild(plain: &[u8], record: &[u8]) -> Result<Vec<u8>, RecipeError> {
    let mut cursor = Cursor { bytes: record };
    let pad = cursor.byte()?;
    let mut blocks = cursor.section()?;
    let mut ops = cursor.section()?;
    let mut runs = cursor.section()?;
    let mut lengths = cursor.section()?;
    let mut ranks = cursor.section()?;
    let mut distances = cursor.section()?;
    let mut out = BitWriter::after(Vec::with_capacity(plain.len() / 2));
    let mut at = 0;
    let mut chains = Chains::new();
    let (fixed_literals, fixed_distances) = fixed_tables();
    loop {
        let flags = blocks.byte()?;
        let (kind, last) = (flags & 3, flags & FINAL != 0);
        if flags & !(3 | FINAL) != 0 || kind == 3 {
            return Err(damaged("a block type is out of range"));
        }
        out.bits(u32::from(last), 1);
        out.bits(u32::from(kind), 2);
        if kind == STORED {
            out.bits(u32::from(blocks.byte()?), out.to_byte());
            let len = blocks.u16()?;
            out.bits(len as u32, 16);
            out.bits(!len as u32 & 0xffff, 16);
            let stored = plain.get(at..at + len).ok_or_else(|| damaged("a stored block runs past the data"))?;
            out.aligned_bytes(stored);
            at += len;
        } else {
            let tables;
            let (literals, distances_code) = if kind == FIXED {
                (&fixed_literals, &fixed_distances)
            } else {
                let header_bits = blocks.varint()?;
                let header = blocks.take(header_bits.div_ceil(8))?;
                let mut reader = BitReader { bytes: header, bit: 0 };
                tables = dynamic_tables(&mut reader).map_err(|e| damaged(&e.to_string()))?;
                if reader.bit != header_bits {
                    return Err(damaged("a block header's length is wrong"));
                }
                copy_bits(&mut BitReader { bytes: header, bit: 0 }, &mut out, header_bits).expect("read once already");
                (&tables.0, &tables.1)
            };
            loop {
                let run = runs.varint()?;
                let literal_run =
                    plain.get(at..at.saturating_add(run)).ok_or_else(|| damaged("literals run past the data"))?;
                for &byte in literal_run {
                    out.code(code_of(literals, usize::from(byte))?);
                }
                at += run;
                let op = ops.byte()?;
                if op == OP_END_OF_BLOCK {
                    out.code(code_of(literals, 256)?);
                    break;
                }
                let distance = match ranks.varint()? {
                    0 => distances.u16()? + 1,
                    rank => {
                        chains.insert_up_to(plain, at);
                        let mut found = None;
                        chains.improving(plain, at, |candidate, candidate_rank| {
                            if candidate_rank == rank {
                                found = Some(candidate);
                            }
                            candidate_rank < rank
                        });
                        found.ok_or_else(|| damaged("a match's rank is past its chain"))?
                    }
                };
                if distance > at {
                    return Err(damaged("a match reaches before the start"));
                }
                let longest = longest_match(plain, at, distance);
                let (len, code) = match op {
                    OP_LONGEST_MATCH => (longest, None),
                    OP_MATCH => (usize::from(lengths.byte()?) + 3, None),
                    OP_LONG_284 => (MAX_MATCH, Some(27)),
                    _ => return Err(damaged("a parse step is out of range")),
                };
                if len < 3 || len > longest {
                    return Err(damaged("a match does not match the data"));
                }
                let code = code.unwrap_or_else(|| {
                    LENGTH_BASE.iter().rposition(|&base| usize::from(base) <= len).expect("len >= 3")
                });
                out.code(code_of(literals, 257 + code)?);
                out.bits((len - usize::from(LENGTH_BASE[code])) as u32, LENGTH_EXTRA[code]);
                let dist_code =
                    DIST_BASE.iter().rposition(|&base| usize::from(base) <= distance).expect("distance >= 1");
                out.code(code_of(distances_code, dist_code)?);
                out.bits((distance - usize::from(DIST_BASE[dist_code])) as u32, DIST_EXTRA[dist_code]);
                at += len;
            }
        }
        if last {
            break;
        }
    }
    out.bits(u32::from(pad), out.to_byte());
    if at != plain.len() {
        return Err(damaged("it ends before the data does"));
    }
    Ok(out.finish())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use proptest::prelude::*;

    use super::*;

    fn zlib(plain: &[u8], level: u32) -> Vec<u8> {
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(level));
        encoder.write_all(plain).unwrap();
        encoder.finish().unwrap()
    }

    fn inflated(deflated: &[u8]) -> Vec<u8> {
        let mut plain = Vec::new();
        flate2::read::DeflateDecoder::new(deflated).read_to_end(&mut plain).unwrap();
        plain
    }

    fn round_trips(plain: &[u8], deflated: &[u8]) -> Vec<u8> {
        let record = record(plain, deflated).unwrap();
        assert!(rebuild(plain, &record).unwrap() == deflated, "the rebuilt stream differs");
        record
    }

    /// Text with repeats near and far (beyond the window too), runs of zeros and noise.
    fn mixed_data() -> Vec<u8> {
        let mut data = Vec::new();
        let mut seed = 7u32;
        for i in 0..4000u32 {
            data.extend_from_slice(format!("line {} of {}\n", i % 97, i % 13).as_bytes());
            if i % 500 == 0 {
                data.extend(std::iter::repeat_n(0, 2000));
                for _ in 0..3000 {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    data.push((seed >> 16) as u8);
                }
            }
        }
        data
    }

    #[test]
    fn zlib_streams_at_every_level_round_trip() {
        let plain = mixed_data();
        // Level 0 writes stored blocks, level 1 and small inputs fixed ones.
        for level in 0..=9 {
            round_trips(&plain, &zlib(&plain, level));
        }
        for small in [&b""[..], b"a", b"abcabcabcabcabc"] {
            round_trips(small, &zlib(small, 6));
        }
    }

    #[test]
    fn a_match_of_258_coded_as_length_284_round_trips() {
        // A fixed block: 'a' as a literal, then 258 more at distance 1 as code 284 with extra
        // bits 31, then the end; zlib's inflate reads it.
        let (literals, distances) = fixed_tables();
        let mut out = BitWriter::default();
        out.bits(1, 1);
        out.bits(u32::from(FIXED), 2);
        out.code(literals.codes[usize::from(b'a')]);
        out.code(literals.codes[257 + 27]);
        out.bits(31, 5);
        out.code(distances.codes[0]);
        out.code(literals.codes[256]);
        let deflated = out.finish();
        let plain = inflated(&deflated);
        assert_eq!(plain, vec![b'a'; 259]);
        let record = round_trips(&plain, &deflated);
        // The canonical code for 258 rebuilds other bytes: the quirk is kept.
        assert!(rebuild(&plain, &record).unwrap() != zlib(&plain, 6));
    }

    #[test]
    fn streams_of_other_data_or_with_bytes_after_them_are_refused() {
        let plain = mixed_data();
        let deflated = zlib(&plain, 6);
        let mut other = plain.clone();
        other[1000] ^= 1;
        assert!(matches!(record(&other, &deflated), Err(Unreadable::OtherData)));
        assert!(matches!(record(&plain[..plain.len() - 1], &deflated), Err(Unreadable::OtherData)));
        let mut longer = deflated.clone();
        longer.push(0);
        assert!(matches!(record(&plain, &longer), Err(Unreadable::Invalid(_))));
        assert!(matches!(record(&plain, &deflated[..deflated.len() / 2]), Err(Unreadable::Invalid(_))));
    }

    #[test]
    fn damaged_records_are_refused_or_rebuild_other_bytes_never_a_panic() {
        let plain = mixed_data();
        let deflated = zlib(&plain[..20_000], 9);
        let record = record(&plain[..20_000], &deflated).unwrap();
        for at in 0..record.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut damaged = record.clone();
                damaged[at] ^= flip;
                let _ = rebuild(&plain[..20_000], &damaged);
            }
        }
        for len in 0..record.len() {
            assert!(rebuild(&plain[..20_000], &record[..len]).is_err(), "cut to {len} bytes");
        }
    }

    proptest! {
        #[test]
        fn any_zlib_stream_round_trips(
            pieces in proptest::collection::vec((any::<u8>(), 1usize..300, 0usize..40), 0..60),
            level in 0u32..=9,
        ) {
            // Runs of one byte and copies of earlier bytes, so there is something to match.
            let mut plain: Vec<u8> = Vec::new();
            for (byte, len, back) in pieces {
                if back > 0 && back <= plain.len() {
                    let start = plain.len() - back;
                    for i in 0..len {
                        plain.push(plain[start + i % back]);
                    }
                } else {
                    plain.extend(std::iter::repeat_n(byte, len % 7 + 1));
                }
            }
            let deflated = zlib(&plain, level);
            let record = record(&plain, &deflated).unwrap();
            prop_assert!(rebuild(&plain, &record).unwrap() == deflated);
        }
    }
}
