//! Canonical Huffman codes, as deflate and bzip2 both use them: codes are given out in order of
//! length, then of symbol, so a table's code lengths alone fix every code. Decoding goes bit by
//! bit (as zlib's `puff` does), which is slow but simple and needs no table sized by the longest
//! code; recording a stream is not the hot path.

/// The longest code either format allows: bzip2's 20 (deflate's is 15).
pub(crate) const MAX_LEN: u8 = 20;

/// Why code lengths make no prefix code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadLengths {
    #[error("a Huffman table is over-subscribed")]
    OverSubscribed,
    #[error("a Huffman code is longer than {MAX_LEN} bits")]
    TooLong,
}

pub(crate) struct CanonicalCode {
    /// How many symbols have a code of each length.
    counts: [u32; MAX_LEN as usize + 1],
    /// The symbols with codes, by length, then by symbol.
    symbols: Vec<u16>,
    /// Each symbol's code and length (0: the symbol has no code).
    pub(crate) codes: Vec<(u32, u8)>,
}

impl CanonicalCode {
    /// The code with these lengths (0: no code); refuses over-subscribed ones (incomplete ones
    /// are valid).
    pub(crate) fn new(lengths: &[u8]) -> Result<CanonicalCode, BadLengths> {
        let mut counts = [0u32; MAX_LEN as usize + 1];
        for &len in lengths {
            *counts.get_mut(usize::from(len)).ok_or(BadLengths::TooLong)? += 1;
        }
        counts[0] = 0;
        let mut left: i64 = 1;
        for &count in &counts[1..] {
            left = left * 2 - i64::from(count);
            if left < 0 {
                return Err(BadLengths::OverSubscribed);
            }
        }
        let mut next_code = [0u32; MAX_LEN as usize + 1];
        let mut offsets = [0usize; MAX_LEN as usize + 1];
        for len in 1..=usize::from(MAX_LEN) {
            next_code[len] = (next_code[len - 1] + counts[len - 1]) << 1;
            offsets[len] = offsets[len - 1] + counts[len - 1] as usize;
        }
        let mut symbols = vec![0; offsets[usize::from(MAX_LEN)] + counts[usize::from(MAX_LEN)] as usize];
        let mut codes = vec![(0, 0); lengths.len()];
        for (symbol, &len) in lengths.iter().enumerate() {
            if len != 0 {
                let len = usize::from(len);
                symbols[offsets[len]] = symbol as u16;
                offsets[len] += 1;
                codes[symbol] = (next_code[len], len as u8);
                next_code[len] += 1;
            }
        }
        Ok(CanonicalCode { counts, symbols, codes })
    }

    /// Decodes one symbol from bits read one at a time, the code's first bit first; `None` when
    /// the bits are no code of the table.
    pub(crate) fn decode<E>(&self, mut next_bit: impl FnMut() -> Result<u32, E>) -> Result<Option<u16>, E> {
        let (mut code, mut first, mut index) = (0i64, 0i64, 0i64);
        for &count in &self.counts[1..] {
            code |= i64::from(next_bit()?);
            let count = i64::from(count);
            if code - count < first {
                return Ok(Some(self.symbols[(index + code - first) as usize]));
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Ok(None)
    }

    /// A symbol's code and length, if it has one.
    pub(crate) fn code(&self, symbol: usize) -> Option<(u32, u8)> {
        self.codes.get(symbol).copied().filter(|&(_, len)| len != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_length_then_symbol() {
        // RFC 1951 §3.2.2's example: lengths (3, 3, 3, 3, 3, 2, 4, 4) give these codes.
        let code = CanonicalCode::new(&[3, 3, 3, 3, 3, 2, 4, 4]).unwrap();
        let expected =
            [(0b010, 3), (0b011, 3), (0b100, 3), (0b101, 3), (0b110, 3), (0b00, 2), (0b1110, 4), (0b1111, 4)];
        assert_eq!(code.codes, expected);
        for (symbol, &(bits, len)) in expected.iter().enumerate() {
            let mut at = len;
            let decoded = code.decode(|| -> Result<u32, ()> {
                at -= 1;
                Ok(bits >> at & 1)
            });
            assert_eq!(decoded, Ok(Some(symbol as u16)));
        }
        assert_eq!(CanonicalCode::new(&[1, 1, 1]).err(), Some(BadLengths::OverSubscribed));
        assert_eq!(CanonicalCode::new(&[21, 1]).err(), Some(BadLengths::TooLong));
    }
}
