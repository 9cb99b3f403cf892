//! Hashes and NARs compared with the reference tools on generated trees.

use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Stdio;

use swh_bridge::hashing::nar::NarHasher;
use swh_bridge::hashing::swhid_hasher::SwhidHasher;
use swh_bridge::hashing::tree::ExecutableRule;
use swh_bridge::hashing::tree::disk;
use swh_bridge::hashing::tree::disk::WalkOptions;
use swh_bridge::hashing::tree::memory::Node;
use swh_bridge::hashing::tree::{Limits, Tee, TreeError};
use swh_bridge::hashing::{HashAlgo, nar, tree_hasher};

use crate::reference_tools::{bridge, line, output, tool};
use crate::trees::{TreeShape, make_tree, regular_files, temp_dir};

const WITH_EMPTY_DIRS: TreeShape = TreeShape { empty_dirs: true, non_utf8: true };

#[test]
fn nar_dump_is_nix_store_dump_byte_for_byte() {
    let tmp = temp_dir();
    let root = tmp.path().join("tree");
    make_tree(&root, WITH_EMPTY_DIRS);
    let reference = output(tool("nix-store").arg("--dump").arg(&root));

    let mut ours = Vec::new();
    nar::dump_path(&root, &mut ours).unwrap();
    assert!(ours == reference, "library NAR differs from nix-store --dump");
    assert!(output(bridge().args(["nar", "dump"]).arg(&root)) == reference, "CLI NAR differs from nix-store --dump");

    // Roots that are not directories.
    for single in ["x755", "r600", "empty", "link-dangling", "big.bin"] {
        let path = root.join(single);
        let mut ours = Vec::new();
        nar::dump_path(&path, &mut ours).unwrap();
        assert!(ours == output(tool("nix-store").arg("--dump").arg(&path)), "NAR of {single} differs");
    }
}

#[test]
fn nar_hash_matches_nix_hash_for_every_algorithm_and_encoding() {
    let tmp = temp_dir();
    let root = tmp.path().join("tree");
    make_tree(&root, WITH_EMPTY_DIRS);
    for path in [root.clone(), root.join("x744"), root.join("link-relative")] {
        for algo in ["md5", "sha1", "sha256", "sha512"] {
            // nix-hash prints hex unless told otherwise (2.8 has no --base16).
            for (flags, format) in [(&[][..], "hex"), (&["--base32"][..], "nix32")] {
                let reference = line(tool("nix-hash").args(["--type", algo]).args(flags).arg(&path));
                let ours = line(bridge().args(["hash", "path", "--algo", algo, "--format", format]).arg(&path));
                assert_eq!(ours, reference, "{algo} {format} of {}", path.display());
            }
        }
    }
}

#[test]
fn nar_hash_matches_nix_hash_path_in_every_format() {
    let tmp = temp_dir();
    let root = tmp.path().join("tree");
    make_tree(&root, WITH_EMPTY_DIRS);
    for algo in ["sha256", "sha512", "sha1"] {
        for (flag, format) in [("--sri", "sri"), ("--base64", "base64"), ("--base32", "nix32"), ("--base16", "hex")] {
            let reference = line(tool("nix").args(["hash", "path", "--type", algo, flag]).arg(&root));
            let ours = line(bridge().args(["hash", "path", "--algo", algo, "--format", format]).arg(&root));
            assert_eq!(ours, reference, "{algo} {format}");
        }
    }
    assert_eq!(line(bridge().args(["hash", "path"]).arg(&root)), line(tool("nix").args(["hash", "path"]).arg(&root)));
}

#[test]
fn flat_hash_matches_nix_hash_flat_and_nix_hash_file() {
    let tmp = temp_dir();
    let root = tmp.path().join("tree");
    make_tree(&root, WITH_EMPTY_DIRS);
    for file in ["big.bin", "empty", "x654"] {
        let path = root.join(file);
        for algo in ["md5", "sha1", "sha256", "sha512"] {
            for (flags, format) in [(&[][..], "hex"), (&["--base32"][..], "nix32")] {
                let reference = line(tool("nix-hash").args(["--flat", "--type", algo]).args(flags).arg(&path));
                let ours = line(bridge().args(["hash", "file", "--algo", algo, "--format", format]).arg(&path));
                assert_eq!(ours, reference, "{algo} {format} of {file}");
            }
            let reference = line(tool("nix").args(["hash", "file", "--type", algo]).arg(&path));
            assert_eq!(line(bridge().args(["hash", "file", "--algo", algo]).arg(&path)), reference);
        }
    }
}

#[test]
fn convert_matches_nix_hash_to() {
    let tmp = temp_dir();
    let file = tmp.path().join("f");
    fs::write(&file, b"some bytes to hash\n").unwrap();
    for algo in ["md5", "sha1", "sha256", "sha512"] {
        let hex = line(tool("nix-hash").args(["--flat", "--type", algo]).arg(&file));
        let nix32 = line(tool("nix-hash").args(["--to-base32", "--type", algo, &hex]));
        let sri = line(tool("nix").args(["hash", "to-sri", "--type", algo, &hex]));
        for input in [&hex, &nix32, &sri] {
            for (to, nix_verb) in
                [("sri", "to-sri"), ("nix32", "to-base32"), ("hex", "to-base16"), ("base64", "to-base64")]
            {
                let reference = line(tool("nix").args(["hash", nix_verb, "--type", algo, input]));
                let ours = line(bridge().args(["hash", "convert", "--to", to, "--algo", algo, input]));
                assert_eq!(ours, reference, "{input} {to}");
            }
        }
        // Nix reads base64 leniently: no padding in SRI, unused trailing bits set.
        let unpadded = sri.trim_end_matches('=');
        // The last digit's lowest bit is unused for every algorithm here: flip it.
        const DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let last = unpadded.len() - 1;
        let value = DIGITS.iter().position(|&d| d == unpadded.as_bytes()[last]).unwrap();
        let sloppy = format!("{}{}{}", &unpadded[..last], DIGITS[value ^ 1] as char, &sri[unpadded.len()..]);
        assert_ne!(sloppy, sri);
        for input in [unpadded, sloppy.as_str()] {
            let reference = line(tool("nix").args(["hash", "to-base16", input]));
            assert_eq!(line(bridge().args(["hash", "convert", "--to", "hex", input])), reference, "{input}");
        }
        // SRI and prefixed forms carry their algorithm.
        let prefixed = format!("{algo}:{nix32}");
        assert_eq!(line(bridge().args(["hash", "convert", "--to", "hex", &sri])), hex);
        assert_eq!(line(bridge().args(["hash", "convert", "--to", "sri", &prefixed])), sri);
    }
}

#[test]
fn directory_swhid_matches_swh_identify() {
    let tmp = temp_dir();
    let root = tmp.path().join("tree");
    make_tree(&root, WITH_EMPTY_DIRS);
    let reference = line(tool("swh").args(["identify", "--no-filename"]).arg(&root));
    let ours = line(bridge().args(["hash", "path", "--type", "swhid", "--any-exec-bit"]).arg(&root));
    assert_eq!(ours, reference);

    for file in ["big.bin", "empty", "x711"] {
        let path = root.join(file);
        let reference = line(tool("swh").args(["identify", "--no-filename"]).arg(&path));
        assert_eq!(line(bridge().args(["hash", "file", "--type", "swhid"]).arg(&path)), reference, "{file}");
        assert_eq!(line(bridge().args(["hash", "path", "--type", "swhid"]).arg(&path)), reference, "{file}");
    }
}

/// git's tree id for `root`, which must hold no empty directory (git cannot record one).
fn git_write_tree(root: &Path, scratch: &Path) -> String {
    let git_dir = scratch.join("git");
    output(tool("git").args(["init", "-q", "--bare"]).arg(&git_dir));
    let git = || {
        let mut cmd = tool("git");
        cmd.arg("--git-dir").arg(&git_dir).arg("--work-tree").arg(root);
        cmd.args(["-c", "core.fileMode=true", "-c", "core.symlinks=true"]);
        cmd
    };
    output(git().args(["add", "-A", "."]));
    line(git().arg("write-tree"))
}

#[test]
fn directory_swhid_matches_git_write_tree() {
    let tmp = temp_dir();
    let root = tmp.path().join("tree");
    make_tree(&root, TreeShape { empty_dirs: false, non_utf8: true });
    let tree = git_write_tree(&root, tmp.path());
    let ours = line(bridge().args(["hash", "path", "--type", "swhid"]).arg(&root));
    assert_eq!(ours, format!("swh:1:dir:{tree}"));

    // swh-model counts any execute bit, git only the owner's: the 0654 file tells them apart.
    let swh = line(tool("swh").args(["identify", "--no-filename"]).arg(&root));
    assert_ne!(swh, ours, "the tree has a 0654 file, which git and swh-model classify differently");
    let any_bit = tree_hasher::swhid(&root, &WalkOptions { executable: ExecutableRule::Any }).unwrap();
    assert_eq!(any_bit.to_string(), swh);
}

#[test]
fn empty_directory_is_gits_empty_tree() {
    let tmp = temp_dir();
    let empty_tree = line(tool("git").args(["hash-object", "-t", "tree", "/dev/null"]));
    let ours = line(bridge().args(["hash", "path", "--type", "swhid"]).arg(tmp.path()));
    assert_eq!(ours, format!("swh:1:dir:{empty_tree}"));
}

#[test]
fn one_pass_yields_nar_hash_swhid_and_every_content_id() {
    let tmp = temp_dir();
    let root = tmp.path().join("tree");
    make_tree(&root, TreeShape { empty_dirs: false, non_utf8: true });
    let hashes = tree_hasher::hash_tree(&root, HashAlgo::Sha256).unwrap();

    assert_eq!(hashes.nar.to_nix32(), line(tool("nix-hash").args(["--type", "sha256", "--base32"]).arg(&root)));
    assert_eq!(hashes.swhid.to_string(), format!("swh:1:dir:{}", git_write_tree(&root, tmp.path())));

    let files = regular_files(&root);
    let mut git = tool("git");
    git.arg("hash-object").arg("--").args(files.iter().map(|(_, p)| p));
    let git_ids = String::from_utf8(output(&mut git)).unwrap();
    let ours: Vec<(Vec<u8>, String)> = hashes
        .contents
        .iter()
        .filter(|c| c.mode != swh_bridge::hashing::swhid::GitMode::Symlink)
        .map(|c| (c.path.clone(), c.swhid.hex()))
        .collect();
    let expected: Vec<(Vec<u8>, String)> =
        files.iter().map(|(rel, _)| rel.clone()).zip(git_ids.lines().map(str::to_owned)).collect();
    let mut ours_sorted = ours;
    ours_sorted.sort();
    assert_eq!(ours_sorted, expected);

    let symlink = hashes.contents.iter().find(|c| c.path == b"link-dangling").expect("the symlink is listed");
    let mut git = tool("git");
    git.args(["hash-object", "--stdin"]).stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = git.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"../no/such/target").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), symlink.swhid.hex());

    // A sink that declines large files (no worker) is fed them by the Tee, from the same descriptor.
    let mut sink = Tee::new(NarHasher::new(HashAlgo::Sha256).unwrap(), SwhidHasher::new());
    disk::walk(&root, &WalkOptions::nix(), &mut sink).unwrap();
    let (nar_hasher, swhid_hasher) = sink.into_inner();
    assert_eq!(nar_hasher.finish().unwrap(), hashes.nar);
    assert_eq!(swhid_hasher.finish().unwrap().0, hashes.swhid);

    let json: serde_json::Value =
        serde_json::from_slice(&output(bridge().args(["hash", "path", "--type", "all", "--json"]).arg(&root))).unwrap();
    assert_eq!(json["nar"], hashes.nar.to_sri());
    assert_eq!(json["swhid"], hashes.swhid.to_string());
    let latin1 = json["contents"].as_array().unwrap().iter().find(|c| c["path"] == "caf\u{fffd}").unwrap();
    assert_eq!(latin1["path_base64"], data_encoding::BASE64.encode(b"caf\xe9"));
}

#[test]
fn restore_round_trips_with_nix_store() {
    let tmp = temp_dir();
    let root = tmp.path().join("tree");
    make_tree(&root, WITH_EMPTY_DIRS);
    let reference = output(tool("nix-store").arg("--dump").arg(&root));
    let nar_hash = line(tool("nix").args(["hash", "path"]).arg(&root));

    // Nix's NAR restored by us, then dumped by Nix.
    let ours = tmp.path().join("restored-by-us");
    let mut restore = bridge();
    restore.args(["nar", "restore", "--expect", &nar_hash]).arg(&ours).stdin(Stdio::piped());
    let mut child = restore.spawn().unwrap();
    child.stdin.take().unwrap().write_all(&reference).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(output(tool("nix-store").arg("--dump").arg(&ours)) == reference);

    // Our NAR restored by Nix.
    let theirs = tmp.path().join("restored-by-nix");
    let mut nix = tool("nix-store");
    nix.arg("--restore").arg(&theirs).stdin(Stdio::piped());
    let mut child = nix.spawn().unwrap();
    let mut dumped = Vec::new();
    nar::dump_path(&root, &mut dumped).unwrap();
    child.stdin.take().unwrap().write_all(&dumped).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(output(tool("nix-store").arg("--dump").arg(&theirs)) == reference);

    // A wrong expected hash leaves nothing behind.
    let refused = tmp.path().join("refused");
    let wrong = line(tool("nix").args(["hash", "path"]).arg(root.join("a")));
    let err = nar::restore(&reference[..], &refused, Some(&wrong.parse().unwrap()), Limits::default()).unwrap_err();
    assert!(err.to_string().contains("hash mismatch"), "{err}");
    assert!(!refused.exists());
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 3, "no staging directory is left behind");
}

#[test]
fn tar_members_hash_like_the_extracted_tree() {
    let tmp = temp_dir();
    let root = tmp.path().join("tree");
    make_tree(&root, WITH_EMPTY_DIRS);
    let reference = output(tool("nix-store").arg("--dump").arg(&root));
    let nar_hash = line(tool("nix").args(["hash", "path"]).arg(&root));
    for format in ["gnu", "oldgnu", "pax"] {
        let archive =
            output(tool("tar").arg("-C").arg(&root).arg(format!("--format={format}")).args(["-cf", "-", "."]));
        let node = Node::from_tar(&archive[..], Limits::default(), ExecutableRule::Owner).unwrap();
        let mut ours = Vec::new();
        node.visit(&mut nar::NarWriter::new(&mut ours).unwrap()).unwrap();
        assert!(ours == reference, "NAR of the tar members ({format}) differs from nix-store --dump of the tree");
        assert_eq!(node.nar_hash(HashAlgo::Sha256).to_sri(), nar_hash);

        // What SWH archives for a tarball: the extracted tree, as swh-model sees it.
        let extracted = tmp.path().join(format!("extracted-{format}"));
        fs::create_dir(&extracted).unwrap();
        let mut untar = tool("tar");
        untar.arg("-C").arg(&extracted).args(["-xf", "-"]).stdin(Stdio::piped());
        let mut child = untar.spawn().unwrap();
        child.stdin.take().unwrap().write_all(&archive).unwrap();
        assert!(child.wait().unwrap().success());
        let identified = line(tool("swh").args(["identify", "--no-filename"]).arg(&extracted));
        let any_bit = Node::from_tar(&archive[..], Limits::default(), ExecutableRule::Any).unwrap();
        assert_eq!(any_bit.swhid().to_string(), identified, "{format}");
    }
}

#[test]
fn a_tar_sorted_by_name_replays_as_nix_store_dump() {
    use swh_bridge::hashing::tree::tarball::replay_in_nar_order;
    let tmp = temp_dir();
    let top = tmp.path().join("top");
    make_tree(&top, WITH_EMPTY_DIRS);
    let reference = output(tool("nix-store").arg("--dump").arg(&top));
    for format in ["gnu", "pax"] {
        // GNU tar's --sort=name orders each directory's entries by their bytes, depth first:
        // NAR order.
        let archive = output(tool("tar").arg("-C").arg(tmp.path()).arg(format!("--format={format}")).args([
            "--sort=name",
            "-cf",
            "-",
            "top",
        ]));
        let mut ours = Vec::new();
        let mut writer = nar::NarWriter::new(&mut ours).unwrap();
        replay_in_nar_order(&archive[..], b"top", Limits::default(), ExecutableRule::Owner, &mut writer).unwrap();
        assert!(ours == reference, "the replayed NAR ({format}) differs from nix-store --dump");
    }

    // Out of NAR order, it stops and says so, rather than hash a NAR out of order.
    let listing = output(tool("find").arg("top").current_dir(tmp.path()));
    let mut members: Vec<&[u8]> = listing.split(|&b| b == b'\n').filter(|m| !m.is_empty()).collect();
    members.sort();
    members[1..].reverse();
    fs::write(tmp.path().join("members"), members.join(&b'\n')).unwrap();
    let unsorted = output(
        tool("tar")
            .arg("-C")
            .arg(tmp.path())
            .args(["--no-recursion", "-cf", "-", "-T"])
            .arg(tmp.path().join("members")),
    );
    let result = replay_in_nar_order(
        &unsorted[..],
        b"top",
        Limits::default(),
        ExecutableRule::Owner,
        &mut NarHasher::new(HashAlgo::Sha256).unwrap(),
    );
    assert!(matches!(result, Err(TreeError::NotInNarOrder { .. })), "{result:?}");
}

#[test]
fn file_over_four_gib_hashes_like_nix_and_git() {
    let tmp = temp_dir();
    let root = tmp.path().join("tree");
    fs::create_dir(&root).unwrap();
    let big = root.join("sparse");
    let file = fs::File::create(&big).unwrap();
    let size = (4u64 << 30) + 4097;
    file.set_len(size).unwrap();
    use std::os::unix::fs::FileExt;
    file.write_all_at(b"not only zeros", (4u64 << 30) + 1000).unwrap();
    drop(file);

    let reference = line(tool("nix-hash").args(["--type", "sha256", "--base32"]).arg(&root));
    let hashes = tree_hasher::hash_tree(&root, HashAlgo::Sha256).unwrap();
    assert_eq!(hashes.nar.to_nix32(), reference);
    let git = line(tool("git").args(["hash-object", "--"]).arg(&big));
    assert_eq!(hashes.contents[0].swhid.hex(), git);
    assert_eq!(hashes.contents[0].path.as_slice(), big.file_name().unwrap().as_bytes());
}

#[test]
fn a_failing_walk_stops_the_hashing_threads() {
    // A large file queued for the worker threads, then a FIFO that fails the walk: the error
    // comes back (and the threads are told to stop) instead of the walk hanging or hashing on.
    let tmp = temp_dir();
    let root = tmp.path().join("tree");
    fs::create_dir(&root).unwrap();
    fs::File::create(root.join("a-large")).unwrap().set_len(1 << 30).unwrap();
    output(tool("mkfifo").arg(root.join("b-fifo")));
    for result in [
        tree_hasher::hash_tree(&root, HashAlgo::Sha256).map(|_| ()),
        tree_hasher::nar_hash(&root, HashAlgo::Sha256).map(|_| ()),
    ] {
        let err = result.unwrap_err().to_string();
        assert!(err.contains("b-fifo") && err.contains("FIFO"), "{err}");
    }
}

#[test]
fn special_files_are_an_error_naming_the_path() {
    let tmp = temp_dir();
    let fifo_dir = tmp.path().join("with-fifo");
    fs::create_dir(&fifo_dir).unwrap();
    output(tool("mkfifo").arg(fifo_dir.join("pipe")));
    let err = tree_hasher::nar_hash(&fifo_dir, HashAlgo::Sha256).unwrap_err().to_string();
    assert!(err.contains("is a FIFO") && err.contains("with-fifo/pipe"), "{err}");

    let socket_dir = tmp.path().join("with-socket");
    fs::create_dir(&socket_dir).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(socket_dir.join("sock")).unwrap();
    let stderr = crate::reference_tools::failure(bridge().args(["hash", "path", "--type", "all"]).arg(&socket_dir));
    assert!(stderr.contains("is a socket") && stderr.contains("with-socket/sock"), "{stderr}");
}
