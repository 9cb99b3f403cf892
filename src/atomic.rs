//! Writing files and trees so that no reader ever sees half of one: everything is written into a
//! temporary name beside its destination (so on the same file system) and renamed into place
//! once complete.
//!
//! Two kinds of destination:
//! - outputs handed over (a fetched source, a restored NAR, a verified download): never replaced,
//!   by `renameat2(RENAME_NOREPLACE)`, since `rename(2)` would silently replace a file or an
//!   empty directory that appeared meanwhile;
//! - files this tool owns and rewrites (reports, sources.json, recipes, bridge entries, cache
//!   entries): replaced, or kept if another writer put the same content there first.
//!
//! Files are made readable by everyone (0644), as a web server publishing them needs; a temporary
//! file starts 0600.

use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What to do when the destination already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Fail with `AlreadyExists`: the destination is someone's output.
    Refuse,
    /// Replace it atomically.
    Replace,
    /// Leave it and succeed: the destination is content-addressed, so what is there is the same.
    Keep,
}

/// The directory `path` will be in (`.` for a bare file name): where to stage what is written
/// to `path`, so that the final rename stays within one file system.
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// What temporary entries are named by: `.swh-bridge-<kind>-<pid>-<random>`, so that a later
/// run can tell the ones a dead process left (see [`sweep_debris`]).
const DEBRIS_PREFIX: &str = ".swh-bridge-";

fn owned_prefix(kind: &str) -> String {
    format!("{DEBRIS_PREFIX}{kind}-{}-", std::process::id())
}

/// A temporary directory beside `path`, removed when dropped, to build a tree in before it is
/// renamed to `path`.
pub(crate) fn staging_dir_beside(path: &Path) -> io::Result<tempfile::TempDir> {
    scratch_dir_in(parent_dir(path), "staging")
}

/// A temporary directory in `dir` for a command's scratch files (`kind` names it), removed when
/// dropped; what a killed run left in `dir` is swept first.
pub(crate) fn scratch_dir_in(dir: &Path, kind: &str) -> io::Result<tempfile::TempDir> {
    sweep_debris(dir);
    tempfile::Builder::new().prefix(&owned_prefix(kind)).tempdir_in(dir)
}

/// A temporary file beside `path`, readable by all, to stream into before [`persist`].
pub(crate) fn temp_file_beside(path: &Path) -> io::Result<tempfile::NamedTempFile> {
    let dir = parent_dir(path);
    sweep_debris(dir);
    tempfile::Builder::new()
        .prefix(&owned_prefix("tmp"))
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)
}

/// Removes the temporary files and directories that processes no longer running left in `dir`
/// (killed with SIGKILL, say, so their guards never ran): those named by [`owned_prefix`] with
/// the id of a process that does not exist. Another run's entries stay, whatever their age. Done
/// once per directory per process; failures are ignored (the entries stay for the next sweep).
/// Entries of a process on another machine sharing the directory would look dead: a directory
/// written by several machines at once is not supported.
pub(crate) fn sweep_debris(dir: &Path) {
    static SWEPT: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());
    {
        let mut swept = SWEPT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if swept.iter().any(|d| d == dir) {
            return;
        }
        swept.push(dir.to_owned());
    }
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = debris_owner(name.as_bytes()) else { continue };
        if pid == std::process::id() || process_exists(pid) {
            continue;
        }
        let path = entry.path();
        let _ = match entry.file_type() {
            Ok(kind) if kind.is_dir() => fs::remove_dir_all(&path),
            Ok(_) => fs::remove_file(&path),
            Err(e) => Err(e),
        };
    }
}

/// The process id in a temporary entry's name (`.swh-bridge-<kind>-<pid>-<random>`).
fn debris_owner(name: &[u8]) -> Option<u32> {
    let rest = name.strip_prefix(DEBRIS_PREFIX.as_bytes())?;
    let mut fields = rest.splitn(3, |&b| b == b'-');
    let (_kind, pid, _random) = (fields.next()?, fields.next()?, fields.next()?);
    std::str::from_utf8(pid).ok()?.parse().ok().filter(|&pid| pid > 0)
}

fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    alive || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Syncs a complete temporary file and renames it to `to`.
pub(crate) fn persist(temp: tempfile::NamedTempFile, to: &Path, existing: Existing) -> io::Result<()> {
    temp.as_file().sync_all()?;
    match existing {
        Existing::Replace => temp.persist(to).map(drop).map_err(|e| e.error),
        Existing::Refuse | Existing::Keep => {
            let temp_path = temp.into_temp_path();
            match rename_no_replace(&temp_path, to) {
                // The file now lives at `to`: there is nothing left for the guard to delete.
                Ok(()) => {
                    std::mem::forget(temp_path);
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && existing == Existing::Keep => Ok(()),
                Err(e) => Err(e),
            }
        }
    }
}

/// Writes what `write` produces to `path` (its directory created if need be) through a
/// temporary file beside it.
pub fn write_with(
    path: &Path,
    existing: Existing,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    fs::create_dir_all(parent_dir(path))?;
    let mut temp = temp_file_beside(path)?;
    {
        let mut out = io::BufWriter::with_capacity(256 * 1024, temp.as_file_mut());
        write(&mut out)?;
        out.flush()?;
    }
    persist(temp, path, existing)
}

/// Writes `bytes` to `path` (see [`write_with`]).
pub(crate) fn write(path: &Path, bytes: &[u8], existing: Existing) -> io::Result<()> {
    write_with(path, existing, |out| out.write_all(bytes))
}

/// Puts `source`'s file at `path` (replacing what is there): hard-linked where the file system
/// allows, else copied and made readable by all.
pub(crate) fn link_or_copy(source: &Path, path: &Path) -> io::Result<()> {
    fs::create_dir_all(parent_dir(path))?;
    let temp = tempfile::Builder::new().make_in(parent_dir(path), |temp| {
        fs::hard_link(source, temp).or_else(|_| {
            fs::copy(source, temp)?;
            fs::set_permissions(temp, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        })
    })?;
    temp.persist(path).map(drop).map_err(|e| e.error)
}

/// Renames `from` to `to`, failing with `AlreadyExists` rather than replacing anything at `to`.
pub(crate) fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    let c_path = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path contains a NUL byte"))
    };
    let (from, to) = (c_path(from)?, c_path(to)?);
    // SAFETY: both pointers are valid NUL-terminated strings that outlive the call.
    let status =
        unsafe { libc::renameat2(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::RENAME_NOREPLACE) };
    if status == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn only_what_dead_processes_left_is_swept() {
        let dir = tempfile::tempdir().unwrap();
        let mut exited = std::process::Command::new("true").spawn().unwrap();
        exited.wait().unwrap();
        let dead = exited.id();
        let names = [
            format!(".swh-bridge-tmp-{dead}-a1b2"),
            format!(".swh-bridge-staging-{dead}-c3d4"),
            format!(".swh-bridge-tmp-{}-e5f6", std::process::id()),
            // pid 1 always runs.
            ".swh-bridge-serve-1-g7h8".to_owned(),
            ".tmpAbCd12".to_owned(),
            ".swh-bridge-tmp-notapid-x".to_owned(),
        ];
        for name in &names {
            if name.contains("staging") {
                fs::create_dir_all(dir.path().join(name).join("tree")).unwrap();
            } else {
                fs::write(dir.path().join(name), b"debris").unwrap();
            }
        }
        sweep_debris(dir.path());
        let mut left: Vec<_> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        let mut expected = names[2..].to_vec();
        expected.sort();
        assert_eq!(left, expected);
        assert_eq!(debris_owner(b".swh-bridge-tmp-123-xyz"), Some(123));
        assert_eq!(debris_owner(b".swh-bridge-tmp-0-xyz"), None);
    }

    #[test]
    fn each_kind_of_destination_is_treated_as_it_says() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/out");
        write(&path, b"first", Existing::Refuse).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
        let refused = write(&path, b"second", Existing::Refuse).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::AlreadyExists);
        write(&path, b"second", Existing::Keep).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"first");
        write(&path, b"third", Existing::Replace).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"third");
        // Nothing is left behind but the destination.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let failed = write_with(&path, Existing::Replace, |_| Err(io::Error::other("no")));
        assert!(failed.is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
