//! Hostile and malformed input is refused with an error that says what is wrong, and leaves
//! nothing behind.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use swh_bridge::hashing::tree::TreeSink;
use swh_bridge::hashing::tree::disk::Restorer;
use swh_bridge::hashing::tree::memory::Node;
use swh_bridge::hashing::tree::{ExecutableRule, Limits, TreeError};
use swh_bridge::hashing::{HashAlgo, nar};

use crate::reference_tools::{line, tool};
use crate::trees::temp_dir;

/// Serialises NAR tokens: 8-byte little-endian length, bytes, zero padding to 8.
fn nar_of(tokens: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for token in tokens {
        out.extend_from_slice(&(token.len() as u64).to_le_bytes());
        out.extend_from_slice(token);
        out.resize(out.len().next_multiple_of(8), 0);
    }
    out
}

/// A directory NAR with one regular file per name, in the order given.
fn directory_with(names: &[&[u8]]) -> Vec<u8> {
    let mut tokens: Vec<&[u8]> = vec![b"nix-archive-1", b"(", b"type", b"directory"];
    for name in names {
        tokens.extend_from_slice(&[b"entry", b"(", b"name", name, b"node"]);
        tokens.extend_from_slice(&[b"(", b"type", b"regular", b"contents", b"x", b")", b")"]);
    }
    tokens.push(b")");
    nar_of(&tokens)
}

fn assert_refused(nar_bytes: &[u8], limits: Limits, expected: &str) {
    let tmp = temp_dir();
    let dest = tmp.path().join("out");
    let err = nar::restore(nar_bytes, &dest, None, limits).expect_err(expected);
    assert!(err.to_string().contains(expected), "expected `{expected}` in `{err}`");
    assert!(!dest.exists(), "a refused NAR left {}", dest.display());
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0, "a staging directory was left behind");
}

#[test]
fn hostile_names_are_refused() {
    for (name, reason) in [
        (&b".."[..], "is `.` or `..`"),
        (b".", "is `.` or `..`"),
        (b"a/b", "contains `/`"),
        (b"../../etc", "contains `/`"),
        (b"", "is empty"),
        (b"a\0b", "NUL"),
    ] {
        assert_refused(&directory_with(&[name]), Limits::default(), reason);
    }
}

#[test]
fn unsorted_and_duplicate_entries_are_refused() {
    assert_refused(&directory_with(&[b"b", b"a"]), Limits::default(), "out of order");
    assert_refused(&directory_with(&[b"a", b"a"]), Limits::default(), "appears twice");
    // Sorted by bytes, not by locale or case: `B` (0x42) before `a` (0x61) is fine.
    let tmp = temp_dir();
    nar::restore(&directory_with(&[b"B", b"a"])[..], &tmp.path().join("ok"), None, Limits::default()).unwrap();
}

#[test]
fn absurd_lengths_are_refused_without_allocating() {
    let mut nar_bytes = nar_of(&[b"nix-archive-1", b"(", b"type", b"directory", b"entry", b"(", b"name"]);
    nar_bytes.extend_from_slice(&(1u64 << 62).to_le_bytes());
    assert_refused(&nar_bytes, Limits::default(), "more than the 4096 allowed");

    let mut nar_bytes = nar_of(&[b"nix-archive-1", b"(", b"type", b"regular", b"contents"]);
    nar_bytes.extend_from_slice(&(1u64 << 50).to_le_bytes());
    assert_refused(&nar_bytes, Limits::default(), "limit of");
    assert_refused(&nar_bytes, Limits::UNLIMITED, "ends early");
}

#[test]
fn non_canonical_streams_are_refused() {
    let mut bad_padding = nar_of(&[b"nix-archive-1", b"(", b"type", b"regular", b"contents", b"abc", b")"]);
    let padding_at = bad_padding.len() - 16 - 5;
    bad_padding[padding_at] = 1;
    assert_refused(&bad_padding, Limits::default(), "non-zero padding");

    let mut trailing = nar_of(&[b"nix-archive-1", b"(", b"type", b"regular", b"contents", b"abc", b")"]);
    trailing.extend_from_slice(b"junk");
    assert_refused(&trailing, Limits::default(), "data follows the end");

    let truncated = nar_of(&[b"nix-archive-1", b"(", b"type", b"directory", b"entry"]);
    assert_refused(&truncated, Limits::default(), "ends early");

    assert_refused(&nar_of(&[b"nix-archive-2"]), Limits::default(), "expected the NAR magic");
    assert_refused(&nar_of(&[b"nix-archive-1", b"(", b"type", b"fifo", b")"]), Limits::default(), "unknown node type");
    let contents_first =
        nar_of(&[b"nix-archive-1", b"(", b"type", b"regular", b"contents", b"x", b"executable", b"", b")"]);
    assert_refused(&contents_first, Limits::default(), "`)` closing the file");
    let empty_target = nar_of(&[b"nix-archive-1", b"(", b"type", b"symlink", b"target", b"", b")"]);
    assert_refused(&empty_target, Limits::default(), "target is empty");
}

#[test]
fn too_many_nodes_are_refused() {
    let names: Vec<Vec<u8>> = (0..20).map(|i| format!("f{i:02}").into_bytes()).collect();
    let refs: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
    assert_refused(&directory_with(&refs), Limits { max_nodes: 10, ..Limits::UNLIMITED }, "limit of 10 files");
}

/// A raw tar member, built by hand so that it can hold what well-behaved tools refuse to write.
fn member(name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
    header.as_gnu_mut().unwrap().linkname[..link.len()].copy_from_slice(link);
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
    out
}

fn archive(members: &[Vec<u8>]) -> Vec<u8> {
    let mut out = members.concat();
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn tar_error(members: &[Vec<u8>], limits: Limits) -> TreeError {
    Node::from_tar(&archive(members)[..], limits, ExecutableRule::Owner).expect_err("the archive should be refused")
}

#[test]
fn hostile_tar_members_are_refused() {
    use tar::EntryType::{Block, Char, Fifo, Link, Regular, Symlink};
    let cases: Vec<(Vec<Vec<u8>>, &str)> = vec![
        (vec![member(b"../evil", Regular, b"", b"x")], "contains `..`"),
        (vec![member(b"ok/../../evil", Regular, b"", b"x")], "contains `..`"),
        (vec![member(b"/etc/passwd", Regular, b"", b"x")], "absolute"),
        (vec![member(b"link", Symlink, b"/etc", b""), member(b"link/passwd", Regular, b"", b"x")], "passes through"),
        (vec![member(b"hard", Link, b"missing", b"")], "not an earlier regular file"),
        (vec![member(b"dev", Char, b"", b"")], "devices and FIFOs"),
        (vec![member(b"blk", Block, b"", b"")], "devices and FIFOs"),
        (vec![member(b"pipe", Fifo, b"", b"")], "devices and FIFOs"),
        (vec![member(b"link", Symlink, b"", b"")], "target is empty"),
    ];
    for (members, reason) in cases {
        let err = tar_error(&members, Limits::default());
        assert!(err.to_string().contains(reason), "expected `{reason}` in `{err}`");
    }
}

#[test]
fn hostile_members_are_refused_by_the_replay_too() {
    use swh_bridge::hashing::nar::NarHasher;
    use swh_bridge::hashing::tree::tarball::replay_in_nar_order;
    use tar::EntryType::{Char, Directory, Link, Regular, Symlink};
    let top = || member(b"top/", Directory, b"", b"");
    let cases: Vec<(Vec<Vec<u8>>, Limits, &str)> = vec![
        (vec![top(), member(b"top/../evil", Regular, b"", b"x")], Limits::default(), "contains `..`"),
        (vec![top(), member(b"/top/evil", Regular, b"", b"x")], Limits::default(), "absolute"),
        (vec![top(), member(b"elsewhere/f", Regular, b"", b"x")], Limits::default(), "outside the top directory"),
        (vec![top(), member(b"top/dev", Char, b"", b"")], Limits::default(), "devices and FIFOs"),
        (vec![top(), member(b"top/link", Symlink, b"", b"")], Limits::default(), "target is empty"),
        (
            vec![top(), member(b"top/big", Regular, b"", &[0u8; 5000])],
            Limits { max_bytes: 4096, ..Limits::default() },
            "limit of 4096 bytes",
        ),
        // What a replay cannot do is out of order, for the caller to read the archive again.
        (
            vec![top(), member(b"top/b", Regular, b"", b""), member(b"top/a", Regular, b"", b"")],
            Limits::default(),
            "out of NAR order",
        ),
        (
            vec![top(), member(b"top/a", Regular, b"", b""), member(b"top/b", Link, b"top/a", b"")],
            Limits::default(),
            "out of NAR order",
        ),
        (vec![member(b"top/a", Regular, b"", b"")], Limits::default(), "out of NAR order"),
    ];
    for (members, limits, reason) in cases {
        let mut sink = NarHasher::new(HashAlgo::Sha256).unwrap();
        let err = replay_in_nar_order(&archive(&members)[..], b"top", limits, ExecutableRule::Owner, &mut sink)
            .expect_err("the archive should be refused");
        assert!(err.to_string().contains(reason), "expected `{reason}` in `{err}`");
    }
}

#[test]
fn tar_bombs_are_refused_before_reading() {
    let big = member(b"big", tar::EntryType::Regular, b"", &[0u8; 5000]);
    let err = tar_error(&[big], Limits { max_bytes: 4096, ..Limits::default() });
    assert!(err.to_string().contains("limit of 4096 bytes"), "{err}");

    let many: Vec<Vec<u8>> =
        (0..50).map(|i| member(format!("f{i}").as_bytes(), tar::EntryType::Regular, b"", b"")).collect();
    let err = tar_error(&many, Limits { max_nodes: 10, ..Limits::UNLIMITED });
    assert!(err.to_string().contains("limit of 10 files"), "{err}");
}

#[test]
fn tar_hard_links_and_repeats_hash_like_tar_extract() {
    use tar::EntryType::{Directory, Link, Regular};
    let members = [
        member(b"./dir/", Directory, b"", b""),
        member(b"./dir/a", Regular, b"", b"first"),
        member(b"./dir/a", Regular, b"", b"second"),
        member(b"./dir/", Directory, b"", b""),
        member(b"./hard", Link, b"./dir/a", b""),
    ];
    let bytes = archive(&members);
    let tmp = temp_dir();
    let extracted = tmp.path().join("x");
    fs::create_dir(&extracted).unwrap();
    let mut untar = tool("tar");
    untar.arg("-C").arg(&extracted).args(["-xf", "-"]).stdin(Stdio::piped());
    let mut child = untar.spawn().unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    assert!(child.wait().unwrap().success());

    let node = Node::from_tar(&bytes[..], Limits::default(), ExecutableRule::Any).unwrap();
    assert_eq!(node.nar_hash(HashAlgo::Sha256).to_sri(), line(tool("nix").args(["hash", "path"]).arg(&extracted)));
    assert_eq!(node.swhid().to_string(), line(tool("swh").args(["identify", "--no-filename"]).arg(&extracted)));
}

#[test]
fn deep_or_long_tar_paths_are_refused() {
    let deep: Vec<u8> = b"d/".repeat(600).into_iter().chain(*b"f").collect();
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(1);
    header.set_mode(0o644);
    let mut builder = tar::Builder::new(Vec::new());
    builder.append_data(&mut header, std::str::from_utf8(&deep).unwrap(), &b"x"[..]).unwrap();
    let bytes = builder.into_inner().unwrap();
    let err = Node::from_tar(&bytes[..], Limits::default(), ExecutableRule::Owner).unwrap_err();
    assert!(err.to_string().contains("limit of 512 nested directories"), "{err}");

    let long = "n".repeat(5000);
    let mut builder = tar::Builder::new(Vec::new());
    builder.append_data(&mut header, &long, &b"x"[..]).unwrap();
    let bytes = builder.into_inner().unwrap();
    let err = Node::from_tar(&bytes[..], Limits::default(), ExecutableRule::Owner).unwrap_err();
    assert!(err.to_string().contains("longer than 4096 bytes"), "{err}");

    let err =
        Node::from_tar(&bytes[..], Limits { max_bytes: 100, max_nodes: 1, ..Limits::default() }, ExecutableRule::Owner)
            .unwrap_err();
    assert!(err.to_string().contains("failed to read the archive"), "{err}");
}

#[test]
fn restorer_refuses_events_that_would_leave_the_tree() {
    let tmp = temp_dir();
    type Attempt = fn(&mut Restorer) -> Result<(), TreeError>;
    let attempts: [(&str, Attempt); 4] = [
        ("two entries open at once", |r| {
            r.directory_start()?;
            r.entry_start(b"a")?;
            r.entry_start(b"b")
        }),
        ("an entry inside a symlink", |r| {
            r.directory_start()?;
            r.entry_start(b"link")?;
            r.symlink(b"/tmp")?;
            r.entry_start(b"escape")
        }),
        ("two roots", |r| {
            r.symlink(b"x")?;
            r.directory_start()
        }),
        ("an entry in a file", |r| {
            r.file_start(false, 0)?;
            r.entry_start(b"x")
        }),
    ];
    for (i, (what, attempt)) in attempts.into_iter().enumerate() {
        let root = tmp.path().join(format!("r{i}"));
        let err = attempt(&mut Restorer::new(&root)).expect_err(what);
        assert!(err.to_string().starts_with("refusing "), "{what}: {err}");
    }
    assert!(!Path::new("/tmp/escape").exists());
}
