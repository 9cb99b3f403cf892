//! Temporary directories and the generated trees the golden tests hash.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

pub use tempfile::TempDir;

pub fn temp_dir() -> TempDir {
    tempfile::Builder::new().prefix("swh-bridge-test-").tempdir().expect("creating a temporary directory")
}

pub fn write_file(path: &Path, contents: &[u8], mode: u32) {
    fs::write(path, contents).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// What [`make_tree`] puts in.
#[derive(Clone, Copy)]
pub struct TreeShape {
    /// Empty directories: git cannot hold them, NAR and SWH can.
    pub empty_dirs: bool,
    /// Names that are not UTF-8: SWH's directory loader fails on them (swh.loader.core 5.24.2
    /// cannot NAR-hash such a tree).
    pub non_utf8: bool,
}

/// The sha256 of `bytes`, in lowercase hex (sources and loader arguments name files by it).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    data_encoding::HEXLOWER.encode(&sha2::Sha256::digest(bytes))
}

/// Builds a tree with every case the hashes must agree on: executables with unusual modes, all
/// kinds of symlinks, empty files, non-UTF-8 names, names whose NAR and git orders differ, deep
/// nesting, and a file larger than one read chunk.
pub fn make_tree(root: &Path, shape: TreeShape) {
    fs::create_dir_all(root).unwrap();
    for (name, mode) in [("x755", 0o755), ("x744", 0o744), ("x654", 0o654), ("x711", 0o711), ("r600", 0o600)] {
        write_file(&root.join(name), format!("#!/bin/sh\necho {name}\n").as_bytes(), mode);
    }
    write_file(&root.join("empty"), b"", 0o644);
    symlink("x755", root.join("link-relative")).unwrap();
    symlink("/etc/hostname", root.join("link-absolute")).unwrap();
    symlink("../no/such/target", root.join("link-dangling")).unwrap();
    symlink("a", root.join("link-to-dir")).unwrap();

    // `a` is a directory, so git orders `a-b`, `a.b`, `a/`, `a0` while NAR orders `a`, `a-b`, …
    fs::create_dir(root.join("a")).unwrap();
    write_file(&root.join("a/inside"), b"inside a\n", 0o644);
    for name in ["a-b", "a.b", "a0"] {
        write_file(&root.join(name), name.as_bytes(), 0o644);
    }
    fs::create_dir(root.join("b.d")).unwrap();
    write_file(&root.join("b.d/x"), b"x", 0o644);
    write_file(&root.join("b"), b"b", 0o644);

    if shape.non_utf8 {
        let latin1 = root.join(OsStr::from_bytes(b"caf\xe9"));
        write_file(&latin1, b"non-UTF-8 name\n", 0o644);
        let latin1_dir = root.join(OsStr::from_bytes(b"d\xff\xfe"));
        fs::create_dir(&latin1_dir).unwrap();
        write_file(&latin1_dir.join("f"), b"in a non-UTF-8 directory\n", 0o755);
    }

    let mut deep = root.join("deep");
    for level in 0..60 {
        deep.push(format!("level{level:02}"));
    }
    fs::create_dir_all(&deep).unwrap();
    write_file(&deep.join("bottom"), b"deep down\n", 0o644);

    let big: Vec<u8> = (0..(3 << 20) + 5).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    write_file(&root.join("big.bin"), &big, 0o644);

    if shape.empty_dirs {
        fs::create_dir(root.join("empty-dir")).unwrap();
        fs::create_dir_all(root.join("nested/empty/dirs")).unwrap();
    }
}

/// Every regular file below `root`, relative, as raw bytes, sorted.
pub fn regular_files(root: &Path) -> Vec<(Vec<u8>, PathBuf)> {
    fn visit(root: &Path, dir: &Path, out: &mut Vec<(Vec<u8>, PathBuf)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                visit(root, &entry.path(), out);
            } else if kind.is_file() {
                let rel = entry.path().strip_prefix(root).unwrap().as_os_str().as_bytes().to_vec();
                out.push((rel, entry.path()));
            }
        }
    }
    let mut out = Vec::new();
    visit(root, root, &mut out);
    out.sort();
    out
}

/// A gzipped tarball (GNU tar, `gzip -9`) of a small tree, `name/README` (saying `text`) and an
/// executable `name/src/run`, written to `dir/name.tar.gz`: its bytes and the NAR hash (hex) of
/// its top folder, as `nix-hash` computes it.
pub fn tarball(dir: &Path, name: &str, text: &str) -> (Vec<u8>, String) {
    use crate::reference_tools::{line, output, tool};
    let top = dir.join(name);
    fs::create_dir_all(top.join("src")).unwrap();
    write_file(&top.join("README"), format!("{text}: {name}\n").as_bytes(), 0o644);
    write_file(&top.join("src/run"), b"#!/bin/sh\necho run\n", 0o755);
    let bytes =
        output(std::process::Command::new("sh").arg("-c").arg(format!("tar -cf - {name} | gzip -9")).current_dir(dir));
    fs::write(dir.join(format!("{name}.tar.gz")), &bytes).unwrap();
    (bytes, line(tool("nix-hash").args(["--type", "sha256"]).arg(&top)))
}

/// A git repository `dir/name` with one commit of a small tree (a `README` saying `text` and an
/// executable `src/build.sh`): its path, the commit id, and the NAR hash (hex, by `nix-hash`)
/// of the commit's tree as `git archive` exports it.
pub fn git_repo(dir: &Path, name: &str, text: &str) -> (std::path::PathBuf, String, String) {
    use crate::reference_tools::{git_in, line, output, tool};
    let repo = dir.join(name);
    fs::create_dir_all(repo.join("src")).unwrap();
    write_file(&repo.join("README"), format!("{text}: a git checkout\n").as_bytes(), 0o644);
    write_file(&repo.join("src/build.sh"), b"#!/bin/sh\nmake\n", 0o755);
    output(&mut git_in(&repo, &["init", "-q"]));
    output(&mut git_in(&repo, &["add", "."]));
    output(&mut git_in(&repo, &["commit", "-qm", "one"]));
    let commit = line(&mut git_in(&repo, &["rev-parse", "HEAD"]));
    let checkout = dir.join(format!("{name}-checkout"));
    fs::create_dir(&checkout).unwrap();
    output(std::process::Command::new("sh").arg("-c").arg(format!(
        "git -C {} archive HEAD | tar -x -C {}",
        repo.display(),
        checkout.display()
    )));
    let nar_hex = line(tool("nix-hash").args(["--type", "sha256"]).arg(&checkout));
    (repo, commit, nar_hex)
}
