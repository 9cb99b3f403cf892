//! bzip2 streams kept as their blocks' own decisions: the fallback for streams libbzip2 does not
//! reproduce (`lbzip2`, and any other encoder that writes its own blocks and tables).
//!
//! The format, all bits most significant first, blocks not aligned to bytes: `BZh` and a block
//! size digit; blocks, each a 48-bit magic, the CRC of the block's bytes, a "randomised" flag,
//! `origPtr` (24 bits), a bitmap of the byte values used, the number of Huffman tables (2 to 6),
//! the selectors (which table codes each group of 50 symbols; move-to-front coded, in unary),
//! each table's code lengths (delta coded), then the symbols and an end-of-block symbol; then a
//! 48-bit end marker, the combined CRC, and zero to seven bits of padding.
//!
//! What an encoder chooses: where blocks end, the bitmap (it may list unused bytes), the tables
//! and the selectors. What follows from the data: a block's bytes are run-length coded (runs of 4
//! up to the encoder's longest run become 4 bytes and a count), put through the Burrows–Wheeler
//! transform (sorted rotations), move-to-front coded with runs of zeros written in bijective
//! base 2 (RUNA, RUNB), and coded with canonical Huffman codes; the CRCs are computed. So a
//! record keeps, per block, how many bytes it holds and its header bits verbatim (from the flag
//! to the last code length), and per stream the block size digit, the longest run coded as one
//! (libbzip2 and lbzip2: 255) and the end padding. A periodic block has equal rotations and so
//! several valid `origPtr`s, but one transform output; `origPtr` is in the kept header.
//!
//! Randomised blocks (written by bzip2 0.9.0 for blocks it found hard to sort) are refused.
//!
//! Bound: a block's header is at most [`MAX_HEADER_BYTES`]; the selectors, 50 symbols each,
//! dominate it (a few KB per 900 kB block, before the recipe's xz). Rebuilding run-length codes
//! each byte once and sorts each block (at most 900,000 bytes after run-length coding) once, so
//! a hostile record costs time in proportion to the bytes it claims to rebuild.

use serde::{Deserialize, Serialize};

use super::bit_writer::MsbBitWriter;
use super::huffman::CanonicalCode;
use super::{OutOfBounds, RecipeError};

const BLOCK_MAGIC: u64 = 0x3141_5926_5359;
const END_MAGIC: u64 = 0x1772_4538_5090;
/// A block's header: at most 24 + 16 + 256 + 3 + 15 bits, 32,767 selectors of at most 6 bits
/// and 6 tables of 5 + 258 × 41 bits, under 60 KiB.
const MAX_HEADER_BYTES: usize = 64 << 10;
/// Symbols coded with one selector's table.
const GROUP: usize = 50;
/// The longest runs a run-length coder may take as one, longest first tried last: libbzip2's and
/// lbzip2's 255, then 259 (4 bytes and a count of 255, the most a decoder accepts).
const RUN_LIMITS: [u16; 2] = [255, 259];

/// One bzip2 stream's decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedStream {
    /// The block size digit, 1 to 9 (hundreds of kB).
    pub level: u8,
    /// The longest run of equal bytes the run-length coder took as one.
    pub max_run: u16,
    #[serde(deserialize_with = "super::bounded::vec")]
    pub blocks: Vec<RecordedBlock>,
    /// The bits after the combined CRC, to the byte boundary.
    pub end_padding: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedBlock {
    /// How many uncompressed bytes the block holds.
    pub plain_len: u64,
    /// How many bits of `header` are the block's header.
    pub header_bits: u32,
    /// The block's header from the randomised flag to the last code length, padded with zero
    /// bits to a byte.
    pub header: Vec<u8>,
}

/// Why a bzip2 stream could not be recorded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unreadable {
    #[error("the bzip2 stream is invalid: {0}")]
    Invalid(&'static str),
    #[error("it has a randomised block (bzip2 0.9.0), which is not modelled")]
    Randomised,
    #[error("the bzip2 stream does not decompress to the data it is kept against")]
    OtherData,
    #[error("its runs of equal bytes are not coded as bzip2 encoders code them")]
    Runs,
    #[error("the record does not rebuild the stream")]
    NotRebuilt,
}

/// Reads bits most significant first, up to bit `end`.
struct MsbReader<'a> {
    bytes: &'a [u8],
    bit: usize,
    end: usize,
}

impl MsbReader<'_> {
    fn bit(&mut self) -> Result<u32, Unreadable> {
        if self.bit >= self.end {
            return Err(Unreadable::Invalid("it ends early"));
        }
        let value = self.bytes[self.bit / 8] >> (7 - self.bit % 8) & 1;
        self.bit += 1;
        Ok(u32::from(value))
    }

    fn bits(&mut self, count: u8) -> Result<u32, Unreadable> {
        (0..count).try_fold(0, |value, _| Ok(value << 1 | self.bit()?))
    }

    fn magic(&mut self) -> Result<u64, Unreadable> {
        Ok(u64::from(self.bits(24)?) << 24 | u64::from(self.bits(24)?))
    }

    /// Copies the bits from here to `end` into `out`, as they are.
    fn copy_to(&mut self, out: &mut MsbBitWriter) -> Result<(), Unreadable> {
        while self.bit < self.end {
            let step = (self.end - self.bit).min(32) as u8;
            out.bits(self.bits(step)?, step);
        }
        Ok(())
    }
}

/// What a block's header says.
struct BlockHeader {
    /// Where the original rotation sorts (the decoder's start).
    orig_ptr: u32,
    /// The byte values the bitmap lists, in order: the move-to-front coder's starting list.
    used: Vec<u8>,
    selectors: Vec<u8>,
    tables: Vec<CanonicalCode>,
}

impl BlockHeader {
    /// Reads a header from its randomised flag to its last code length.
    fn read(input: &mut MsbReader) -> Result<BlockHeader, Unreadable> {
        if input.bit()? != 0 {
            return Err(Unreadable::Randomised);
        }
        let orig_ptr = input.bits(24)?;
        let groups = input.bits(16)?;
        let mut used = Vec::new();
        for group in 0..16u32 {
            if groups & (0x8000 >> group) != 0 {
                let bits = input.bits(16)?;
                used.extend((0..16u32).filter(|i| bits & (0x8000 >> i) != 0).map(|i| (group * 16 + i) as u8));
            }
        }
        if used.is_empty() {
            return Err(Unreadable::Invalid("a block's bitmap lists no byte"));
        }
        let table_count = input.bits(3)? as usize;
        if !(2..=6).contains(&table_count) {
            return Err(Unreadable::Invalid("a block has fewer than 2 or more than 6 Huffman tables"));
        }
        let selector_count = input.bits(15)?;
        if selector_count == 0 {
            return Err(Unreadable::Invalid("a block has no selector"));
        }
        let mut order: Vec<u8> = (0..table_count as u8).collect();
        let mut selectors = Vec::with_capacity(selector_count as usize);
        for _ in 0..selector_count {
            let mut position = 0;
            while input.bit()? == 1 {
                position += 1;
                if position == table_count {
                    return Err(Unreadable::Invalid("a selector names no table"));
                }
            }
            order[..=position].rotate_right(1);
            selectors.push(order[0]);
        }
        let alphabet = used.len() + 2;
        let mut tables = Vec::with_capacity(table_count);
        for _ in 0..table_count {
            let mut len = input.bits(5)? as i32;
            let mut lengths = vec![0u8; alphabet];
            for slot in &mut lengths {
                loop {
                    if !(1..=20).contains(&len) {
                        return Err(Unreadable::Invalid("a code length is not 1 to 20"));
                    }
                    if input.bit()? == 0 {
                        break;
                    }
                    len += if input.bit()? == 0 { 1 } else { -1 };
                }
                *slot = len as u8;
            }
            tables.push(
                CanonicalCode::new(&lengths).map_err(|_| Unreadable::Invalid("a Huffman table is over-subscribed"))?,
            );
        }
        Ok(BlockHeader { orig_ptr, used, selectors, tables })
    }

    fn end_of_block(&self) -> u16 {
        self.used.len() as u16 + 1
    }
}

/// The CRC bzip2 keeps (CRC-32 with the bits in order, not reflected).
fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = (i as u32) << 24;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 0x8000_0000 != 0 { crc << 1 ^ 0x04c1_1db7 } else { crc << 1 };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    !bytes.iter().fold(!0u32, |crc, &byte| crc << 8 ^ TABLE[usize::from((crc >> 24) as u8 ^ byte)])
}

/// Run-length codes `plain` as a bzip2 encoder does: runs of 4 to `max_run` equal bytes become
/// 4 bytes and a count of the rest. Stops once the output passes `limit` bytes.
fn run_length_code(plain: &[u8], max_run: usize, limit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(plain.len().min(limit.saturating_add(5)));
    let mut at = 0;
    while at < plain.len() && out.len() <= limit {
        let byte = plain[at];
        let run = plain[at..].iter().take(max_run).take_while(|&&b| b == byte).count();
        if run >= 4 {
            out.extend_from_slice(&[byte, byte, byte, byte, (run - 4) as u8]);
        } else {
            out.extend(std::iter::repeat_n(byte, run));
        }
        at += run;
    }
    out
}

/// Undoes [`run_length_code`], as bzip2's decoder does: after 4 equal bytes comes a count, and
/// the byte after it starts afresh.
fn run_length_decode(block: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(block.len());
    let mut equal = 0;
    let mut bytes = block.iter();
    while let Some(&byte) = bytes.next() {
        equal = if out.last() == Some(&byte) && equal > 0 { equal + 1 } else { 1 };
        out.push(byte);
        if equal == 4 {
            if let Some(&count) = bytes.next() {
                out.extend(std::iter::repeat_n(byte, usize::from(count)));
            }
            equal = 0;
        }
    }
    out
}

/// The Burrows–Wheeler transform as bzip2 takes it: the last byte of each rotation of `block`,
/// rotations in sorted order. Rotations sort as the suffixes of the block written twice.
fn transform(block: &[u8]) -> Vec<u8> {
    let n = block.len();
    let doubled = [block, block].concat();
    let mut suffixes = vec![0i32; doubled.len()];
    cdivsufsort::sort_in_place(&doubled, &mut suffixes);
    suffixes.iter().map(|&at| at as usize).filter(|&at| at < n).map(|at| block[(at + n - 1) % n]).collect()
}

/// Undoes [`transform`], given the original rotation's place.
fn untransform(last: &[u8], orig_ptr: usize) -> Result<Vec<u8>, Unreadable> {
    if orig_ptr >= last.len() {
        return Err(Unreadable::Invalid("origPtr is outside its block"));
    }
    let mut next = [0usize; 256];
    let mut count = [0usize; 256];
    for &byte in last {
        count[usize::from(byte)] += 1;
    }
    for byte in 1..256 {
        next[byte] = next[byte - 1] + count[byte - 1];
    }
    let mut follows = vec![0u32; last.len()];
    for (at, &byte) in last.iter().enumerate() {
        follows[next[usize::from(byte)]] = at as u32;
        next[usize::from(byte)] += 1;
    }
    let mut at = follows[orig_ptr] as usize;
    Ok((0..last.len())
        .map(|_| {
            let byte = last[at];
            at = follows[at] as usize;
            byte
        })
        .collect())
}

/// Move-to-front codes a transformed block over the bitmap's bytes: runs of the front byte as
/// RUNA (0) and RUNB (1) digits, other bytes as their place plus one, then end of block.
fn symbols(transformed: &[u8], header: &BlockHeader) -> Result<Vec<u16>, RecipeError> {
    fn put_run(out: &mut Vec<u16>, mut run: usize) {
        while run > 0 {
            run -= 1;
            out.push((run & 1) as u16);
            run >>= 1;
        }
    }
    let mut order = header.used.clone();
    let mut out = Vec::with_capacity(transformed.len() / 2);
    let mut run = 0;
    for &byte in transformed {
        if order[0] == byte {
            run += 1;
            continue;
        }
        put_run(&mut out, run);
        run = 0;
        let position = order
            .iter()
            .position(|&b| b == byte)
            .ok_or_else(|| RecipeError::Damaged(format!("bzip2 record: byte {byte} is not in its block's bitmap")))?;
        order[..=position].rotate_right(1);
        out.push(position as u16 + 1);
    }
    put_run(&mut out, run);
    out.push(header.end_of_block());
    Ok(out)
}

/// Decodes a block's symbols (after its header) back to the transformed block.
fn read_transformed(input: &mut MsbReader, header: &BlockHeader, limit: usize) -> Result<Vec<u8>, Unreadable> {
    let mut order = header.used.clone();
    let mut out = Vec::new();
    let (mut run, mut weight) = (0usize, 1usize);
    for &selector in &header.selectors {
        let table = &header.tables[usize::from(selector)];
        for _ in 0..GROUP {
            let symbol = table.decode(|| input.bit())?.ok_or(Unreadable::Invalid("a code is not in its table"))?;
            if symbol <= 1 {
                run += weight << symbol;
                weight <<= 1;
                if run > limit {
                    return Err(Unreadable::Invalid("a block is longer than its block size allows"));
                }
                continue;
            }
            out.extend(std::iter::repeat_n(order[0], run));
            (run, weight) = (0, 1);
            if out.len() > limit {
                return Err(Unreadable::Invalid("a block is longer than its block size allows"));
            }
            if symbol == header.end_of_block() {
                return Ok(out);
            }
            let position = usize::from(symbol - 1);
            order[..=position].rotate_right(1);
            out.push(order[0]);
        }
    }
    Err(Unreadable::Invalid("a block's selectors run out before its end"))
}

/// The bits from `start` to `end` of `bytes`, as a header record keeps them.
fn copy_bits(bytes: &[u8], start: usize, end: usize) -> Result<(u32, Vec<u8>), Unreadable> {
    let mut out = MsbBitWriter::default();
    MsbReader { bytes, bit: start, end }.copy_to(&mut out)?;
    let header = out.finish();
    if header.len() > MAX_HEADER_BYTES {
        return Err(Unreadable::Invalid("a block header is longer than bzip2 allows"));
    }
    Ok(((end - start) as u32, header))
}

/// Records `stream` (one whole bzip2 stream, end marker and padding included), which must
/// decompress to `plain`, and proves the record by rebuilding the stream from it.
pub(crate) fn record(stream: &[u8], plain: &[u8]) -> Result<RecordedStream, Unreadable> {
    let level = match stream {
        [b'B', b'Z', b'h', digit @ b'1'..=b'9', ..] => digit - b'0',
        _ => return Err(Unreadable::Invalid("no stream header")),
    };
    let limit = usize::from(level) * 100_000;
    let mut input = MsbReader { bytes: stream, bit: 32, end: stream.len() * 8 };
    let mut blocks = Vec::new();
    let mut run_limits = RUN_LIMITS.to_vec();
    let mut at = 0;
    loop {
        let magic = input.magic()?;
        if magic == END_MAGIC {
            break;
        }
        if magic != BLOCK_MAGIC {
            return Err(Unreadable::Invalid("a block does not start with the block magic"));
        }
        input.bits(32)?; // The block's CRC: computed when rebuilding.
        let header_start = input.bit;
        let header = BlockHeader::read(&mut input)?;
        let (header_bits, header_bytes) = copy_bits(stream, header_start, input.bit)?;
        let coded = untransform(&read_transformed(&mut input, &header, limit)?, header.orig_ptr as usize)?;
        let piece = run_length_decode(&coded);
        if plain.get(at..at + piece.len()) != Some(&piece[..]) {
            return Err(Unreadable::OtherData);
        }
        run_limits.retain(|&max_run| run_length_code(&piece, usize::from(max_run), limit) == coded);
        at += piece.len();
        blocks.push(RecordedBlock { plain_len: piece.len() as u64, header_bits, header: header_bytes });
    }
    input.bits(32)?; // The combined CRC: computed when rebuilding.
    let end_padding = input.bits(((8 - input.bit % 8) % 8) as u8)? as u8;
    if at != plain.len() || input.bit != input.end {
        return Err(Unreadable::OtherData);
    }
    let max_run = *run_limits.first().ok_or(Unreadable::Runs)?;
    let recorded = RecordedStream { level, max_run, blocks, end_padding };
    match rebuild(plain, &recorded) {
        Ok(rebuilt) if rebuilt == stream => Ok(recorded),
        _ => Err(Unreadable::NotRebuilt),
    }
}

impl RecordedStream {
    /// How many uncompressed bytes the stream holds (`None` if that overflows).
    pub(crate) fn plain_len(&self) -> Option<u64> {
        self.blocks.iter().try_fold(0u64, |sum, block| sum.checked_add(block.plain_len))
    }

    /// Within what bzip2 allows: a block size digit, a run limit a decoder reads, headers of
    /// bounded length that hold as many bits as they say.
    pub(super) fn check_shape(&self) -> Result<(), OutOfBounds> {
        if !(1..=9).contains(&self.level) {
            return Err(OutOfBounds(format!("bzip2: block size level {}", self.level)));
        }
        if !(4..=259).contains(&self.max_run) {
            return Err(OutOfBounds(format!("bzip2: a longest run of {}", self.max_run)));
        }
        if self.blocks.iter().any(|b| b.header.len() > MAX_HEADER_BYTES || b.header_bits as usize > b.header.len() * 8)
        {
            return Err(OutOfBounds("bzip2: a block header longer than its bytes or than bzip2 allows".into()));
        }
        Ok(())
    }
}

/// A block made ready to write: its header read, its CRC and its symbols computed.
struct CodedBlock {
    header: BlockHeader,
    crc: u32,
    symbols: Vec<u16>,
}

/// Reads a recorded block's header and codes its bytes: the costly part of rebuilding (sorting),
/// which blocks do independently.
fn code_block(block: &RecordedBlock, piece: &[u8], stream: &RecordedStream) -> Result<CodedBlock, RecipeError> {
    let mut input = MsbReader { bytes: &block.header, bit: 0, end: block.header_bits as usize };
    let header = BlockHeader::read(&mut input).map_err(|e| damaged(&e.to_string()))?;
    if input.bit != input.end {
        return Err(damaged("a block's header ends before its bits do"));
    }
    let limit = usize::from(stream.level) * 100_000;
    let coded = run_length_code(piece, usize::from(stream.max_run), limit);
    if coded.len() > limit {
        return Err(damaged("a block is longer than its block size allows"));
    }
    let symbols = symbols(&transform(&coded), &header)?;
    if symbols.len().div_ceil(GROUP) > header.selectors.len() {
        return Err(damaged("a block's selectors run out"));
    }
    Ok(CodedBlock { header, crc: crc32(piece), symbols })
}

fn damaged(why: &str) -> RecipeError {
    RecipeError::Damaged(format!("bzip2 record: {why}"))
}

/// Rebuilds a recorded stream from its uncompressed bytes, coding as many blocks at once as
/// there are cores.
pub(crate) fn rebuild(plain: &[u8], stream: &RecordedStream) -> Result<Vec<u8>, RecipeError> {
    stream.check_shape().map_err(|OutOfBounds(why)| RecipeError::Damaged(why))?;
    let pieces = super::split_by_lengths(plain, stream.blocks.iter().map(|b| b.plain_len), "bzip2 blocks")?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = MsbBitWriter::after(vec![b'B', b'Z', b'h', b'0' + stream.level]);
    let mut combined = 0u32;
    for (blocks, pieces) in stream.blocks.chunks(workers).zip(pieces.chunks(workers)) {
        let coded: Vec<Result<CodedBlock, RecipeError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = blocks
                .iter()
                .zip(pieces)
                .map(|(block, piece)| scope.spawn(move || code_block(block, piece, stream)))
                .collect();
            handles.into_iter().map(|handle| handle.join().expect("coding a block does not panic")).collect()
        });
        for (block, coded) in blocks.iter().zip(coded) {
            let CodedBlock { header, crc, symbols } = coded?;
            combined = combined.rotate_left(1) ^ crc;
            out.bits((BLOCK_MAGIC >> 24) as u32, 24);
            out.bits(BLOCK_MAGIC as u32 & 0xff_ffff, 24);
            out.bits(crc, 32);
            MsbReader { bytes: &block.header, bit: 0, end: block.header_bits as usize }
                .copy_to(&mut out)
                .expect("check_shape: the header holds its bits");
            for (group, selector) in symbols.chunks(GROUP).zip(&header.selectors) {
                let table = &header.tables[usize::from(*selector)];
                for &symbol in group {
                    let (code, len) = table.code(usize::from(symbol)).expect("every symbol of a block has a code");
                    out.bits(code, len);
                }
            }
        }
    }
    out.bits((END_MAGIC >> 24) as u32, 24);
    out.bits(END_MAGIC as u32 & 0xff_ffff, 24);
    out.bits(combined, 32);
    out.bits(u32::from(stream.end_padding), out.to_byte());
    Ok(out.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn libbzip2(level: u32, plain: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::new(level));
        encoder.write_all(plain).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn crc_is_bzip2s() {
        // CRC-32/BZIP2's check value (the CRC catalogue's `check`).
        assert_eq!(crc32(b"123456789"), 0xfc89_1918);
    }

    #[test]
    fn run_length_coding_is_bzip2s() {
        let plain = [&b"abbbbbbc"[..], &[b'x'; 300], b"yyyy", b"zzz"].concat();
        let coded = run_length_code(&plain, 255, usize::MAX);
        let expected = [&b"abbbb\x02c"[..], b"xxxx\xfb", b"xxxx\x29", b"yyyy\x00", b"zzz"].concat();
        assert_eq!(coded, expected);
        assert_eq!(run_length_decode(&coded), plain);
        assert_eq!(run_length_code(&plain, 259, usize::MAX)[7..17], *b"xxxx\xffxxxx\x25");
    }

    #[test]
    fn the_transform_undoes() {
        for block in [&b"banana"[..], b"abababab", b"a", b"mississippi river", &[0; 1000]] {
            let transformed = transform(block);
            let rotations: Vec<Vec<u8>> = (0..block.len()).map(|at| [&block[at..], &block[..at]].concat()).collect();
            let mut sorted = rotations.clone();
            sorted.sort();
            let naive: Vec<u8> = sorted.iter().map(|rotation| *rotation.last().unwrap()).collect();
            assert_eq!(transformed, naive, "{block:?}");
            let orig_ptr = sorted.iter().position(|rotation| rotation == &rotations[0]).unwrap();
            assert_eq!(untransform(&transformed, orig_ptr).unwrap(), block);
        }
    }

    #[test]
    fn libbzip2_streams_record_and_rebuild() {
        let mut text = Vec::new();
        for i in 0..40_000u32 {
            text.extend_from_slice(format!("line {} of {}\n", i % 977, i / 3).as_bytes());
            if i % 5000 == 0 {
                text.extend_from_slice(&[b'z'; 700]);
            }
        }
        for (level, plain) in [(1, &text[..]), (9, &text[..]), (9, b"hello"), (9, b"")] {
            let stream = libbzip2(level, plain);
            let recorded = record(&stream, plain).unwrap_or_else(|e| panic!("level {level}: {e}"));
            assert_eq!(recorded.max_run, 255);
            assert_eq!(rebuild(plain, &recorded).unwrap(), stream);
        }
    }

    #[test]
    fn damaged_records_are_refused_or_rebuild_other_bytes_never_a_panic() {
        let plain: Vec<u8> = (0..20_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let stream = libbzip2(1, &plain);
        let recorded = record(&stream, &plain).unwrap();
        let header = &recorded.blocks[0].header;
        for at in 0..header.len() {
            for flip in [1u8, 0x10, 0xff] {
                let mut damaged = recorded.clone();
                damaged.blocks[0].header[at] ^= flip;
                let padding = (1u8 << ((8 - recorded.blocks[0].header_bits % 8) % 8)) - 1;
                let in_padding = at == header.len() - 1 && flip & !padding == 0;
                if let Ok(rebuilt) = rebuild(&plain, &damaged) {
                    assert!(rebuilt != stream || in_padding, "a flip at {at} changed nothing");
                }
            }
        }
        for cut in 0..header.len() {
            let mut damaged = recorded.clone();
            damaged.blocks[0].header.truncate(cut);
            assert!(rebuild(&plain, &damaged).is_err());
        }
    }
}
