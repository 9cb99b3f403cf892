//! Bits packed least significant bit first into bytes, as deflate and compress (`.Z`) write
//! their streams.

/// Whole bytes in `bytes`, the bits of a byte not yet full in `pending`.
#[derive(Default)]
pub(crate) struct BitWriter {
    bytes: Vec<u8>,
    pending: u64,
    pending_bits: u8,
}

impl BitWriter {
    /// A writer that goes on after `bytes` (a header, or room reserved for the output).
    pub(crate) fn after(bytes: Vec<u8>) -> BitWriter {
        BitWriter { bytes, ..BitWriter::default() }
    }

    /// Writes the low `count` bits of `value` (at most 32).
    pub(crate) fn bits(&mut self, value: u32, count: u8) {
        // Bits above `count` (a damaged record's padding byte) must not reach the stream.
        self.pending |= (u64::from(value) & ((1 << count) - 1)) << self.pending_bits;
        self.pending_bits += count;
        while self.pending_bits >= 8 {
            self.bytes.push(self.pending as u8);
            self.pending >>= 8;
            self.pending_bits -= 8;
        }
    }

    /// Writes `count` zero bits.
    pub(crate) fn zeros(&mut self, mut count: usize) {
        while count > 0 {
            let step = count.min(32) as u8;
            self.bits(0, step);
            count -= usize::from(step);
        }
    }

    /// Writes a Huffman code, which deflate packs most significant bit first.
    pub(crate) fn code(&mut self, (code, len): (u16, u8)) {
        let reversed = code.reverse_bits() >> (16 - u32::from(len.max(1)));
        self.bits(u32::from(reversed), len);
    }

    /// How many bits are left to write before the next byte boundary.
    pub(crate) fn to_byte(&self) -> u8 {
        (8 - self.pending_bits) % 8
    }

    /// Copies whole bytes; the writer must be at a byte boundary.
    pub(crate) fn aligned_bytes(&mut self, bytes: &[u8]) {
        debug_assert_eq!(self.pending_bits, 0, "bytes written off a byte boundary");
        self.bytes.extend_from_slice(bytes);
    }

    /// The bytes written, the last one padded with zero bits.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.zeros(usize::from(self.to_byte()));
        self.bytes
    }
}
