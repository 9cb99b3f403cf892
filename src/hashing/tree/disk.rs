//! On-disk trees: walking one into tree events, and creating one from them.
//!
//! Quirks:
//! - symlinks are never followed, the root included (as `nix-store --dump` does);
//! - "executable" means the owner's execute bit for Nix and git, but any execute bit for
//!   `swh-model` (and so for the directories SWH's loaders archive): [`ExecutableRule`] picks;
//! - sockets, FIFOs and devices cannot be represented and are an error, not skipped;
//! - names are raw bytes (`OsStr`), so non-UTF-8 names survive.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, FileType};
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
    walker.node(meta.file_type(), sink)
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

    fn node(&mut self, file_type: FileType, sink: &mut impl TreeSink) -> Result<(), TreeError> {
        if file_type.is_file() {
            self.file(sink)
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

    fn file(&mut self, sink: &mut impl TreeSink) -> Result<(), TreeError> {
        // Not following symlinks and not blocking on FIFOs, in case the entry was swapped since
        // it was listed; the size and mode come from the open file itself.
        let mut file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&self.path)
            .map_err(|e| self.read_error(e))?;
        let meta = file.metadata().map_err(|e| self.read_error(e))?;
        if !meta.is_file() {
            return Err(self.read_error(std::io::Error::other("it was replaced by something else while being read")));
        }
        let size = meta.len();
        let executable = self.options.executable.is_executable(meta.permissions().mode());
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
        // The listing's own file types (d_type) save an lstat per entry; a regular file's size
        // and mode come from the file once it is open.
        let mut entries: Vec<(OsString, FileType)> = Vec::new();
        for entry in fs::read_dir(&self.path).map_err(|e| self.read_error(e))? {
            let entry = entry.map_err(|e| self.read_error(e))?;
            let file_type = entry.file_type().map_err(|e| self.read_error(e))?;
            entries.push((entry.file_name(), file_type));
        }
        entries.sort_unstable_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
        sink.directory_start()?;
        for (name, file_type) in entries {
            self.path.push(&name);
            sink.entry_start(name.as_bytes())?;
            self.node(file_type, sink)?;
            sink.entry_end()?;
            self.path.pop();
        }
        sink.directory_end()
    }
}

/// Reads exactly `size` bytes of `file` from its start with positioned reads (so that several
/// threads can share one descriptor), passing each chunk of at most `buf.len()` bytes to `consume`.
/// A file that turns out shorter or longer than `size` is [`TreeError::ChangedWhileReading`].
pub(crate) fn read_exactly_at(
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
/// It trusts nothing about its source: every name is checked again (one component, not `.` or
/// `..`), events out of order are refused, every node is created inside a directory this restorer
/// created itself, files with `O_EXCL`, and modes are set through the new descriptors; so nothing
/// is written outside the new tree. Modes are 0755 for directories and executables and 0644 for
/// other files.
pub struct Restorer {
    /// The node being created, or the innermost open directory between entries.
    path: PathBuf,
    /// The directories created and still open, innermost last.
    open: Vec<OpenDirectory>,
    root_created: bool,
    file: Option<OpenFile>,
}

struct OpenDirectory {
    /// `None` between entries; `Some(created)` once an entry has started.
    entry: Option<bool>,
}

struct OpenFile {
    writer: BufWriter<File>,
    size: u64,
    written: u64,
}

impl Restorer {
    pub fn new(root: impl Into<PathBuf>) -> Restorer {
        Restorer { path: root.into(), open: Vec::new(), root_created: false, file: None }
    }

    fn write_error(&self, source: std::io::Error) -> TreeError {
        TreeError::Write { path: self.path.clone(), source }
    }

    fn out_of_order(&self, event: &'static str) -> TreeError {
        TreeError::EventOutOfOrder { path: self.path.clone(), event }
    }

    /// Claims the place for a new node: the root, or the entry just started.
    fn claim_node(&mut self, event: &'static str) -> Result<(), TreeError> {
        if self.file.is_some() {
            return Err(self.out_of_order(event));
        }
        match self.open.last_mut() {
            None if !self.root_created => self.root_created = true,
            Some(OpenDirectory { entry: Some(created @ false) }) => *created = true,
            _ => return Err(self.out_of_order(event)),
        }
        Ok(())
    }
}

impl TreeSink for Restorer {
    fn file_start(&mut self, executable: bool, size: u64) -> Result<(), TreeError> {
        self.claim_node("a file")?;
        let mode = if executable { 0o755 } else { 0o644 };
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&self.path)
            .map_err(|e| self.write_error(e))?;
        // Explicitly, because the creation mode is masked by the umask.
        file.set_permissions(fs::Permissions::from_mode(mode)).map_err(|e| self.write_error(e))?;
        self.file = Some(OpenFile { writer: BufWriter::with_capacity(256 * 1024, file), size, written: 0 });
        Ok(())
    }

    fn file_data(&mut self, data: &[u8]) -> Result<(), TreeError> {
        let Some(file) = self.file.as_mut() else { return Err(self.out_of_order("file data")) };
        file.written += data.len() as u64;
        let result = file.writer.write_all(data);
        result.map_err(|e| self.write_error(e))
    }

    fn file_end(&mut self) -> Result<(), TreeError> {
        let Some(file) = self.file.take() else { return Err(self.out_of_order("the end of a file")) };
        if file.written != file.size {
            return Err(self.write_error(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} bytes were announced, {} arrived", file.size, file.written),
            )));
        }
        file.writer.into_inner().map_err(|e| self.write_error(e.into_error()))?;
        Ok(())
    }

    fn symlink(&mut self, target: &[u8]) -> Result<(), TreeError> {
        self.claim_node("a symlink")?;
        std::os::unix::fs::symlink(OsStr::from_bytes(target), &self.path).map_err(|e| self.write_error(e))
    }

    fn directory_start(&mut self) -> Result<(), TreeError> {
        self.claim_node("a directory")?;
        fs::create_dir(&self.path).map_err(|e| self.write_error(e))?;
        let dir = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(&self.path)
            .map_err(|e| self.write_error(e))?;
        dir.set_permissions(fs::Permissions::from_mode(0o755)).map_err(|e| self.write_error(e))?;
        self.open.push(OpenDirectory { entry: None });
        Ok(())
    }

    fn entry_start(&mut self, name: &[u8]) -> Result<(), TreeError> {
        if let Some(reason) = invalid_name_reason(name) {
            return Err(TreeError::HostileMember {
                path: String::from_utf8_lossy(name).into_owned(),
                reason: reason.into(),
            });
        }
        match self.open.last_mut() {
            Some(dir @ OpenDirectory { entry: None }) if self.file.is_none() => dir.entry = Some(false),
            _ => return Err(self.out_of_order("an entry")),
        }
        self.path.push(OsStr::from_bytes(name));
        Ok(())
    }

    fn entry_end(&mut self) -> Result<(), TreeError> {
        match self.open.last_mut() {
            Some(dir @ OpenDirectory { entry: Some(true) }) if self.file.is_none() => dir.entry = None,
            _ => return Err(self.out_of_order("the end of an entry")),
        }
        self.path.pop();
        Ok(())
    }

    fn directory_end(&mut self) -> Result<(), TreeError> {
        match self.open.last() {
            Some(OpenDirectory { entry: None }) if self.file.is_none() => {
                self.open.pop();
                Ok(())
            }
            _ => Err(self.out_of_order("the end of a directory")),
        }
    }
}
