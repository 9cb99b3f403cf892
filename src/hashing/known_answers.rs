//! Known answers, made once by the reference tools (`scripts/known-answers.sh`, whose section
//! each block names) and recorded here, so that a machine without Nix or swh-model still checks
//! the encodings, the NAR and the SWHIDs against them. The live golden tests compare with the
//! tools themselves on generated trees.

use super::tree::memory::Node;
use super::{Encoding, Hash, HashAlgo, ObjectType, Swhid, swhid};

/// `scripts/known-answers.sh encodings`: the digests of "hello" and of nothing.
const ENCODINGS: [(&str, &str, &str); 8] = [
    ("5d41402abc4b2a76b9719d911017c592", "4jqlbi14cxf6wpcajbphm40hax", "md5-XUFAKrxLKna5cZ2REBfFkg=="),
    (
        "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d",
        "9m1skbnr5i43n3yypvda5s65vhfwdx5a",
        "sha1-qvTGHdzF6KLavt4PO0gs2a6pQ00=",
    ),
    (
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        "094qif9n4cq4fdg459qzbhg1c6wywawwaaivx0k0x8xhbyx4vwic",
        "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=",
    ),
    (
        "9b71d224bd62f3785d96d46ad3ea3d73319bfbc2890caadae2dff72519673ca72323c3d99ba5c11d7c7acc6e14b8c5da0c4663475c2e5c3adef46f73bcdec043",
        "11w1pmwfdpz9pisbhp5qiv38q6dmidq2ipcqykw3p0sb6yrqcij79rwcwcjbxyzwbdal349qbxrncbk7pmd6snljrfpiwv2pljd4wcv",
        "sha512-m3HSJL1i83hdltRq0+o9czGb+8KJDKra4t/3JRlnPKcjI8PZm6XBHXx6zG4UuMXaDEZjR1wuXDre9G9zvN7AQw==",
    ),
    ("d41d8cd98f00b204e9800998ecf8427e", "3y8bwfr609h3lh9ch0izcqq7fl", "md5-1B2M2Y8AsgTpgAmY7PhCfg=="),
    (
        "da39a3ee5e6b4b0d3255bfef95601890afd80709",
        "143xibwh31h9bvxzalr0sjvbbvpa6ffs",
        "sha1-2jmj7l5rSw0yVb/vlWAYkK/YBwk=",
    ),
    (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73",
        "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
    ),
    (
        "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
        "0zdl9zrg8r3i9c1g90lgg9ip5ijzv3yhz91i0zzn3r8ap9ws784gkp9dk9j3aglhgf1amqb0pj21mh7h1nxcl18akqvvf7ggqsy30yg",
        "sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==",
    ),
];

#[test]
fn encodings_are_the_ones_nix_prints() {
    for (hex, nix32, sri) in ENCODINGS {
        let hash = Hash::parse(sri, None).unwrap();
        assert_eq!((hash.to_hex(), hash.to_nix32(), hash.to_sri()), (hex.to_owned(), nix32.to_owned(), sri.to_owned()));
        let algo = hash.algo();
        assert_eq!(Hash::parse(hex, Some(algo)).unwrap(), hash, "{hex}");
        assert_eq!(Hash::parse(nix32, Some(algo)).unwrap(), hash, "{nix32}");
        assert_eq!(Hash::parse(&hash.encode(Encoding::Base64), Some(algo)).unwrap(), hash);
    }
}

/// The tree of `scripts/known-answers.sh tree`: `a/f` ("hello\n"), `a.b/empty`, an executable
/// `run`, and `link` → `a/f`. `a.b` sorts after `a` by bytes but before it in git's order.
fn small_tree() -> Node {
    let mut tree = Node::empty_directory();
    let file = |contents: &[u8], executable| Node::File { executable, contents: contents.to_vec() };
    tree.insert(b"a/f", file(b"hello\n", false)).unwrap();
    tree.insert(b"a.b/empty", file(b"", false)).unwrap();
    tree.insert(b"run", file(b"#!/bin/sh\n", true)).unwrap();
    tree.insert(b"link", Node::Symlink { target: b"a/f".to_vec() }).unwrap();
    tree
}

/// `nix-store --dump` of the small tree, base64.
const SMALL_TREE_NAR: &str = "DQAAAAAAAABuaXgtYXJjaGl2ZS0xAAAAAQAAAAAAAAAoAAAAAAAAAAQAAAAAAAAAdHlwZQAAAAAJAAAAAAAAAGRpcmVjdG9yeQAAAAAAAAAFAAAAAAAAAGVudHJ5AAAAAQAAAAAAAAAoAAAAAAAAAAQAAAAAAAAAbmFtZQAAAAABAAAAAAAAAGEAAAAAAAAABAAAAAAAAABub2RlAAAAAAEAAAAAAAAAKAAAAAAAAAAEAAAAAAAAAHR5cGUAAAAACQAAAAAAAABkaXJlY3RvcnkAAAAAAAAABQAAAAAAAABlbnRyeQAAAAEAAAAAAAAAKAAAAAAAAAAEAAAAAAAAAG5hbWUAAAAAAQAAAAAAAABmAAAAAAAAAAQAAAAAAAAAbm9kZQAAAAABAAAAAAAAACgAAAAAAAAABAAAAAAAAAB0eXBlAAAAAAcAAAAAAAAAcmVndWxhcgAIAAAAAAAAAGNvbnRlbnRzBgAAAAAAAABoZWxsbwoAAAEAAAAAAAAAKQAAAAAAAAABAAAAAAAAACkAAAAAAAAAAQAAAAAAAAApAAAAAAAAAAEAAAAAAAAAKQAAAAAAAAAFAAAAAAAAAGVudHJ5AAAAAQAAAAAAAAAoAAAAAAAAAAQAAAAAAAAAbmFtZQAAAAADAAAAAAAAAGEuYgAAAAAABAAAAAAAAABub2RlAAAAAAEAAAAAAAAAKAAAAAAAAAAEAAAAAAAAAHR5cGUAAAAACQAAAAAAAABkaXJlY3RvcnkAAAAAAAAABQAAAAAAAABlbnRyeQAAAAEAAAAAAAAAKAAAAAAAAAAEAAAAAAAAAG5hbWUAAAAABQAAAAAAAABlbXB0eQAAAAQAAAAAAAAAbm9kZQAAAAABAAAAAAAAACgAAAAAAAAABAAAAAAAAAB0eXBlAAAAAAcAAAAAAAAAcmVndWxhcgAIAAAAAAAAAGNvbnRlbnRzAAAAAAAAAAABAAAAAAAAACkAAAAAAAAAAQAAAAAAAAApAAAAAAAAAAEAAAAAAAAAKQAAAAAAAAABAAAAAAAAACkAAAAAAAAABQAAAAAAAABlbnRyeQAAAAEAAAAAAAAAKAAAAAAAAAAEAAAAAAAAAG5hbWUAAAAABAAAAAAAAABsaW5rAAAAAAQAAAAAAAAAbm9kZQAAAAABAAAAAAAAACgAAAAAAAAABAAAAAAAAAB0eXBlAAAAAAcAAAAAAAAAc3ltbGluawAGAAAAAAAAAHRhcmdldAAAAwAAAAAAAABhL2YAAAAAAAEAAAAAAAAAKQAAAAAAAAABAAAAAAAAACkAAAAAAAAABQAAAAAAAABlbnRyeQAAAAEAAAAAAAAAKAAAAAAAAAAEAAAAAAAAAG5hbWUAAAAAAwAAAAAAAABydW4AAAAAAAQAAAAAAAAAbm9kZQAAAAABAAAAAAAAACgAAAAAAAAABAAAAAAAAAB0eXBlAAAAAAcAAAAAAAAAcmVndWxhcgAKAAAAAAAAAGV4ZWN1dGFibGUAAAAAAAAAAAAAAAAAAAgAAAAAAAAAY29udGVudHMKAAAAAAAAACMhL2Jpbi9zaAoAAAAAAAABAAAAAAAAACkAAAAAAAAAAQAAAAAAAAApAAAAAAAAAAEAAAAAAAAAKQAAAAAAAAA=";

#[test]
fn the_small_tree_has_the_nar_and_swhids_the_tools_give() {
    let tree = small_tree();
    let mut nar = Vec::new();
    let mut writer = super::nar::NarWriter::new(&mut nar).unwrap();
    tree.visit(&mut writer).unwrap();
    assert_eq!(data_encoding::BASE64.encode(&nar), SMALL_TREE_NAR, "nix-store --dump");
    // nix-hash --type sha256 --base32
    assert_eq!(tree.nar_hash(HashAlgo::Sha256).to_nix32(), "17pbsj3lyc4lpjim21zvvkbdd62i9lvi9lnwv5j85wh2k8gzybjy");
    // swh identify
    assert_eq!(
        tree.swhid(),
        Swhid::from_hex(ObjectType::Directory, "78cdb788806f04841937e0064d52c86dd3b7390e").unwrap()
    );
    // git hash-object a/f
    assert_eq!(swhid::content_id(b"hello\n").hex(), "ce013625030ba8dba906f756967f9e9ca394464a");
    // And the NAR reads back into the same tree.
    let mut builder = super::tree::memory::NodeBuilder::new();
    super::nar::parse(&nar[..], &mut builder).unwrap();
    assert_eq!(builder.finish().unwrap(), tree);
}
