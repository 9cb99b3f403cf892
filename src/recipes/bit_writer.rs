//! Bits packed into bytes: least significant bit first, as deflate and compress (`.Z`) write
//! their streams, or most significant bit first, as bzip2 does.

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
    pub(crate) fn code(&mut self, (code, len): (u32, u8)) {
        let reversed = code.reverse_bits() >> (32 - u32::from(len.max(1)));
        self.bits(reversed, len);
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

/// Bits packed most significant bit first: whole bytes in `bytes`, the rest in `pending`.
#[derive(Default)]
pub(crate) struct MsbBitWriter {
    bytes: Vec<u8>,
    pending: u64,
    pending_bits: u8,
}

impl MsbBitWriter {
    /// A writer that goes on after `bytes`.
    pub(crate) fn after(bytes: Vec<u8>) -> MsbBitWriter {
        MsbBitWriter { bytes, ..MsbBitWriter::default() }
    }

    /// Writes the low `count` bits of `value` (at most 32), the highest first.
    pub(crate) fn bits(&mut self, value: u32, count: u8) {
        self.pending = self.pending << count | (u64::from(value) & ((1 << count) - 1));
        self.pending_bits += count;
        while self.pending_bits >= 8 {
            self.pending_bits -= 8;
            self.bytes.push((self.pending >> self.pending_bits) as u8);
        }
        self.pending &= (1 << self.pending_bits) - 1;
    }

    /// How many bits are left to write before the next byte boundary.
    pub(crate) fn to_byte(&self) -> u8 {
        (8 - self.pending_bits) % 8
    }

    /// The bytes written, the last one padded with zero bits.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.bits(0, self.to_byte());
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_pack_in_either_order() {
        let mut lsb = BitWriter::default();
        let mut msb = MsbBitWriter::default();
        for (value, count) in [(0b1, 1), (0b10, 2), (0x1234_5678, 32), (0b101, 3)] {
            lsb.bits(value, count);
            msb.bits(value, count);
        }
        // 1, 10, 0x12345678, 101: 38 bits in 5 bytes, as Python's int formatting packs them.
        assert_eq!(msb.finish(), [0b1100_0010, 0b0100_0110, 0b1000_1010, 0b1100_1111, 0b0001_0100]);
        assert_eq!(lsb.finish(), [0b1100_0101, 0b1011_0011, 0b1010_0010, 0b1001_0001, 0b0010_1000]);
    }
}
