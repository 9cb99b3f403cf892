//! The archive client against a real local archive filled by SWH's real loaders: what the
//! fallback fetcher will rely on, checked against the reference tools.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use swh_bridge::archive::model::EntryKind;
use swh_bridge::archive::{ApiError, ArchiveClient, ClientConfig, ContentKey, ExtIdKind};
use swh_bridge::hashing::swhid::content_id;
use swh_bridge::hashing::{Hash, HashAlgo};

use crate::local_archive::local_archive;
use crate::reference_tools::{line, output, tool};
use crate::trees::{TreeShape, make_tree, regular_files, sha256_hex, temp_dir};

fn client() -> ArchiveClient {
    ArchiveClient::new(ClientConfig::for_api(local_archive().api.parse().unwrap()))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn a_flat_file_loaded_as_content_is_found_by_sha256_and_extid() {
    let archive = local_archive();
    let bytes = b"a flat file, archived as a content\n".to_vec();
    let hex = sha256_hex(&bytes);
    archive.load("content", "flat-file.txt", &bytes, &[("sha256", &hex)], None);

    let client = client();
    let rt = runtime();
    let hash = Hash::parse(&hex, Some(HashAlgo::Sha256)).unwrap();
    let key = ContentKey::of_hash(&hash).unwrap();
    let info = rt.block_on(client.content(&key)).unwrap();
    assert_eq!(info.length, Some(bytes.len() as u64));
    assert_eq!(info.checksums["sha1_git"], content_id(&bytes).hex());
    let raw = rt.block_on(async { client.content_raw(&key).await.unwrap().bytes().await.unwrap() });
    assert_eq!(raw.as_ref(), bytes.as_slice());
    let extid = rt.block_on(client.extid(ExtIdKind::Checksum, &hash)).unwrap();
    assert_eq!(extid.target, content_id(&bytes));

    let missing = Hash::parse(&sha256_hex(b"never archived"), Some(HashAlgo::Sha256)).unwrap();
    let missing = ContentKey::of_hash(&missing).unwrap();
    assert!(matches!(rt.block_on(client.content(&missing)), Err(ApiError::NotFound { .. })));
}

#[test]
fn tarballs_are_archived_unpacked_under_nar_and_flat_extids() {
    let archive = local_archive();
    let tmp = temp_dir();
    let top = tmp.path().join("pkg-1.0");
    make_tree(&top, TreeShape { empty_dirs: true, non_utf8: false });
    fs::remove_file(top.join("big.bin")).unwrap();
    let tarball = output(tool("tar").arg("-C").arg(tmp.path()).args(["-czf", "-", "pkg-1.0"]));
    let flat_hex = sha256_hex(&tarball);
    let nar_hex = line(tool("nix-hash").args(["--type", "sha256"]).arg(&top));

    // fetchzip style: the NAR hash of the top folder's contents.
    archive.load("directory", "pkg-nar.tar.gz", &tarball, &[("sha256", &nar_hex)], Some("nar"));
    // fetchurl style: the tarball's own hash.
    archive.load("directory", "pkg-flat.tar.gz", &tarball, &[("sha256", &flat_hex)], None);

    // The loaders normalise modes before hashing (0755 if the owner may execute, else 0644),
    // while `swh identify` counts any execute bit: identify a normalised copy.
    let normalised = tmp.path().join("normalised");
    fs::create_dir(&normalised).unwrap();
    output(tool("cp").arg("-a").arg(&top).arg(&normalised));
    let norm_top = normalised.join("pkg-1.0");
    for (_, path) in regular_files(&norm_top) {
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        let normal = if mode & 0o100 != 0 { 0o755 } else { 0o644 };
        fs::set_permissions(&path, fs::Permissions::from_mode(normal)).unwrap();
    }

    let client = client();
    let rt = runtime();
    let sha256 = |hex: &str| Hash::parse(hex, Some(HashAlgo::Sha256)).unwrap();
    let nar = rt.block_on(client.extid(ExtIdKind::Nar, &sha256(&nar_hex))).unwrap();
    let top_id = line(tool("swh").args(["identify", "--no-filename"]).arg(&norm_top));
    assert_eq!(nar.target.to_string(), top_id, "nar-sha256 points to the unpacked top folder");
    let ours = line(crate::reference_tools::bridge().args(["hash", "path", "--type", "swhid"]).arg(&top));
    assert_eq!(nar.target.to_string(), ours, "swh-bridge's default (git's owner-bit rule) is what the archive stores");

    let flat = rt.block_on(client.extid(ExtIdKind::Checksum, &sha256(&flat_hex))).unwrap();
    let root_id = line(tool("swh").args(["identify", "--no-filename"]).arg(&normalised));
    assert_eq!(
        flat.target.to_string(),
        root_id,
        "checksum-sha256 points to the extraction root, around the top folder"
    );

    let listing = rt.block_on(client.directory(&flat.target)).unwrap();
    assert_eq!(listing.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["pkg-1.0"]);
    assert_eq!(listing[0].kind, EntryKind::Dir);
}

fn fetch_with_cache(args: &[&str], out: &std::path::Path, data_dir: &std::path::Path) -> std::process::Output {
    let mut cmd = crate::reference_tools::bridge();
    cmd.arg("fetch").args(args).arg("-o").arg(out).arg("--archive").arg(&local_archive().api);
    cmd.arg("--data-dir").arg(data_dir);
    cmd.output().unwrap()
}

#[test]
fn fetch_recovers_files_and_trees_and_explains_what_it_cannot() {
    let archive = local_archive();
    let tmp = temp_dir();
    let data_dir = tmp.path().join("data");
    let fetch = |args: &[&str], out: &std::path::Path| fetch_with_cache(args, out, &data_dir);

    // A flat file archived as a content.
    let bytes = b"recover me byte for byte\n".to_vec();
    let hex = sha256_hex(&bytes);
    archive.load("content", "recover-me.txt", &bytes, &[("sha256", &hex)], None);
    let sri = line(tool("nix").args(["hash", "to-sri", "--type", "sha256", &hex]));
    let out = tmp.path().join("recover-me.txt");
    let result = fetch(&[&sri], &out);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    assert_eq!(fs::read(&out).unwrap(), bytes);
    assert!(String::from_utf8_lossy(&result.stderr).contains("from archive swh:1:cnt:"));
    // Again: from the cache, without a request; and a damaged cache entry is fetched anew.
    let again = tmp.path().join("again.txt");
    let result = fetch(&[&sri], &again);
    assert!(
        String::from_utf8_lossy(&result.stderr).contains("from cache to"),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(String::from_utf8_lossy(&result.stderr).contains("(0 archive requests)"));
    assert_eq!(fs::read(&again).unwrap(), bytes);
    fs::write(data_dir.join("cache/sha256").join(&hex), b"damaged").unwrap();
    let third = tmp.path().join("third.txt");
    let result = fetch(&[&sri], &third);
    assert!(
        String::from_utf8_lossy(&result.stderr).contains("from archive"),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert_eq!(fs::read(&third).unwrap(), bytes);

    // A fetchzip-style tree, archived by the directory loader with its NAR hash.
    let top = tmp.path().join("tree-2.0");
    make_tree(&top, TreeShape { empty_dirs: true, non_utf8: false });
    let tarball = output(tool("tar").arg("-C").arg(tmp.path()).args(["-czf", "-", "tree-2.0"]));
    let nar_hex = line(tool("nix-hash").args(["--type", "sha256"]).arg(&top));
    archive.load("directory", "tree-2.0.tar.gz", &tarball, &[("sha256", &nar_hex)], Some("nar"));
    let out = tmp.path().join("fetched-tree");
    let result = fetch(&["--mode", "recursive", "--algo", "sha256", &nar_hex], &out);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    assert_eq!(line(tool("nix-hash").args(["--type", "sha256"]).arg(&out)), nar_hex);
    let again = tmp.path().join("fetched-tree-again");
    let result = fetch(&["--mode", "recursive", "--algo", "sha256", &nar_hex], &again);
    assert!(
        String::from_utf8_lossy(&result.stderr).contains("from cache to"),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert_eq!(line(tool("nix-hash").args(["--type", "sha256"]).arg(&again)), nar_hex);

    // The same tarball with its flat hash: archived only unpacked, so it needs a recipe...
    let flat_hex = sha256_hex(&tarball);
    archive.load("directory", "tree-2.0-flat.tar.gz", &tarball, &[("sha256", &flat_hex)], None);
    let out = tmp.path().join("tree-2.0.tar.gz");
    let result = fetch(&["--algo", "sha256", &flat_hex], &out);
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("archived only as the unpacked directory swh:1:dir:") && stderr.contains("recipe"),
        "{stderr}"
    );
    assert!(!out.exists());
    // ...unless an upstream URL still answers, which is tried first.
    let url = format!("{}tree-2.0-flat.tar.gz", archive.files_url);
    let result = fetch(&["--algo", "sha256", &flat_hex, "--url", &url], &out);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    assert!(String::from_utf8_lossy(&result.stderr).contains("(0 archive requests)"));
    assert_eq!(fs::read(&out).unwrap(), tarball);
    // ...or a hashed mirror has it under <algo>/<hex>, after a dead upstream URL.
    let mirror_dir = archive.files_dir.join("mirror/sha256");
    fs::create_dir_all(&mirror_dir).unwrap();
    fs::write(mirror_dir.join(&flat_hex), &tarball).unwrap();
    let mirrored = tmp.path().join("mirrored.tar.gz");
    let fresh_cache = tmp.path().join("fresh-data");
    let mirror = format!("{}mirror", archive.files_url);
    let dead = format!("{}no-such-file.tar.gz", archive.files_url);
    let result = fetch_with_cache(
        &["--algo", "sha256", &flat_hex, "--url", &dead, "--hashed-mirror", &mirror],
        &mirrored,
        &fresh_cache,
    );
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains(&format!("from mirror {mirror}/sha256/{flat_hex}")), "{stderr}");
    assert_eq!(fs::read(&mirrored).unwrap(), tarball);

    // Never archived.
    let result = fetch(&[&format!("sha256:{}", sha256_hex(b"nobody has this"))], &tmp.path().join("none"));
    assert!(String::from_utf8_lossy(&result.stderr).contains("is not in the archive"));
}

#[test]
fn names_that_are_not_utf8_come_back_exactly() {
    use std::os::unix::ffi::OsStrExt;
    // Not UTF-8, backslashes that could pass for escapes, both at once.
    let names: [&[u8]; 5] = [b"plain", b"caf\xe9", b"back\\slash", b"x\\x41", b"\xff\xfe\\\xc3\xa9"];
    let tmp = temp_dir();
    let top = tmp.path().join("names");
    fs::create_dir_all(top.join(std::ffi::OsStr::from_bytes(b"d\xff"))).unwrap();
    for name in names {
        fs::write(top.join(std::ffi::OsStr::from_bytes(name)), name).unwrap();
    }
    fs::write(top.join(std::ffi::OsStr::from_bytes(b"d\xff/in\\side")), b"inside").unwrap();
    let nar_hex = line(tool("nix-hash").args(["--type", "sha256"]).arg(&top));
    let swhid = local_archive().add_tree(&top, &nar_hex);

    // As the web API lists them.
    let listing = runtime().block_on(client().directory(&swhid.parse().unwrap())).unwrap();
    let mut listed: Vec<Vec<u8>> = listing.iter().map(|e| e.name_bytes().unwrap()).collect();
    listed.sort();
    let mut on_disk: Vec<Vec<u8>> =
        fs::read_dir(&top).unwrap().map(|e| e.unwrap().file_name().as_bytes().to_vec()).collect();
    on_disk.sort();
    assert_eq!(listed, on_disk);

    // And fetched back whole.
    let out = tmp.path().join("fetched");
    let result =
        fetch_with_cache(&["--mode", "recursive", "--algo", "sha256", &nar_hex], &out, &tmp.path().join("data"));
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    assert_eq!(line(tool("nix-hash").args(["--type", "sha256"]).arg(&out)), nar_hex);
}
