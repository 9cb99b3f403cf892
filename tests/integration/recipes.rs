//! Recipes on tarballs made by the real tools (GNU tar in each format; gzip, xz and bzip2 at
//! several settings; `git archive`; Python's tarfile), rebuilt from what GNU tar extracts,
//! compared byte for byte.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::local_archive::local_archive;
use crate::reference_tools::{bridge, failure, line, output, swh_program, tool};
use crate::trees::{TreeShape, make_tree, temp_dir};

/// How a test unpacks a file before rebuilding it from the tree.
#[derive(Clone, Copy)]
enum Unpack {
    /// `tar -xf`.
    GnuTar,
    /// `swh.core.tarball.uncompress`, SWH's own code (its loaders use it); the recipe's tree is
    /// checked against `swh identify` of the result.
    Swh,
}

/// Makes a recipe for `file`, unpacks `file`, rebuilds it from the tree, and checks the bytes;
/// returns the recipe's path.
fn round_trip_with(file: &Path, work: &Path, unpack: Unpack) -> PathBuf {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let recipe = work.join(format!("{name}.recipe"));
    let created = bridge().args(["recipe", "create"]).arg(file).arg("-o").arg(&recipe).output().unwrap();
    assert!(created.status.success(), "{name}: {}", String::from_utf8_lossy(&created.stderr));
    let extracted = work.join(format!("{name}.x"));
    match unpack {
        Unpack::GnuTar => {
            fs::create_dir(&extracted).unwrap();
            output(tool("tar").arg("-xf").arg(file).arg("-C").arg(&extracted));
        }
        Unpack::Swh => {
            let script = "import sys\nfrom swh.core.tarball import uncompress\nuncompress(sys.argv[1], sys.argv[2])";
            let python = swh_program().parent().unwrap().join("python");
            output(Command::new(python).arg("-c").arg(script).arg(file).arg(&extracted));
            let shown: serde_json::Value =
                serde_json::from_slice(&output(bridge().args(["recipe", "show", "--json"]).arg(&recipe))).unwrap();
            let identified = line(tool("swh").args(["identify", "--no-filename"]).arg(&extracted));
            assert_eq!(shown["tree"], identified.as_str(), "{name}: the recipe names another tree than SWH unpacks");
        }
    }
    let rebuilt = work.join(format!("{name}.rebuilt"));
    let mut apply = bridge();
    apply.args(["recipe", "apply"]).arg(&recipe).arg("--tree").arg(&extracted).arg("-o").arg(&rebuilt);
    let applied = apply.output().unwrap();
    assert!(applied.status.success(), "{name}: {}", String::from_utf8_lossy(&applied.stderr));
    assert!(fs::read(&rebuilt).unwrap() == fs::read(file).unwrap(), "{name} differs when rebuilt");
    recipe
}

fn round_trip(file: &Path, work: &Path) -> PathBuf {
    round_trip_with(file, work, Unpack::GnuTar)
}

fn sh(script: &str, dir: &Path) {
    output(Command::new("sh").arg("-c").arg(script).current_dir(dir));
}

#[test]
fn gnu_tar_gzip_xz_and_bzip2_tarballs_round_trip_in_every_format_and_level() {
    let tmp = temp_dir();
    make_tree(&tmp.path().join("pkg-1.0"), TreeShape { empty_dirs: true, non_utf8: true });
    // A name over 100 bytes: GNU's long-name member, pax's path record, ustar's prefix field.
    let long = tmp.path().join("pkg-1.0").join("l".repeat(60)).join("m".repeat(60));
    fs::create_dir_all(&long).unwrap();
    fs::write(long.join("file"), b"deep").unwrap();
    let mut made = Vec::new();
    for format in ["gnu", "oldgnu", "pax", "ustar"] {
        for level in ["-1", "-6", "-9"] {
            let name = format!("pkg-{format}{level}.tar.gz");
            sh(&format!("tar --format={format} -cf - pkg-1.0 | gzip {level} > {name}"), tmp.path());
            made.push(name);
        }
    }
    // gzip keeping the file name and mtime in its header, and a tarball in two gzip members.
    sh("tar -cf pkg.tar pkg-1.0 && gzip -k -9 pkg.tar && mv pkg.tar.gz named.tar.gz", tmp.path());
    sh("head -c 20480 pkg.tar | gzip > two.tar.gz && tail -c +20481 pkg.tar | gzip >> two.tar.gz", tmp.path());
    made.extend(["named.tar.gz".into(), "two.tar.gz".into(), "pkg.tar".into()]);
    // xz: presets, -e, the multithreaded encoder's blocks, another check; bzip2: block sizes, and
    // two streams.
    for (name, command) in [
        ("xz0.tar.xz", "xz -0"),
        ("xz6.tar.xz", "xz -6"),
        ("xz9e.tar.xz", "xz -9e"),
        ("xzmt.tar.xz", "xz -T2 --block-size=1MiB"),
        ("xzsha.tar.xz", "xz -C sha256"),
        ("bz1.tar.bz2", "bzip2 -1"),
        ("bz9.tar.bz2", "bzip2 -9"),
    ] {
        sh(&format!("{command} -c pkg.tar > {name}"), tmp.path());
        made.push(name.into());
    }
    sh("head -c 20480 pkg.tar | bzip2 > two.tar.bz2 && tail -c +20481 pkg.tar | bzip2 >> two.tar.bz2", tmp.path());
    made.push("two.tar.bz2".into());
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    for name in made {
        round_trip(&tmp.path().join(name), &work);
    }
}

#[test]
fn git_archive_and_python_tarballs_round_trip() {
    let tmp = temp_dir();
    let repo = tmp.path().join("repo");
    make_tree(&repo, TreeShape { empty_dirs: false, non_utf8: false });
    sh(
        "git init -q . && git add -A && git -c user.name=t -c user.email=t@e -c commit.gpgsign=false commit -qm x \
         && git archive --format=tar.gz --prefix=repo-1.0/ -o ../git.tar.gz HEAD",
        &repo,
    );
    let python = swh_program().parent().unwrap().join("python");
    let script = "import sys, tarfile\nwith tarfile.open(sys.argv[1], 'w:gz') as t: t.add(sys.argv[2], arcname='pkg')";
    output(Command::new(python).arg("-c").arg(script).arg(tmp.path().join("python.tar.gz")).arg(&repo));
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    for name in ["git.tar.gz", "python.tar.gz"] {
        round_trip(&tmp.path().join(name), &work);
    }
}

#[test]
fn the_recipe_names_the_tree_the_directory_loader_archives() {
    let tmp = temp_dir();
    make_tree(&tmp.path().join("pkg-2.0"), TreeShape { empty_dirs: true, non_utf8: false });
    fs::remove_file(tmp.path().join("pkg-2.0/big.bin")).unwrap();
    sh("tar -cf - pkg-2.0 | gzip -9 > pkg-2.0.tar.gz && zip -q -r -y pkg-2.0.zip pkg-2.0", tmp.path());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = swh_bridge::archive::ArchiveClient::new(swh_bridge::archive::ClientConfig::for_api(
        local_archive().api.parse().unwrap(),
    ));
    for name in ["pkg-2.0.tar.gz", "pkg-2.0.zip"] {
        let file = tmp.path().join(name);
        let recipe = tmp.path().join(format!("{name}.recipe"));
        output(bridge().args(["recipe", "create"]).arg(&file).arg("-o").arg(&recipe));
        let shown: serde_json::Value =
            serde_json::from_slice(&output(bridge().args(["recipe", "show", "--json"]).arg(&recipe))).unwrap();
        let bytes = fs::read(&file).unwrap();
        let hex = line(tool("sha256sum").arg(&file)).split_whitespace().next().unwrap().to_owned();
        local_archive().load("directory", &format!("recipe-{name}"), &bytes, &[("sha256", &hex)], None);
        let hash = swh_bridge::hashing::Hash::parse(&hex, Some(swh_bridge::hashing::HashAlgo::Sha256)).unwrap();
        let extid = runtime.block_on(client.extid(swh_bridge::archive::ExtIdKind::Checksum, &hash)).unwrap();
        assert_eq!(shown["tree"], extid.target.to_string(), "{name}");
    }
}

#[test]
fn damaged_recipes_and_wrong_trees_are_refused_with_the_reason() {
    let tmp = temp_dir();
    make_tree(&tmp.path().join("pkg"), TreeShape { empty_dirs: false, non_utf8: false });
    sh("tar -czf pkg.tar.gz pkg", tmp.path());
    let recipe = round_trip(&tmp.path().join("pkg.tar.gz"), tmp.path());

    let mut damaged = fs::read(&recipe).unwrap();
    let last = damaged.len() - 10;
    damaged[last] ^= 0xff;
    fs::write(tmp.path().join("damaged.recipe"), &damaged).unwrap();
    let stderr = failure(bridge().args(["recipe", "show"]).arg(tmp.path().join("damaged.recipe")));
    assert!(stderr.contains("the recipe is damaged"), "{stderr}");

    fs::write(tmp.path().join("pkg.tar.gz.x/pkg/x755"), b"changed").unwrap();
    let stderr = failure(
        bridge()
            .args(["recipe", "apply"])
            .arg(&recipe)
            .arg("--tree")
            .arg(tmp.path().join("pkg.tar.gz.x"))
            .arg("-o")
            .arg(tmp.path().join("out")),
    );
    assert!(stderr.contains("but the recipe needs swh:1:dir:"), "{stderr}");
    assert!(!tmp.path().join("out").exists());

    let stderr = failure(bridge().args(["recipe", "create"]).arg(&recipe).arg("-o").arg(tmp.path().join("r")));
    assert!(stderr.contains("neither a zip file nor a tar archive"), "{stderr}");
    // Formats that are recognised but not modelled say so.
    fs::write(tmp.path().join("pkg.tar.lz"), b"LZIP\x01 rest of an lzip member").unwrap();
    let stderr = failure(
        bridge().args(["recipe", "create"]).arg(tmp.path().join("pkg.tar.lz")).arg("-o").arg(tmp.path().join("r")),
    );
    assert!(stderr.contains("unsupported: lzip"), "{stderr}");
    // A damaged zstd frame is named as such.
    fs::write(tmp.path().join("pkg.tar.zst"), b"\x28\xb5\x2f\xfd rest of a zstd frame").unwrap();
    let stderr = failure(
        bridge().args(["recipe", "create"]).arg(tmp.path().join("pkg.tar.zst")).arg("-o").arg(tmp.path().join("r")),
    );
    assert!(stderr.contains("unsupported: zstd: a frame is damaged"), "{stderr}");
}

#[test]
fn gzip_files_deflated_by_miniz_oxide_at_every_level_are_kept_as_its_level() {
    // What flate2's default backend wrote before 2025 (cargo's older .crate files): a gzip
    // header as flate2 writes it (OS 255), miniz_oxide's raw deflate, CRC-32 and length.
    let tmp = temp_dir();
    make_tree(&tmp.path().join("pkg-1.0"), TreeShape { empty_dirs: true, non_utf8: false });
    sh("tar -cf pkg.tar pkg-1.0", tmp.path());
    let plain = fs::read(tmp.path().join("pkg.tar")).unwrap();
    let mut crc = flate2::Crc::new();
    crc.update(&plain);
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    for level in 1..=10u8 {
        let mut file = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        file.extend(miniz_oxide::deflate::compress_to_vec(&plain, level));
        file.extend(crc.sum().to_le_bytes());
        file.extend((plain.len() as u32).to_le_bytes());
        let path = tmp.path().join(format!("pkg-miniz{level}.tar.gz"));
        fs::write(&path, file).unwrap();
        let encoders = deflate_encoders(&round_trip(&path, &work));
        let encoders = encoders.as_object().unwrap();
        assert!(encoders.keys().all(|name| name.starts_with("miniz_oxide -")), "level {level}: {encoders:?}");
    }
}

/// The deflate encoders a recipe's `recipe show --json` names, with how many streams each wrote.
fn deflate_encoders(recipe: &Path) -> serde_json::Value {
    let shown: serde_json::Value =
        serde_json::from_slice(&output(bridge().args(["recipe", "show", "--json"]).arg(recipe))).unwrap();
    shown["deflate_encoders"].clone()
}

#[test]
fn deflate_streams_no_candidate_models_are_recorded_and_rebuilt_bit_for_bit() {
    // zopfli, 7-Zip and pigz -11 (zopfli's algorithm) parse otherwise than any zlib-family
    // level; zlib-ng (through Python's zlib-ng package, 2.x) writes what cargo linked against a
    // distribution's zlib-ng-compat did. None is a candidate encoder; preflate refuses most.
    let tmp = temp_dir();
    make_tree(&tmp.path().join("pkg-1.0"), TreeShape { empty_dirs: true, non_utf8: false });
    // Text to find matches in, instead of the tree's 3 MB of noise (zopfli takes seconds a megabyte).
    let sources = concat!(env!("CARGO_MANIFEST_DIR"), "/src/recipes");
    sh(&format!("rm pkg-1.0/big.bin && cp -r {sources} pkg-1.0/ && tar -cf pkg.tar pkg-1.0"), tmp.path());
    let python = swh_program().parent().unwrap().join("python");
    let mut made = vec![
        ("zopfli.tar.gz", "zopfli -c pkg.tar".to_owned()),
        ("7z.tar.gz", "7z a -tgzip -mx=9 -so pkg.tar.gz pkg.tar".to_owned()),
        ("pigz11.tar.gz", "pigz -11 -c pkg.tar".to_owned()),
        // Written to a pipe: each entry with a data descriptor.
        ("7z.zip", "7z a -tzip -mx=9 -so pkg.zip pkg-1.0".to_owned()),
    ];
    for level in 1..=9 {
        made.push(("", format!("{} -m zlib_ng.gzip_ng -{level} -c pkg.tar", python.display())));
    }
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    for (i, (name, command)) in made.iter().enumerate() {
        let name = if name.is_empty() { format!("zlib-ng{}.tar.gz", i - 3) } else { name.to_string() };
        sh(&format!("{command} > {name}"), tmp.path());
        let file = tmp.path().join(&name);
        let recipe = if name.ends_with(".zip") { zip_round_trip(&file, &work) } else { round_trip(&file, &work) };
        let encoders = deflate_encoders(&recipe);
        // The stated bound of a recorded parse, with room: well under pristine-tar's delta,
        // which for such streams is larger than the file.
        let (recipe_len, file_len) = (fs::metadata(&recipe).unwrap().len(), fs::metadata(&file).unwrap().len());
        assert!(recipe_len * 3 < file_len, "{name}: a recipe of {recipe_len} bytes for {file_len} ({encoders})");
        // 7-Zip deflates a zip's small entries as zlib -6 would.
        if name.ends_with(".tar.gz") && !name.starts_with("zlib-ng") {
            assert!(encoders.get("recorded parse").is_some(), "{name}: {encoders}");
        }
    }
}

#[test]
fn ruby_gems_round_trip_as_the_tar_swh_unpacks() {
    let tmp = temp_dir();
    let src = tmp.path().join("hello");
    fs::create_dir_all(src.join("lib")).unwrap();
    fs::write(src.join("lib/hello.rb"), "module Hello\n  def self.hi = \"hi\"\nend\n").unwrap();
    let spec = "Gem::Specification.new do |s|\n  s.name = 'hello'\n  s.version = '1.0.0'\n  s.summary = 'hello'\n  \
                s.authors = ['t']\n  s.files = ['lib/hello.rb']\n  s.license = 'MIT'\nend\n";
    fs::write(src.join("hello.gemspec"), spec).unwrap();
    output(tool("gem").args(["build", "hello.gemspec"]).current_dir(&src));
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    round_trip_with(&src.join("hello-1.0.0.gem"), &work, Unpack::Swh);
}

#[test]
fn zstd_tarballs_from_the_zstd_command_round_trip() {
    let tmp = temp_dir();
    make_tree(&tmp.path().join("pkg-1.0"), TreeShape { empty_dirs: true, non_utf8: false });
    // Large enough for more than one block and a window smaller than the content.
    sh("tar -cf pkg.tar pkg-1.0 && head -c 3000000 /dev/urandom | base64 > pkg-1.0/big.txt", tmp.path());
    sh("tar -cf big.tar pkg-1.0", tmp.path());
    let mut made = Vec::new();
    for (name, command) in [
        ("z1.tar.zst", "zstd -q -1 -c pkg.tar"),
        ("z3.tar.zst", "zstd -q -3 -c pkg.tar"),
        ("z19.tar.zst", "zstd -q -19 -c pkg.tar"),
        ("z22.tar.zst", "zstd -q --ultra -22 -c pkg.tar"),
        ("zfast.tar.zst", "zstd -q --fast=4 -c pkg.tar"),
        ("znocheck.tar.zst", "zstd -q --no-check -c pkg.tar"),
        // From standard input: no content size in the header.
        ("zstdin.tar.zst", "zstd -q -c < pkg.tar"),
        ("zbig.tar.zst", "zstd -q -c big.tar"),
        ("zbig-t0.tar.zst", "zstd -q -T0 -6 -c big.tar"),
        ("zbig-long.tar.zst", "zstd -q --long -c big.tar"),
        ("zbig-single.tar.zst", "zstd -q --single-thread -c big.tar"),
    ] {
        sh(&format!("{command} > {name}"), tmp.path());
        made.push(name);
    }
    // Two frames, one after the other.
    sh("head -c 20480 pkg.tar | zstd -q > two.tar.zst && tail -c +20481 pkg.tar | zstd -q >> two.tar.zst", tmp.path());
    made.push("two.tar.zst");
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    for name in made {
        round_trip(&tmp.path().join(name), &work);
    }
    // The tree is the one SWH's loaders unpack.
    fs::create_dir(work.join("swh")).unwrap();
    round_trip_with(&tmp.path().join("z19.tar.zst"), &work.join("swh"), Unpack::Swh);
}

#[test]
fn lzip_tarballs_from_lzip_and_plzip_round_trip() {
    let tmp = temp_dir();
    make_tree(&tmp.path().join("pkg-1.0"), TreeShape { empty_dirs: true, non_utf8: false });
    // big.tar holds the tree's 3 MB: plzip cuts it into several members.
    sh("tar -cf big.tar pkg-1.0 && rm pkg-1.0/big.bin && tar -cf pkg.tar pkg-1.0", tmp.path());
    let made = [
        ("l0.tar.lz", "lzip.lzip -0 -c pkg.tar"),
        ("l6.tar.lz", "lzip.lzip -6 -c pkg.tar"),
        ("l9.tar.lz", "lzip.lzip -9 -c pkg.tar"),
        ("lstdin.tar.lz", "lzip.lzip -c < pkg.tar"),
        ("lm100.tar.lz", "lzip.lzip -m 100 -s 64KiB -c pkg.tar"),
        ("p6.tar.lz", "plzip -6 -c pkg.tar"),
        ("p0.tar.lz", "plzip -0 -c pkg.tar"),
        ("p0-members.tar.lz", "plzip -0 -c big.tar"),
        ("p6-members.tar.lz", "plzip -6 -B 64KiB -n 2 -c big.tar"),
    ];
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    for (name, command) in made {
        sh(&format!("{command} > {name}"), tmp.path());
        let recipe = round_trip(&tmp.path().join(name), &work);
        let shown: serde_json::Value =
            serde_json::from_slice(&output(bridge().args(["recipe", "show", "--json"]).arg(&recipe))).unwrap();
        assert_eq!(shown["compression"], "lzip", "{name}: {shown}");
        if name.contains("members") {
            assert!(shown["compressed_members"].as_u64().unwrap() > 1, "{name}: {shown}");
        }
    }
    fs::create_dir(work.join("swh")).unwrap();
    round_trip_with(&tmp.path().join("l9.tar.lz"), &work.join("swh"), Unpack::Swh);
    // Data after the last member is refused, with the reason.
    sh("cat l6.tar.lz > trailing.tar.lz && echo garbage >> trailing.tar.lz", tmp.path());
    let mut create = bridge();
    create
        .args(["recipe", "create"])
        .arg(tmp.path().join("trailing.tar.lz"))
        .arg("-o")
        .arg(work.join("trailing.recipe"));
    let refused = create.output().unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("lzip: data after the last member"), "{stderr}");
}

/// The format version byte of a recipe file (after its magic line).
fn format_version(recipe: &Path) -> u8 {
    let bytes = fs::read(recipe).unwrap();
    bytes[b"swh-bridge recipe\n".len()]
}

#[test]
fn bzip2_tarballs_from_lbzip2_and_pbzip2_round_trip() {
    let tmp = temp_dir();
    make_tree(&tmp.path().join("pkg-1.0"), TreeShape { empty_dirs: true, non_utf8: false });
    // big.tar (3 MB of the tree, 1 MB of noise, and a 2 MB run of zeros: runs longer than 255
    // bytes) fills several blocks at every block size.
    sh("head -c 2000000 /dev/zero > pkg-1.0/zeros && head -c 1000000 /dev/urandom > pkg-1.0/noise", tmp.path());
    sh(
        "tar -cf big.tar pkg-1.0 && rm pkg-1.0/big.bin pkg-1.0/zeros pkg-1.0/noise && tar -cf pkg.tar pkg-1.0",
        tmp.path(),
    );
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    // lbzip2 writes blocks and tables of its own: recorded streams (format version 4).
    for (name, command) in [
        ("lb9.tar.bz2", "lbzip2 -9 -c pkg.tar"),
        ("lb1.tar.bz2", "lbzip2 -1 -c pkg.tar"),
        ("lbstdin.tar.bz2", "lbzip2 -c < pkg.tar"),
        ("lbbig9.tar.bz2", "lbzip2 -9 -n 2 -c big.tar"),
        ("lbbig1.tar.bz2", "lbzip2 -1 -c big.tar"),
    ] {
        sh(&format!("{command} > {name}"), tmp.path());
        let recipe = round_trip(&tmp.path().join(name), &work);
        assert_eq!(format_version(&recipe), 4, "{name}");
        let shown: serde_json::Value =
            serde_json::from_slice(&output(bridge().args(["recipe", "show", "--json"]).arg(&recipe))).unwrap();
        assert_eq!(shown["compression"], "bzip2", "{name}: {shown}");
        if name.contains("big") {
            // Per block, its header (tables and selectors); the rest comes from the tree.
            let size = fs::metadata(tmp.path().join(name)).unwrap().len();
            assert!(shown["recipe_bytes"].as_u64().unwrap() * 20 < size, "{name}: {shown}");
        }
    }
    // pbzip2 runs libbzip2 on each chunk: one stream per chunk, kept as levels (version 2).
    for (name, command) in [("pb9.tar.bz2", "pbzip2 -9 -c big.tar"), ("pb1.tar.bz2", "pbzip2 -1 -b3 -p2 -c big.tar")] {
        sh(&format!("{command} > {name}"), tmp.path());
        let recipe = round_trip(&tmp.path().join(name), &work);
        assert_eq!(format_version(&recipe), 2, "{name}");
        let shown: serde_json::Value =
            serde_json::from_slice(&output(bridge().args(["recipe", "show", "--json"]).arg(&recipe))).unwrap();
        assert!(shown["compressed_members"].as_u64().unwrap() > 1, "{name}: {shown}");
    }
    fs::create_dir(work.join("swh")).unwrap();
    round_trip_with(&tmp.path().join("lb9.tar.bz2"), &work.join("swh"), Unpack::Swh);
}

#[test]
fn tar_z_files_from_ncompress_round_trip() {
    let tmp = temp_dir();
    // The tree's 3 MB of noise makes the ratio fall once the table is full: CLEAR codes.
    make_tree(&tmp.path().join("pkg-1.0"), TreeShape { empty_dirs: true, non_utf8: false });
    sh("tar -cf big.tar pkg-1.0 && rm pkg-1.0/big.bin && tar -cf pkg.tar pkg-1.0", tmp.path());
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    for (name, command) in [
        ("c16.tar.Z", "compress -c pkg.tar"),
        ("c12.tar.Z", "compress -b12 -c big.tar"),
        ("cbig.tar.Z", "compress -c big.tar"),
        ("cpipe.tar.Z", "cat big.tar | compress -c"),
    ] {
        sh(&format!("{command} > {name}"), tmp.path());
        round_trip(&tmp.path().join(name), &work);
    }
    fs::create_dir(work.join("swh")).unwrap();
    round_trip_with(&tmp.path().join("cbig.tar.Z"), &work.join("swh"), Unpack::Swh);
}

#[test]
fn fetch_rebuilds_a_tarball_the_archive_keeps_unpacked_from_its_recipe() {
    let tmp = temp_dir();
    make_tree(&tmp.path().join("rebuilt-3.0"), TreeShape { empty_dirs: true, non_utf8: false });
    fs::remove_file(tmp.path().join("rebuilt-3.0/big.bin")).unwrap();
    sh("tar -cf - rebuilt-3.0 | gzip -9 > rebuilt-3.0.tar.gz", tmp.path());
    let tarball = tmp.path().join("rebuilt-3.0.tar.gz");
    let bytes = fs::read(&tarball).unwrap();
    let hex = line(tool("sha256sum").arg(&tarball)).split_whitespace().next().unwrap().to_owned();
    local_archive().load("directory", "rebuilt-3.0.tar.gz", &bytes, &[("sha256", &hex)], None);
    // Upstream is gone.
    fs::remove_file(local_archive().files_dir.join("rebuilt-3.0.tar.gz")).unwrap();

    let store = tmp.path().join("recipes");
    output(bridge().args(["recipe", "create"]).arg(&tarball).arg("--store").arg(&store));
    let fetch = |hash: &str, out: &Path, recipes: bool| {
        let mut cmd = bridge();
        cmd.args(["fetch", hash, "--no-cache", "--archive", &local_archive().api]).arg("-o").arg(out);
        cmd.arg("--url").arg(format!("{}rebuilt-3.0.tar.gz", local_archive().files_url));
        if recipes {
            cmd.arg("--recipes").arg(&store);
        }
        cmd.output().unwrap()
    };

    let without = fetch(&format!("sha256:{hex}"), &tmp.path().join("without.tar.gz"), false);
    assert!(String::from_utf8_lossy(&without.stderr).contains("recipe"));

    let out = tmp.path().join("fetched.tar.gz");
    let result = fetch(&format!("sha256:{hex}"), &out, true);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert!(stderr.contains("+ recipe"), "{stderr}");
    assert!(fs::read(&out).unwrap() == bytes, "the rebuilt tarball differs");

    // By its sha512 too: no ExtID has it, the store's alias leads to the same tree.
    let sha512 = line(tool("nix").args(["hash", "file", "--type", "sha512"]).arg(&tarball));
    let out = tmp.path().join("by-sha512.tar.gz");
    let result = fetch(&sha512, &out, true);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    assert!(fs::read(&out).unwrap() == bytes);
}

#[test]
fn hostile_tarballs_get_no_recipe() {
    let tmp = temp_dir();
    fs::create_dir(tmp.path().join("a")).unwrap();
    fs::write(tmp.path().join("a/f"), b"x").unwrap();
    // A member that climbs out of the extraction root.
    sh("tar -cf evil.tar --transform 's,^a/f,../evil,' a/f && gzip -9 evil.tar", tmp.path());
    let stderr = failure(
        bridge().args(["recipe", "create"]).arg(tmp.path().join("evil.tar.gz")).arg("-o").arg(tmp.path().join("r")),
    );
    assert!(stderr.contains("contains `..`"), "{stderr}");
    assert!(!tmp.path().join("r").exists());
}

/// A zip's round trip through SWH's unpacking.
fn zip_round_trip(file: &Path, work: &Path) -> PathBuf {
    round_trip_with(file, work, Unpack::Swh)
}

/// A Python block written in a Rust string: the first line starts right after the quote, the
/// others carry the Rust indentation too.
fn dedent(block: &str) -> String {
    let mut lines = block.lines();
    let first = lines.next().unwrap_or_default().trim();
    let rest: Vec<&str> = lines.collect();
    let indent = rest.iter().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).min();
    let rest = rest.iter().map(|l| l.get(indent.unwrap_or(0)..).unwrap_or_default());
    std::iter::once(first).chain(rest).collect::<Vec<_>>().join("\n")
}

/// Writes zip files with Python's zipfile: `script` gets `z`, an open `ZipFile` on `path`, and
/// `pkg`, the tree's directory.
fn python_zip(path: &Path, tree: &Path, script: &str) {
    let program = format!("import sys, os, zipfile\npath, pkg = sys.argv[1], sys.argv[2]\n{}", dedent(script));
    output(Command::new(swh_program().parent().unwrap().join("python")).arg("-c").arg(program).arg(path).arg(tree));
}

#[test]
fn zip_files_from_info_zip_and_python_round_trip_and_name_the_tree_swh_unpacks() {
    let tmp = temp_dir();
    // Info-ZIP stores non-UTF-8 names as they are, which Python reads as code page 437.
    make_tree(&tmp.path().join("pkg"), TreeShape { empty_dirs: true, non_utf8: true });
    let mut made = Vec::new();
    for (name, options) in [
        ("store.zip", "-0"),
        ("fast.zip", "-1"),
        ("default.zip", "-6"),
        ("best.zip", "-9"),
        ("noextra.zip", "-9 -X"),
        ("zip64.zip", "-fz"),
    ] {
        sh(&format!("zip -q -r -y {options} {name} pkg"), tmp.path());
        made.push(name.to_owned());
    }
    // Written to a pipe, Info-ZIP cannot seek back: data descriptors follow the data (it cannot
    // store symlinks to a pipe, so regular files only).
    sh("find pkg -type f | zip -q - -@ | cat > streamed.zip", tmp.path());
    // A self-extractor's stub before the zip, with the offsets left as they were and adjusted.
    sh("head -c 1000 /dev/urandom > stub && cat stub default.zip > stubbed.zip", tmp.path());
    sh("cp stubbed.zip adjusted.zip && zip -q -A adjusted.zip", tmp.path());
    made.extend(["streamed.zip", "stubbed.zip", "adjusted.zip"].map(String::from));
    // Python, as wheel builders use it: deflate at several levels, stored entries, directory
    // entries, a comment, zip64 records, a duplicate name (the last one wins on unpacking), and
    // an unseekable output (data descriptors).
    // Python writes only UTF-8 names.
    let pkg = tmp.path().join("utf8/pkg");
    make_tree(&pkg, TreeShape { empty_dirs: true, non_utf8: false });
    for (name, script) in [
        ("py-deflate.zip", "z = zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED)"),
        ("py-level1.zip", "z = zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED, compresslevel=1)"),
        ("py-level9.zip", "z = zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED, compresslevel=9)"),
        ("py-stored.zip", "z = zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED)"),
        (
            "py-piped.zip",
            "class Pipe:
                def __init__(self, f): self.f = f
                def write(self, b): return self.f.write(b)
                def flush(self): self.f.flush()
            z = zipfile.ZipFile(Pipe(open(path, 'wb')), 'w', zipfile.ZIP_DEFLATED)",
        ),
    ] {
        let body = "for root, dirs, files in sorted(os.walk(pkg)):
            rel = os.path.relpath(root, os.path.dirname(pkg))
            z.write(root, rel)
            for f in sorted(files):
                p = os.path.join(root, f)
                if os.path.exists(p): z.write(p, os.path.join(rel, f))
            z.comment = b'made by a test'
        with z.open('pkg/forced64.txt', 'w', force_zip64=True) as f: f.write(b'zip64 extra field')
        z.writestr('pkg/twice.txt', 'first')
        z.writestr('pkg/twice.txt', 'second, kept')
        z.close()";
        python_zip(&tmp.path().join(name), &pkg, &format!("{}\n{}", dedent(script), dedent(body)));
        made.push(name.to_owned());
    }
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    for name in made {
        zip_round_trip(&tmp.path().join(name), &work);
    }
}

#[test]
fn zips_from_python_need_no_deflate_corrections() {
    // zlib (which Python's zipfile uses, so most wheels) at any level is rebuilt by level alone.
    // Info-ZIP's own deflate matches zlib only at low levels, and its entries otherwise take
    // preflate corrections (the round-trip test covers them).
    let tmp = temp_dir();
    make_tree(&tmp.path().join("pkg"), TreeShape { empty_dirs: false, non_utf8: false });
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    for level in 1..=9 {
        let name = format!("py{level}.zip");
        let script = format!(
            "z = zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED, compresslevel={level})
            for root, dirs, files in sorted(os.walk(pkg)):
                for f in sorted(files):
                    p = os.path.join(root, f)
                    if os.path.isfile(p) and not os.path.islink(p): z.write(p, os.path.relpath(p, pkg))
            z.close()"
        );
        python_zip(&tmp.path().join(&name), &tmp.path().join("pkg"), &script);
        zip_round_trip(&tmp.path().join(&name), &work);
        let shown: serde_json::Value = serde_json::from_slice(&output(
            bridge().args(["recipe", "show", "--json"]).arg(work.join(format!("{name}.recipe"))),
        ))
        .unwrap();
        assert_eq!(shown["deflate_corrections"], 0, "{name}: {shown}");
        assert!(shown["deflate_encoders"].as_object().unwrap().keys().all(|k| k.starts_with("zlib -")), "{shown}");
    }
}

#[test]
fn hostile_zips_are_unpacked_as_swh_does_or_refused() {
    let tmp = temp_dir();
    // Names that climb out are skipped on unpacking (as Python's shutil does), never written.
    let pkg = tmp.path().join("pkg");
    fs::create_dir(&pkg).unwrap();
    python_zip(
        &tmp.path().join("climbing.zip"),
        &pkg,
        "z = zipfile.ZipFile(path, 'w')
        z.writestr('ok.txt', 'fine')
        z.writestr('../evil.txt', 'climbs')
        z.writestr('/abs.txt', 'absolute')
        z.close()",
    );
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    zip_round_trip(&tmp.path().join("climbing.zip"), &work);
    assert!(!tmp.path().join("evil.txt").exists() && !work.join("evil.txt").exists());
    // A bomb: the entry inflates past the size it declares.
    python_zip(
        &tmp.path().join("bomb.zip"),
        &pkg,
        "z = zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED)
        z.writestr('zeros', b'\\0' * 10_000_000)
        z.close()
        data = bytearray(open(path, 'rb').read())
        cd = data.rfind(b'PK\\x01\\x02')
        data[22:26] = (1000).to_bytes(4, 'little')
        data[cd + 24:cd + 28] = (1000).to_bytes(4, 'little')
        open(path, 'wb').write(data)",
    );
    let stderr = failure(
        bridge().args(["recipe", "create"]).arg(tmp.path().join("bomb.zip")).arg("-o").arg(tmp.path().join("r")),
    );
    assert!(stderr.contains("does not match its size and CRC"), "{stderr}");
    assert!(!tmp.path().join("r").exists());
}

#[test]
fn the_bridge_index_leads_a_nar_hash_without_an_extid_to_the_archived_tree() {
    let tmp = temp_dir();
    make_tree(&tmp.path().join("bridged-4.0"), TreeShape { empty_dirs: true, non_utf8: false });
    fs::remove_file(tmp.path().join("bridged-4.0/big.bin")).unwrap();
    // Other tests archive trees of the same shape, some with NAR ExtIDs: this one must differ.
    fs::write(tmp.path().join("bridged-4.0/only-here"), b"the bridge index test\n").unwrap();
    sh("tar -cf - bridged-4.0 | xz -6 > bridged-4.0.tar.xz", tmp.path());
    let tarball = tmp.path().join("bridged-4.0.tar.xz");
    let bytes = fs::read(&tarball).unwrap();
    let hex = line(tool("sha256sum").arg(&tarball)).split_whitespace().next().unwrap().to_owned();
    // The loader records the flat hash only: no ExtID names the unpacked tree's NAR hash.
    local_archive().load("directory", "bridged-4.0.tar.xz", &bytes, &[("sha256", &hex)], None);
    let store = tmp.path().join("recipes");
    output(bridge().args(["recipe", "create"]).arg(&tarball).arg("--store").arg(&store));

    // What fetchzip would pin: the NAR hash of the top folder, as Nix computes it.
    fs::create_dir(tmp.path().join("x")).unwrap();
    output(tool("tar").arg("-xf").arg(&tarball).arg("-C").arg(tmp.path().join("x")));
    let nar_hash = |path: &Path| line(tool("nix-hash").args(["--type", "sha256", "--base32"]).arg(path));
    let nar = format!("sha256:{}", nar_hash(&tmp.path().join("x/bridged-4.0")));
    let lookup = |key: &str, nar: bool| {
        let mut cmd = bridge();
        cmd.args(["recipe", "lookup", key, "--recipes"]).arg(&store);
        if nar {
            cmd.arg("--nar");
        }
        serde_json::from_slice::<serde_json::Value>(&output(&mut cmd)).unwrap()
    };
    let by_nar = lookup(&nar, true);
    assert_eq!(by_nar["flat"]["sha256"], hex.as_str());
    assert_eq!(by_nar["unpacked"]["top"], "bridged-4.0");
    let md5 = line(tool("md5sum").arg(&tarball)).split_whitespace().next().unwrap().to_owned();
    assert_eq!(lookup(&format!("md5:{md5}"), false), by_nar);
    assert_eq!(lookup(by_nar["tree"].as_str().unwrap(), false), by_nar);

    let fetch = |recipes: bool, out: &Path| {
        let mut cmd = bridge();
        cmd.args(["fetch", &nar, "--mode", "recursive", "--no-cache", "--archive", &local_archive().api]);
        cmd.arg("-o").arg(out);
        if recipes {
            cmd.arg("--recipes").arg(&store);
        }
        cmd.output().unwrap()
    };
    let without = fetch(false, &tmp.path().join("without"));
    assert!(!without.status.success(), "{}", String::from_utf8_lossy(&without.stderr));
    let out = tmp.path().join("fetched");
    let result = fetch(true, &out);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert!(stderr.contains("the bridge index leads to swh:1:dir:"), "{stderr}");
    assert_eq!(format!("sha256:{}", nar_hash(&out)), nar);
}

#[test]
fn recipes_of_format_version_1_still_apply() {
    // Made by swh-bridge 0cc69bf (format version 1) from tarballs made by GNU tar, gzip and xz.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recipes-v1");
    let tmp = temp_dir();
    for name in ["hello-1.0.tar.gz", "hello-1.0.tar.xz"] {
        let recipe = fixtures.join(format!("{name}.recipe"));
        assert_eq!(fs::read(&recipe).unwrap()[18], 1, "{name}: a version 1 recipe");
        let tree = tmp.path().join(format!("{name}.x"));
        fs::create_dir(&tree).unwrap();
        output(tool("tar").arg("-xf").arg(fixtures.join(name)).arg("-C").arg(&tree));
        let rebuilt = tmp.path().join(name);
        output(bridge().args(["recipe", "apply"]).arg(&recipe).arg("--tree").arg(&tree).arg("-o").arg(&rebuilt));
        assert!(fs::read(&rebuilt).unwrap() == fs::read(fixtures.join(name)).unwrap(), "{name} differs");
    }
}

#[test]
fn crates_published_with_zlib_rs_are_kept_as_its_level() {
    // A crate this project builds with, as crates.io serves it (cargo downloaded it to build):
    // recent cargo deflates .crate files with zlib-rs, which preflate cannot model.
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let cached = fs::read_dir(cargo_home.join("registry/cache"))
        .unwrap()
        .map(|index| index.unwrap().path().join("anyhow-1.0.105.crate"))
        .find(|path| path.exists())
        .expect("cargo's cache holds anyhow 1.0.105, a dependency of this project");
    let tmp = temp_dir();
    let file = tmp.path().join("anyhow-1.0.105.crate.gz");
    fs::copy(&cached, &file).unwrap();
    let recipe = round_trip(&file, tmp.path());
    let shown: serde_json::Value =
        serde_json::from_slice(&output(bridge().args(["recipe", "show", "--json"]).arg(&recipe))).unwrap();
    assert_eq!(shown["deflate_encoders"], serde_json::json!({ "zlib-rs -9": 1 }), "{shown}");
}
