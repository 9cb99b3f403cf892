//! On-disk trees: walking one into tree events, and creating one from them.
//!
//! Quirks:
//! - symlinks are never followed, the root included (as `nix-store --dump` does);
//! - "executable" means the owner's execute bit for Nix and git, but any execute bit for
//!   `swh-model` (and so for the directories SWH's loaders archive): [`ExecutableRule`] picks;
//! - sockets, FIFOs and devices cannot be represented and are an error, not skipped;
//! - names are raw bytes (`OsStr`), so non-UTF-8 names survive.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io::{BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{ExecutableRule, TreeError, TreeSink, invalid_name_reason};

/// How to read an on-disk tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkOptions {
    pub executable: ExecutableRule,
}

impl WalkOptions {
    /// As Nix and git read a tree.
    pub fn nix() -> WalkOptions {
        WalkOptions { executable: ExecutableRule::Owner }
    }
}

const READ_CHUNK: usize = 256 * 1024;
/// Files this large are offered to the sink by handle (see [`TreeSink::file_handle`]); smaller
/// ones cost more in hand-over than in copying.
const HANDOFF_MIN: u64 = 64 * 1024;

/// Replays the tree at `root` into `sink`, reading each file once.
pub fn walk(root: &Path, options: &WalkOptions, sink: &mut impl TreeSink) -> Result<(), TreeError> {
    let meta = fs::symlink_metadata(root).map_err(|source| TreeError::Read { path: root.to_owned(), source })?;
    let mut walker = Walker { options: *options, path: root.to_owned(), buf: vec![0u8; READ_CHUNK] };
    walker.node(meta, sink)
}

struct Walker {
    options: WalkOptions,
    /// The node being walked; pushed and popped rather than rebuilt for every entry.
    path: PathBuf,
    buf: Vec<u8>,
}

impl Walker {
    fn read_error(&self, source: std::io::Error) -> TreeError {
        TreeError::Read { path: self.path.clone(), source }
    }

    fn node(&mut self, meta: Metadata, sink: &mut impl TreeSink) -> Result<(), TreeError> {
        let file_type = meta.file_type();
        if file_type.is_file() {
            self.file(&meta, sink)
        } else if file_type.is_symlink() {
            let target = fs::read_link(&self.path).map_err(|e| self.read_error(e))?;
            sink.symlink(target.as_os_str().as_bytes())
        } else if file_type.is_dir() {
            self.directory(sink)
        } else {
            let kind = if file_type.is_socket() {
                "socket"
            } else if file_type.is_fifo() {
                "FIFO"
            } else if file_type.is_block_device() {
                "block device"
            } else if file_type.is_char_device() {
                "character device"
            } else {
                "special file"
            };
            Err(TreeError::UnsupportedType { path: self.path.clone(), kind })
        }
    }

    fn file(&mut self, meta: &Metadata, sink: &mut impl TreeSink) -> Result<(), TreeError> {
        let size = meta.len();
        let executable = self.options.executable.is_executable(meta.permissions().mode());
        let mut file = File::open(&self.path).map_err(|e| self.read_error(e))?;
        sink.file_start(executable, size)?;
        if size >= HANDOFF_MIN {
            let shared = Arc::new(file);
            if sink.file_handle(&shared, &self.path, size)? {
                return sink.file_end();
            }
            file = Arc::try_unwrap(shared).expect("a sink that declines a file keeps no handle to it");
        }
        let mut seen: u64 = 0;
        loop {
            // Ask for one byte more than expected, so that a short read shows the end of the file
            // without a further read(2) for every small file.
            let want = (size - seen.min(size)).saturating_add(1).min(self.buf.len() as u64) as usize;
            let n = match file.read(&mut self.buf[..want]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_error(e)),
            };
            if n == 0 {
                break;
            }
            if seen + n as u64 > size {
                return Err(TreeError::ChangedWhileReading {
                    path: self.path.clone(),
                    expected: size,
                    found: seen + n as u64,
                });
            }
            sink.file_data(&self.buf[..n])?;
            seen += n as u64;
            if seen == size && n < want {
                break;
            }
        }
        if seen != size {
            return Err(TreeError::ChangedWhileReading { path: self.path.clone(), expected: size, found: seen });
        }
        sink.file_end()
    }

    fn directory(&mut self, sink: &mut impl TreeSink) -> Result<(), TreeError> {
        let mut names: Vec<OsString> = Vec::new();
        for entry in fs::read_dir(&self.path).map_err(|e| self.read_error(e))? {
            names.push(entry.map_err(|e| self.read_error(e))?.file_name());
        }
        names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        sink.directory_start()?;
        for name in names {
            self.path.push(&name);
            let meta = fs::symlink_metadata(&self.path).map_err(|e| self.read_error(e))?;
            sink.entry_start(name.as_bytes())?;
            self.node(meta, sink)?;
            sink.entry_end()?;
            self.path.pop();
        }
        sink.directory_end()
    }
}

/// Reads exactly `size` bytes of `file` from its start with positioned reads (so that several
/// threads can share one descriptor), passing each chunk of at most `buf.len()` bytes to `consume`.
/// A file that turns out shorter or longer than `size` is [`TreeError::ChangedWhileReading`].
pub fn read_exactly_at(
    file: &File,
    path: &Path,
    size: u64,
    buf: &mut [u8],
    mut consume: impl FnMut(&[u8]) -> Result<(), TreeError>,
) -> Result<(), TreeError> {
    let mut offset = 0u64;
    loop {
        let n = match file.read_at(buf, offset) {
            Ok(n) => n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(TreeError::Read { path: path.to_owned(), source }),
        };
        if n == 0 || offset + n > size {
            let found = offset + n;
            return match found == size {
                true => Ok(()),
                false => Err(TreeError::ChangedWhileReading { path: path.to_owned(), expected: size, found }),
            };
        }
        consume(&buf[..n as usize])?;
        offset += n;
    }
}

/// Creates the tree it is fed at a path that must not exist yet.
///
/// Every name is checked again (a single component, not `.` or `..`), and files are created
/// with `O_EXCL`, so that nothing is written outside the new tree, whatever the source. Modes are
/// 0755 for directories and executables and 0644 for other files.
pub struct Restorer {
    path: PathBuf,
    file: Option<(BufWriter<File>, u64, u64)>,
}

impl Restorer {
    pub fn new(root: impl Into<PathBuf>) -> Restorer {
        Restorer { path: root.into(), file: None }
    }

    fn write_error(&self, source: std::io::Error) -> TreeError {
        TreeError::Write { path: self.path.clone(), source }
    }

    fn set_mode(&self, mode: u32) -> Result<(), TreeError> {
        // Explicitly, because the creation mode is masked by the umask.
        fs::set_permissions(&self.path, fs::Permissions::from_mode(mode)).map_err(|e| self.write_error(e))
    }
}

impl TreeSink for Restorer {
    fn file_start(&mut self, executable: bool, size: u64) -> Result<(), TreeError> {
        let mode = if executable { 0o755 } else { 0o644 };
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&self.path)
            .map_err(|e| self.write_error(e))?;
        self.set_mode(mode)?;
        self.file = Some((BufWriter::with_capacity(256 * 1024, file), size, 0));
        Ok(())
    }

    fn file_data(&mut self, data: &[u8]) -> Result<(), TreeError> {
        let (writer, _, written) = self.file.as_mut().expect("file_data comes between file_start and file_end");
        *written += data.len() as u64;
        let result = writer.write_all(data);
        result.map_err(|e| self.write_error(e))
    }

    fn file_end(&mut self) -> Result<(), TreeError> {
        let (writer, size, written) = self.file.take().expect("file_end follows file_start");
        if written != size {
            return Err(TreeError::ChangedWhileReading { path: self.path.clone(), expected: size, found: written });
        }
        writer.into_inner().map_err(|e| self.write_error(e.into_error()))?;
        Ok(())
    }

    fn symlink(&mut self, target: &[u8]) -> Result<(), TreeError> {
        std::os::unix::fs::symlink(OsStr::from_bytes(target), &self.path).map_err(|e| self.write_error(e))
    }

    fn directory_start(&mut self) -> Result<(), TreeError> {
        fs::create_dir(&self.path).map_err(|e| self.write_error(e))?;
        self.set_mode(0o755)
    }

    fn entry_start(&mut self, name: &[u8]) -> Result<(), TreeError> {
        if let Some(reason) = invalid_name_reason(name) {
            return Err(TreeError::HostileMember {
                path: String::from_utf8_lossy(name).into_owned(),
                reason: reason.into(),
            });
        }
        self.path.push(OsStr::from_bytes(name));
        Ok(())
    }

    fn entry_end(&mut self) -> Result<(), TreeError> {
        self.path.pop();
        Ok(())
    }

    fn directory_end(&mut self) -> Result<(), TreeError> {
        Ok(())
    }
}
