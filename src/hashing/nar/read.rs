use std::io::{self, Read};

use super::{MAGIC, MAX_NAME_LEN};
use crate::hashing::tree::{Budget, Limits, TreeError, TreeSink, invalid_name_reason};

/// Longest keyword token (`executable`, `directory`, …), with room to spare.
const MAX_KEYWORD_LEN: u64 = 32;

/// Reads one NAR from `reader` and replays it into `sink`, refusing anything but the canonical
/// form: names that are empty, `.`, `..`, contain `/` or NUL, or are out of order or repeated;
/// non-zero padding; lengths past [`MAX_NAME_LEN`]. Stops right after the NAR's last byte and
/// returns how many bytes it read.
pub fn parse(reader: impl Read, sink: &mut impl TreeSink) -> Result<u64, TreeError> {
    parse_with_limits(reader, sink, Limits::UNLIMITED)
}

/// [`parse`], refusing trees past `limits` (for NARs from untrusted sources).
pub fn parse_with_limits(reader: impl Read, sink: &mut impl TreeSink, limits: Limits) -> Result<u64, TreeError> {
    let mut parser = Parser { reader, offset: 0, budget: Budget::new(limits), buf: Vec::new() };
    parser.expect(MAGIC, "the NAR magic `nix-archive-1`")?;
    parser.tree(sink)?;
    Ok(parser.offset)
}

struct Parser<R> {
    reader: R,
    offset: u64,
    budget: Budget,
    buf: Vec<u8>,
}

/// An open directory: the last entry name seen, to check order.
struct OpenDirectory {
    last_name: Option<Vec<u8>>,
}

impl<R: Read> Parser<R> {
    fn malformed(&self, reason: impl Into<String>) -> TreeError {
        TreeError::MalformedNar { offset: self.offset, reason: reason.into() }
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), TreeError> {
        match self.reader.read_exact(buf) {
            Ok(()) => {
                self.offset += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(self.malformed("the stream ends early")),
            Err(e) => Err(TreeError::NarInput(e)),
        }
    }

    fn read_u64(&mut self) -> Result<u64, TreeError> {
        let mut bytes = [0u8; 8];
        self.read_exact(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn read_padding(&mut self, len: u64) -> Result<(), TreeError> {
        let pad = ((8 - len % 8) % 8) as usize;
        let mut zeros = [0u8; 8];
        self.read_exact(&mut zeros[..pad])?;
        if zeros.iter().any(|&b| b != 0) {
            return Err(self.malformed("non-zero padding"));
        }
        Ok(())
    }

    /// Reads a string token of at most `max` bytes into `self.buf`.
    fn read_token(&mut self, max: u64, what: &str) -> Result<(), TreeError> {
        let len = self.read_u64()?;
        if len > max {
            return Err(self.malformed(format!("{what} is {len} bytes long, more than the {max} allowed")));
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(len as usize, 0);
        let read = self.read_exact(&mut buf);
        self.buf = buf;
        read?;
        self.read_padding(len)
    }

    fn expect(&mut self, want: &[u8], what: &str) -> Result<(), TreeError> {
        let start = self.offset;
        self.read_token(MAX_KEYWORD_LEN, what)?;
        if self.buf != want {
            return Err(TreeError::MalformedNar {
                offset: start,
                reason: format!("expected {what}, found `{}`", String::from_utf8_lossy(&self.buf)),
            });
        }
        Ok(())
    }

    fn keyword(&mut self, what: &str) -> Result<Vec<u8>, TreeError> {
        self.read_token(MAX_KEYWORD_LEN, what)?;
        Ok(self.buf.clone())
    }

    /// Parses one tree without recursion, so that nesting depth cannot exhaust the stack.
    fn tree(&mut self, sink: &mut impl TreeSink) -> Result<(), TreeError> {
        let mut open: Vec<OpenDirectory> = Vec::new();
        loop {
            self.expect(b"(", "`(`")?;
            self.expect(b"type", "`type`")?;
            self.budget.node()?;
            let mut node_done = match self.keyword("a node type")?.as_slice() {
                b"regular" => self.regular(sink).map(|()| true)?,
                b"symlink" => self.symlink(sink).map(|()| true)?,
                b"directory" => {
                    self.budget.depth(open.len() + 1)?;
                    sink.directory_start()?;
                    open.push(OpenDirectory { last_name: None });
                    false
                }
                other => {
                    return Err(self.malformed(format!("unknown node type `{}`", String::from_utf8_lossy(other))));
                }
            };
            // Close finished nodes and directories until the next entry's node begins.
            loop {
                if node_done {
                    if open.is_empty() {
                        return Ok(());
                    }
                    self.expect(b")", "`)` closing the entry")?;
                    sink.entry_end()?;
                }
                let start = self.offset;
                let token = self.keyword("`entry` or `)`")?;
                if token == b")" {
                    open.pop();
                    sink.directory_end()?;
                    node_done = true;
                    continue;
                }
                if token != b"entry" {
                    return Err(TreeError::MalformedNar {
                        offset: start,
                        reason: format!("expected `entry` or `)`, found `{}`", String::from_utf8_lossy(&token)),
                    });
                }
                self.entry_name(open.last_mut().expect("an entry is read inside a directory"), sink)?;
                break;
            }
        }
    }

    fn entry_name(&mut self, dir: &mut OpenDirectory, sink: &mut impl TreeSink) -> Result<(), TreeError> {
        self.expect(b"(", "`(`")?;
        self.expect(b"name", "`name`")?;
        let name_at = self.offset;
        self.read_token(MAX_NAME_LEN, "an entry name")?;
        let name = std::mem::take(&mut self.buf);
        let refuse = |reason: &str| TreeError::MalformedNar {
            offset: name_at,
            reason: format!("entry name \"{}\": {reason}", String::from_utf8_lossy(&name).escape_debug()),
        };
        if let Some(reason) = invalid_name_reason(&name) {
            return Err(refuse(reason));
        }
        match &dir.last_name {
            Some(last) if *last == name => return Err(refuse("it appears twice")),
            Some(last) if *last > name => {
                return Err(refuse("it is out of order (entries must be sorted by name bytes)"));
            }
            _ => {}
        }
        self.expect(b"node", "`node`")?;
        sink.entry_start(&name)?;
        dir.last_name = Some(name);
        Ok(())
    }

    fn regular(&mut self, sink: &mut impl TreeSink) -> Result<(), TreeError> {
        let mut token = self.keyword("`executable` or `contents`")?;
        let executable = token == b"executable";
        if executable {
            self.expect(b"", "the empty string after `executable`")?;
            token = self.keyword("`contents`")?;
        }
        if token != b"contents" {
            return Err(self.malformed(format!("expected `contents`, found `{}`", String::from_utf8_lossy(&token))));
        }
        let size = self.read_u64()?;
        self.budget.bytes(size)?;
        sink.file_start(executable, size)?;
        let mut chunk = vec![0u8; (size as usize).clamp(1, 256 * 1024)];
        let mut remaining = size;
        while remaining > 0 {
            let n = remaining.min(chunk.len() as u64) as usize;
            self.read_exact(&mut chunk[..n])?;
            sink.file_data(&chunk[..n])?;
            remaining -= n as u64;
        }
        self.read_padding(size)?;
        self.expect(b")", "`)` closing the file")?;
        sink.file_end()
    }

    fn symlink(&mut self, sink: &mut impl TreeSink) -> Result<(), TreeError> {
        self.expect(b"target", "`target`")?;
        let at = self.offset;
        self.read_token(MAX_NAME_LEN, "a symlink target")?;
        let target = std::mem::take(&mut self.buf);
        if target.is_empty() || target.contains(&0) {
            return Err(TreeError::MalformedNar {
                offset: at,
                reason: "a symlink target is empty or contains a NUL byte".into(),
            });
        }
        self.expect(b")", "`)` closing the symlink")?;
        sink.symlink(&target)
    }
}
