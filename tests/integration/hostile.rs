//! Hostile and malformed input is refused with an error that says what is wrong, and leaves
//! nothing behind.

use std::fs;

use swh_bridge::hashing::nar;
use swh_bridge::hashing::tree::memory::Node;
use swh_bridge::hashing::tree::{ExecutableRule, Limits, TreeError};

use crate::util::temp_dir;

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
fn tar_hard_links_and_repeats_behave_like_tar_extract() {
    use tar::EntryType::{Directory, Link, Regular};
    let members = [
        member(b"./dir/", Directory, b"", b""),
        member(b"./dir/a", Regular, b"", b"first"),
        member(b"./dir/a", Regular, b"", b"second"),
        member(b"./dir/", Directory, b"", b""),
        member(b"./hard", Link, b"./dir/a", b""),
    ];
    let node = Node::from_tar(&archive(&members)[..], Limits::default(), ExecutableRule::Owner).unwrap();
    let file = |contents: &[u8]| Node::File { executable: false, contents: contents.to_vec() };
    assert_eq!(node.get(b"dir/a"), Some(&file(b"second")));
    assert_eq!(node.get(b"hard"), Some(&file(b"second")));
}
