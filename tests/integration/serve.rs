//! `swh-bridge serve`: real Nix 2.8 builds with dead URLs through the mirror, backed by the real
//! local archive and recipes; nixpkgs' and Guix's request forms; many clients at once; and, with
//! mockito as the archive, wrong bytes and a slow archive.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::local_archive::local_archive;
use crate::reference_tools::{bridge, line, output, tool};
use crate::trees::{sha256_hex, temp_dir, write_file};

const FOD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/serve/fod.nix");

/// A running `swh-bridge serve`, killed when dropped; its access log is collected.
pub struct Served {
    child: Child,
    pub url: String,
    pub log: Arc<Mutex<String>>,
}

impl Served {
    pub fn start(api: &str, data_dir: &Path, extra: &[&str]) -> Served {
        let mut child = bridge()
            .args(["serve", "--listen", "127.0.0.1:0", "--archive", api, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let url = first.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_owned();
        let log = Arc::new(Mutex::new(String::new()));
        let collected = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                collected.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        Served { child, url, log }
    }

    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let out = tool("curl")
            .args(["-s", "-o", "-", "-w", "\n%{http_code}"])
            .arg(format!("{}{path}", self.url))
            .output()
            .unwrap();
        let mut body = out.stdout;
        let split = body.iter().rposition(|&b| b == b'\n').unwrap();
        let code = String::from_utf8(body.split_off(split)).unwrap().trim().parse().unwrap();
        (code, body)
    }

    pub fn metric(&self, name: &str) -> f64 {
        let (_, page) = self.get("metrics");
        let page = String::from_utf8(page).unwrap();
        let line = page.lines().find(|l| l.starts_with(&format!("swh_bridge_{name} "))).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A file archived as a content, and a tarball archived unpacked with its recipe in `store`.
fn archive_a_file_and_a_tarball(dir: &Path, tag: &str, store: &Path) -> (Vec<u8>, Vec<u8>) {
    let file = format!("served as a content ({tag})\n").into_bytes();
    local_archive().load("content", &format!("{tag}.txt"), &file, &[("sha256", &sha256_hex(&file))], None);
    let top = dir.join(format!("{tag}-1.0"));
    fs::create_dir_all(top.join("src")).unwrap();
    write_file(&top.join("README"), format!("rebuilt from its recipe ({tag})\n").as_bytes(), 0o644);
    write_file(&top.join("src/run"), b"#!/bin/sh\necho run\n", 0o755);
    let name = format!("{tag}-1.0.tar.gz");
    let tarball = output(Command::new("sh").arg("-c").arg(format!("tar -cf - {tag}-1.0 | gzip -9")).current_dir(dir));
    fs::write(dir.join(&name), &tarball).unwrap();
    local_archive().load("directory", &name, &tarball, &[("sha256", &sha256_hex(&tarball))], None);
    output(bridge().args(["recipe", "create"]).arg(dir.join(&name)).arg("--store").arg(store));
    (file, tarball)
}

fn nix_build(served: &Served, store: &Path, name: &str, hash: (&str, &str)) -> std::process::Output {
    tool("nix-build")
        .arg(FOD)
        .arg("--store")
        .arg(store)
        .args(["--argstr", "name", name, "--argstr", hash.0, hash.1, "--no-out-link"])
        .args(["--option", "hashed-mirrors", &served.url])
        .output()
        .unwrap()
}

#[test]
fn nix_builds_with_dead_urls_through_the_mirror() {
    let tmp = temp_dir();
    let recipes = tmp.path().join("recipes");
    let (file, tarball) = archive_a_file_and_a_tarball(tmp.path(), "served-nix", &recipes);
    let served =
        Served::start(&local_archive().api, &tmp.path().join("data"), &["--recipes", recipes.to_str().unwrap()]);
    let store = tmp.path().join("store");
    for (name, bytes) in [("served-nix.txt", &file), ("served-nix-1.0.tar.gz", &tarball)] {
        let built = nix_build(&served, &store, name, ("sha256", &sha256_hex(bytes)));
        assert!(built.status.success(), "{name}: {}", String::from_utf8_lossy(&built.stderr));
        let path = String::from_utf8(built.stdout).unwrap().trim().to_owned();
        let on_disk = PathBuf::from(format!("{}{path}", store.display()));
        assert_eq!(&fs::read(on_disk).unwrap(), bytes, "{name}");
    }
    // A hash nobody has: the mirror says 404, Nix goes on to the dead URL and fails as usual.
    let lost = sha256_hex(b"in no archive at all");
    let failed = nix_build(&served, &store, "lost.tar.gz", ("sha256", &lost));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success() && stderr.contains("http://127.0.0.1:1/lost.tar.gz"), "{stderr}");
    let log = served.log.lock().unwrap().clone();
    assert!(log.contains(&format!("\"GET /sha256/{lost}\" 404")), "{log}");
    assert!(log.contains("resolved from archive swh:1:dir:") && log.contains("+ recipe"), "{log}");
}

#[test]
fn nixpkgs_and_guix_request_forms_and_many_clients_at_once() {
    let tmp = temp_dir();
    let recipes = tmp.path().join("recipes");
    let (file, tarball) = archive_a_file_and_a_tarball(tmp.path(), "served-forms", &recipes);
    let served =
        Served::start(&local_archive().api, &tmp.path().join("data"), &["--recipes", recipes.to_str().unwrap()]);
    let nix = |args: &[&str]| line(tool("nix").args(["hash"]).args(args));
    let file_hex = sha256_hex(&file);
    let sri = nix(&["to-sri", "--type", "sha256", &file_hex]);
    let nix32 = nix(&["to-base32", "--type", "sha256", &file_hex]);

    // nixpkgs' builder: HEAD, then GET, on `//sha256-<base64>`; the GET is a cache hit.
    let head = output(tool("curl").args(["-sfI"]).arg(format!("{}/{sri}", served.url)));
    let head = String::from_utf8(head).unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200") && head.to_lowercase().contains(&format!("content-length: {}", file.len())),
        "{head}"
    );
    assert_eq!(served.get(&format!("/{sri}")), (200, file.clone()));
    assert_eq!(served.metric("cache_hits_total"), 1.0);
    // Guix, and the same hash in Nix base32.
    assert_eq!(served.get(&format!("file/served-forms.txt/sha256/{nix32}")), (200, file.clone()));
    assert_eq!(served.get(&format!("sha256/{nix32}")), (200, file.clone()));
    assert_eq!(served.get("healthz"), (200, b"ok\n".to_vec()));
    assert_eq!(served.get("favicon.ico").0, 404);

    // Many clients at once: on the tarball (a recipe rebuild, not yet cached) and on a hash
    // nobody has. Every answer is verified; each hash is resolved once.
    let tarball_hex = sha256_hex(&tarball);
    let lost = sha256_hex(b"nobody has this one");
    let resolutions_before = served.metric("resolutions_total");
    let clients: Vec<_> = (0..24)
        .map(|i| {
            let (url, hex) = (served.url.clone(), if i % 3 == 2 { lost.clone() } else { tarball_hex.clone() });
            std::thread::spawn(move || {
                let out = tool("curl")
                    .args(["-s", "-o", "-", "-w", "\n%{http_code}"])
                    .arg(format!("{url}sha256/{hex}"))
                    .output()
                    .unwrap();
                (hex, out.stdout)
            })
        })
        .collect();
    for client in clients {
        let (hex, mut body) = client.join().unwrap();
        let split = body.iter().rposition(|&b| b == b'\n').unwrap();
        let code = String::from_utf8(body.split_off(split)).unwrap();
        if hex == lost {
            assert_eq!(code.trim(), "404");
        } else {
            assert_eq!(code.trim(), "200");
            assert_eq!(sha256_hex(&body), tarball_hex);
        }
    }
    assert_eq!(served.metric("resolutions_total") - resolutions_before, 2.0);
}

/// A mock archive that lists a content for a sha256 (returned) and gives other bytes of the
/// same length for it; no ExtIDs.
pub fn lying_archive() -> (mockito::ServerGuard, String) {
    let mut archive = mockito::Server::new();
    let promised = b"the bytes the hash promises\n";
    let hex = sha256_hex(promised);
    let info = serde_json::json!({"checksums": {"sha256": hex, "sha1_git": "0".repeat(40)}, "length": 28, "status": "visible"});
    archive.mock("GET", format!("/api/1/content/sha256:{hex}/").as_str()).with_body(info.to_string()).create();
    archive
        .mock("GET", format!("/api/1/content/sha256:{hex}/raw/").as_str())
        .with_body("other bytes, same length!!\n")
        .create();
    archive.mock("GET", mockito::Matcher::Regex("^/api/1/extid/".into())).with_status(404).create();
    (archive, hex)
}

#[test]
fn wrong_bytes_from_the_archive_are_never_served_and_a_slow_archive_gets_a_404() {
    let tmp = temp_dir();
    let (mut archive, hex) = lying_archive();
    let api = format!("{}/api/1/", archive.url());
    let slow = sha256_hex(b"slow to find");
    let _slow = archive
        .mock("GET", format!("/api/1/content/sha256:{slow}/").as_str())
        .with_chunked_body(|w| {
            std::thread::sleep(std::time::Duration::from_secs(4));
            w.write_all(b"{}")
        })
        .create();
    let served = Served::start(&api, &tmp.path().join("data"), &["--resolve-timeout", "1"]);

    let (code, body) = served.get(&format!("sha256/{hex}"));
    assert_eq!(code, 502, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("it hashes to"), "{}", String::from_utf8_lossy(&body));
    assert!(!tmp.path().join(format!("data/cache/sha256/{hex}")).exists(), "wrong bytes were cached");
    // Nix retries a 5xx: the retry is answered from memory, not by a new search.
    assert_eq!(served.get(&format!("sha256/{hex}")).0, 502);
    assert_eq!(served.metric("resolutions_total"), 1.0);

    let started = std::time::Instant::now();
    let (code, _) = served.get(&format!("sha256/{slow}"));
    assert_eq!(code, 404);
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "the request waited for the archive");
}
