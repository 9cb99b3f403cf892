//! Reading a gzip stream with zlib-rs, which inflates about a third faster than zlib.
//!
//! The vault's bundles are gzipped tar streams of whole trees, so inflating them is most of the
//! time a tree fetch takes. flate2 is built on zlib (recipes need zlib's exact deflate output), so
//! bundles are read through zlib-rs's own streaming API instead. Only one member is read, as the
//! vault writes one.

use std::io::{self, Read};

const INPUT: usize = 256 << 10;

/// The uncompressed bytes of the gzip stream `inner` holds.
pub(crate) struct GunzipReader<R> {
    inner: R,
    inflate: zlib_rs::Inflate,
    input: Vec<u8>,
    start: usize,
    end: usize,
    ended: bool,
}

impl<R: Read> GunzipReader<R> {
    pub(crate) fn new(inner: R) -> GunzipReader<R> {
        GunzipReader {
            inner,
            // 16 + 15: a gzip header, and a 32 KiB window.
            inflate: zlib_rs::Inflate::new(true, 16 + 15),
            input: vec![0; INPUT],
            start: 0,
            end: 0,
            ended: false,
        }
    }
}

impl<R: Read> Read for GunzipReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ended || buf.is_empty() {
            return Ok(0);
        }
        loop {
            let mut at_eof = false;
            if self.start == self.end {
                self.end = self.inner.read(&mut self.input)?;
                self.start = 0;
                at_eof = self.end == 0;
            }
            let (before_in, before_out) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self
                .inflate
                .decompress(&self.input[self.start..self.end], buf, zlib_rs::InflateFlush::NoFlush)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("gzip: {}", e.as_str())))?;
            self.start += (self.inflate.total_in() - before_in) as usize;
            let produced = (self.inflate.total_out() - before_out) as usize;
            if status == zlib_rs::Status::StreamEnd {
                self.ended = true;
                return Ok(produced);
            }
            if produced > 0 {
                return Ok(produced);
            }
            if at_eof {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the gzip stream is cut short"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_back_what_gzip_wrote_in_any_chunking_and_refuses_a_cut() {
        let plain: Vec<u8> = (0..300_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        encoder.write_all(&plain).unwrap();
        let gz = encoder.finish().unwrap();
        for chunk in [1, 7, 4096, 1 << 20] {
            let mut reader = GunzipReader::new(&gz[..]);
            let mut out = Vec::new();
            let mut buf = vec![0; chunk];
            loop {
                let n = reader.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            assert!(out == plain, "read {chunk} bytes at a time");
        }
        let mut cut = Vec::new();
        let err = GunzipReader::new(&gz[..gz.len() / 2]).read_to_end(&mut cut).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
