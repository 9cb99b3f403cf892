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

/// A temporary directory beside `path`, removed when dropped, to build a tree in before it is
/// renamed to `path`.
pub(crate) fn staging_dir_beside(path: &Path) -> io::Result<tempfile::TempDir> {
    tempfile::Builder::new().prefix(".swh-bridge-staging-").tempdir_in(parent_dir(path))
}

/// A temporary file beside `path`, readable by all, to stream into before [`persist`].
pub(crate) fn temp_file_beside(path: &Path) -> io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(parent_dir(path))
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
