//! The archive client against a real local archive filled by SWH's real loaders: what the
//! fallback fetcher will rely on, checked against the reference tools.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use swh_bridge::archive::{ApiError, ArchiveClient, ClientConfig};
use swh_bridge::hashing::swhid::content_id;

use crate::local_archive::local_archive;
use crate::reference_tools::{line, output, tool};
use crate::trees::{TreeShape, make_tree, regular_files, temp_dir};

fn client() -> ArchiveClient {
    ArchiveClient::new(ClientConfig::for_api(local_archive().api.parse().unwrap()))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    data_encoding::HEXLOWER.encode(&sha2::Sha256::digest(bytes))
}

#[test]
fn a_flat_file_loaded_as_content_is_found_by_sha256_and_extid() {
    let archive = local_archive();
    let bytes = b"a flat file, archived as a content\n".to_vec();
    let hex = sha256_hex(&bytes);
    archive.load("content", "flat-file.txt", &bytes, &[("sha256", &hex)], None);

    let client = client();
    let rt = runtime();
    let info = rt.block_on(client.content("sha256", &hex)).unwrap();
    assert_eq!(info.length, Some(bytes.len() as u64));
    assert_eq!(info.checksums["sha1_git"], content_id(&bytes).hex());
    let raw = rt.block_on(async { client.content_raw("sha256", &hex).await.unwrap().bytes().await.unwrap() });
    assert_eq!(raw.as_ref(), bytes.as_slice());
    let digest = data_encoding::HEXLOWER.decode(hex.as_bytes()).unwrap();
    let extid = rt.block_on(client.extid("checksum-sha256", &digest)).unwrap();
    assert_eq!(extid.target, content_id(&bytes).to_string());

    let missing = sha256_hex(b"never archived");
    assert!(matches!(rt.block_on(client.content("sha256", &missing)), Err(ApiError::NotFound { .. })));
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
    let digest = |hex: &str| data_encoding::HEXLOWER.decode(hex.as_bytes()).unwrap();
    let nar = rt.block_on(client.extid("nar-sha256", &digest(&nar_hex))).unwrap();
    let top_id = line(tool("swh").args(["identify", "--no-filename"]).arg(&norm_top));
    assert_eq!(nar.target, top_id, "nar-sha256 points to the unpacked top folder");
    let ours = line(crate::reference_tools::bridge().args(["hash", "path", "--type", "swhid"]).arg(&top));
    assert_eq!(nar.target, ours, "swh-bridge's default (git's owner-bit rule) is what the archive stores");

    let flat = rt.block_on(client.extid("checksum-sha256", &digest(&flat_hex))).unwrap();
    let root_id = line(tool("swh").args(["identify", "--no-filename"]).arg(&normalised));
    assert_eq!(flat.target, root_id, "checksum-sha256 points to the extraction root, around the top folder");

    let listing = rt.block_on(client.directory(flat.target.rsplit(':').next().unwrap())).unwrap();
    assert_eq!(listing.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["pkg-1.0"]);
    assert_eq!(listing[0].kind, "dir");
}
