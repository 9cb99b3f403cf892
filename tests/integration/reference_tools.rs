//! Running the binary under test and the reference tools it is compared with.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The `swh-bridge` binary under test.
pub fn bridge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_swh-bridge"))
}

/// A reference tool. Nix gets a configuration that never reaches a binary cache.
pub fn tool(name: &str) -> Command {
    let program = if name == "swh" { swh_program() } else { PathBuf::from(name) };
    let mut cmd = Command::new(program);
    cmd.env("NIX_CONFIG", "substituters =\nexperimental-features = nix-command");
    cmd
}

/// git in `repo`, with an author and a committer (tests commit as nobody in particular).
pub fn git_in(repo: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = tool("git");
    cmd.arg("-C").arg(repo).args(args);
    cmd.env("GIT_AUTHOR_NAME", "t").env("GIT_AUTHOR_EMAIL", "t@t").env("GIT_COMMITTER_NAME", "t");
    cmd.env("GIT_COMMITTER_EMAIL", "t@t");
    cmd
}

/// `swh` from PATH, else from the venv `scripts/test.sh` creates.
pub fn swh_program() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("swh"))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache"));
        cache.join("swh-bridge/venv/bin/swh")
    })
}

/// `nix hash to-sri` of a hex digest.
pub fn sri(algo: &str, hex: &str) -> String {
    line(tool("nix").args(["hash", "to-sri", "--type", algo, hex]))
}

/// Runs `cmd`, which must succeed, and returns its standard output.
pub fn output(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!("failed to run {:?} ({e}); scripts/test.sh installs the reference tools", cmd.get_program())
    });
    assert!(
        out.status.success(),
        "{:?} {:?} failed with {}:\n{}",
        cmd.get_program(),
        cmd.get_args().collect::<Vec<_>>(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `cmd` and returns its standard output as one trimmed line.
pub fn line(cmd: &mut Command) -> String {
    String::from_utf8(output(cmd)).expect("UTF-8 output").trim().to_owned()
}

/// Runs `cmd`, which must fail, and returns its standard error.
pub fn failure(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().expect("running the command");
    assert!(!out.status.success(), "{:?} succeeded but should have failed", cmd.get_args().collect::<Vec<_>>());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Adds `path` to the chroot store `chroot` as a fixed output (flat, or NAR-hashed if
/// `recursive`) and copies it into the binary cache at `cache` with `nix copy`; returns its
/// store path.
pub fn add_to_binary_cache(
    chroot: &std::path::Path,
    cache: &std::path::Path,
    path: &std::path::Path,
    recursive: bool,
) -> String {
    let mut add = tool("nix-store");
    add.arg("--store").arg(chroot).arg("--add-fixed");
    if recursive {
        add.arg("--recursive");
    }
    let store_path = line(add.arg("sha256").arg(path));
    output(
        tool("nix")
            .args(["copy", "--store"])
            .arg(chroot)
            .arg("--to")
            .arg(format!("file://{}", cache.display()))
            .arg(&store_path),
    );
    store_path
}
