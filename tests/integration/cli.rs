//! The command line: errors name the input and what is wrong, and the exit code says failure.

use crate::reference_tools::{bridge, failure};
use crate::trees::temp_dir;

#[test]
fn bad_hashes_are_named_with_the_reason() {
    let stderr = failure(bridge().args(["hash", "convert", "--to", "hex", "sha256-tooshort"]));
    assert!(stderr.contains("`sha256-tooshort`") && stderr.contains("needs 44 base64 characters"), "{stderr}");

    let ambiguous = "0".repeat(32);
    let stderr = failure(bridge().args(["hash", "convert", "--to", "sri", &ambiguous]));
    assert!(stderr.contains("md5 in hex or sha1 in nix32") && stderr.contains("name the algorithm"), "{stderr}");

    let sri = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    let stderr = failure(bridge().args(["hash", "convert", "--to", "hex", "--algo", "sha512", sri]));
    assert!(stderr.contains("it is sha256, but sha512 was expected"), "{stderr}");

    let stderr = failure(bridge().args(["hash", "convert", "--to", "hex", "--algo", "sha256", &"e".repeat(52)]));
    assert!(stderr.contains("not valid Nix base32"), "{stderr}");
}

#[test]
fn every_bad_hash_is_reported() {
    let sri = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    let out = bridge().args(["hash", "convert", "--to", "hex", "bad-one", sri, "sha256-bad"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`bad-one`") && stderr.contains("`sha256-bad`"), "{stderr}");
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
}

#[test]
fn one_failing_path_does_not_hide_the_others() {
    let tmp = temp_dir();
    let good = tmp.path().join("good");
    std::fs::write(&good, b"x").unwrap();
    let out = bridge().args(["hash", "path"]).arg(tmp.path().join("missing")).arg(&good).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("failed to hash") && stderr.contains("missing"), "{stderr}");
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
}

#[test]
fn any_exec_bit_is_refused_for_nar_hashes() {
    let tmp = temp_dir();
    let stderr = failure(bridge().args(["hash", "path", "--any-exec-bit"]).arg(tmp.path()));
    assert!(stderr.contains("--any-exec-bit applies to --type swhid only"), "{stderr}");
}

#[test]
fn restore_refuses_an_existing_destination() {
    let tmp = temp_dir();
    let stderr = failure(bridge().args(["nar", "restore"]).arg(tmp.path()));
    assert!(stderr.contains("already exists"), "{stderr}");
}

#[test]
fn the_configuration_file_gives_archive_and_token_and_refuses_typos() {
    let tmp = crate::trees::temp_dir();
    let mut server = mockito::Server::new();
    let hex = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"; // sha256 of "hello"
    let content = r#"{"checksums": {"sha1_git": "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0"}, "status": "visible"}"#;
    server
        .mock("GET", format!("/api/1/content/sha256:{hex}/").as_str())
        .match_header("authorization", "Bearer from-config")
        .with_body(content)
        .create();
    server
        .mock("GET", format!("/api/1/content/sha256:{hex}/raw/").as_str())
        .match_header("authorization", "Bearer from-config")
        .with_body("hello")
        .create();
    let config = tmp.path().join("config.json");
    std::fs::write(&config, format!(r#"{{"archive": "{}/api/1/", "token": "from-config"}}"#, server.url())).unwrap();
    let out = tmp.path().join("hello");
    let fetch = |config: &std::path::Path, out: &std::path::Path| {
        let mut cmd = bridge();
        cmd.args(["fetch", &format!("sha256:{hex}"), "--no-cache", "--config"]).arg(config).arg("-o").arg(out);
        cmd.env_remove("SWH_TOKEN").env_remove("SWH_BRIDGE_ARCHIVE");
        cmd.output().unwrap()
    };
    let result = fetch(&config, &out);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    assert_eq!(std::fs::read(&out).unwrap(), b"hello");

    std::fs::write(&config, r#"{"archve": "http://127.0.0.1:1/api/1/"}"#).unwrap();
    let result = fetch(&config, &tmp.path().join("other"));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success());
    assert!(stderr.contains("failed to parse") && stderr.contains("unknown field `archve`"), "{stderr}");
}
