//! Issue 18's adversarial cases, each at small scale: what a hostile recipe, cache file,
//! server, archive or input can make a command do, and that the outcome is bounded (an error
//! within a stated time and memory, nothing written, a server still answering).

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use swh_bridge::hashing::tree::memory::Node;
use swh_bridge::recipes::Recipe;

use crate::local_archive::local_archive;
use crate::reference_tools::bridge;
use crate::serve::Served;
use crate::trees::{temp_dir, write_file};

/// The recipe bodies the fuzzer found preflate-rs 0.7.1 looping on (growing its memory) for
/// the fuzz target's tree.
const HANGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/hangs/recipe_body");

/// The fuzz target's tree (`fuzz/fuzz_targets/recipe_body.rs`), in memory and on disk under
/// `root`.
fn fuzz_tree(root: &Path) -> Node {
    fs::create_dir_all(root.join("pkg/b")).unwrap();
    write_file(&root.join("pkg/a"), b"a", 0o644);
    write_file(&root.join("pkg/b/c"), &[b'c'; 3000], 0o755);
    let mut tree = Node::empty_directory();
    tree.insert(b"pkg/a", Node::File { executable: false, contents: b"a".to_vec() }).unwrap();
    tree.insert(b"pkg/b/c", Node::File { executable: true, contents: vec![b'c'; 3000] }).unwrap();
    tree
}

/// Each hang input as a recipe file for `tree`, in `dir`; returns the paths and the hashes the
/// recipes claim.
fn hostile_recipes(tree: &Node, dir: &Path) -> Vec<(std::path::PathBuf, String)> {
    let mut made = Vec::new();
    let mut names: Vec<_> = fs::read_dir(HANGS).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    for body in names {
        let mut framed = liblzma::write::XzEncoder::new(b"swh-bridge recipe\n\x01".to_vec(), 0);
        framed.write_all(&fs::read(&body).unwrap()).unwrap();
        let mut recipe = Recipe::decode(&framed.finish().unwrap()).unwrap();
        recipe.tree = tree.swhid();
        let path = dir.join(body.file_name().unwrap());
        fs::write(&path, recipe.encode()).unwrap();
        made.push((path, recipe.expected_hash().unwrap().to_hex()));
    }
    made
}

/// The largest resident set of any child this process has waited for, or of their descendants
/// (tests run side by side, so this bounds the case from above).
fn peak_rss_of_children() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()) }, 0);
    // SAFETY: initialised by the successful call.
    unsafe { usage.assume_init() }.ru_maxrss as u64 * 1024
}

#[test]
fn a_hostile_recipe_stops_at_its_bounds_and_serve_answers_on() {
    let tmp = temp_dir();
    let root = tmp.path().join("tree");
    let tree = fuzz_tree(&root);
    fs::create_dir(tmp.path().join("recipes")).unwrap();
    let recipes = hostile_recipes(&tree, &tmp.path().join("recipes"));
    assert!(recipes.len() >= 9);
    for (recipe, _) in &recipes {
        let out = tmp.path().join("rebuilt");
        let started = Instant::now();
        let applied = bridge()
            .args(["recipe", "apply"])
            .arg(recipe)
            .arg("--tree")
            .arg(&root)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&applied.stderr);
        assert!(!applied.status.success(), "{}: {stderr}", recipe.display());
        // Each recipe's preflate call gets 5 s of CPU time and 1 GiB of address space.
        assert!(took < Duration::from_secs(30), "{}: {took:?}", recipe.display());
        assert!(stderr.contains("preflate"), "{}: {stderr}", recipe.display());
        assert!(!out.exists());
    }
    // Every child this test process has waited for (and theirs) stayed under the address
    // space bound: 1 GiB for inputs this small.
    assert!(peak_rss_of_children() < 1536 << 20, "{} bytes", peak_rss_of_children());
    // serve, asked for the file the first recipe claims to rebuild, takes the tree from the
    // archive and runs the recipe: it answers that it failed, and goes on answering.
    let tarball = tmp.path().join("pkg.tar");
    crate::reference_tools::output(
        crate::reference_tools::tool("tar").arg("-cf").arg(&tarball).arg("-C").arg(&root).arg("pkg"),
    );
    let bytes = fs::read(&tarball).unwrap();
    local_archive().load("directory", "adversarial-pkg.tar", &bytes, &[], None);
    let store = tmp.path().join("store");
    let (_, hex) = &recipes[0];
    fs::create_dir_all(store.join("sha256")).unwrap();
    fs::copy(&recipes[0].0, store.join("sha256").join(hex)).unwrap();
    let served = Served::start(&local_archive().api, &tmp.path().join("data"), &["--recipes", store.to_str().unwrap()]);
    let started = Instant::now();
    let (status, body) = served.get(&format!("sha256/{hex}"));
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("preflate went past its bound"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(60));
    let (status, _) = served.get("metrics");
    assert_eq!(status, 200, "serve stopped answering");
}

#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let tmp = temp_dir();
    let file = tmp.path().join("f");
    fs::write(&file, b"hashed many times").unwrap();
    // 20,000 lines of output: far more than a pipe holds, so writes go on after the reader left.
    let mut child = bridge()
        .args(["hash", "file"])
        .args(std::iter::repeat_n(&file, 20_000))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 10];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let finished = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&finished.stderr);
    assert!(finished.status.success(), "{:?}: {stderr}", finished.status);
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn an_entry_that_is_not_utf8_is_reported_and_skipped() {
    let tmp = temp_dir();
    let good = fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lister/expected-sources.json")).unwrap();
    // One byte that is not UTF-8 in the first entry's URL.
    let at = good.windows(8).position(|w| w == b"https://").unwrap() + 8;
    let bad = [&good[..at], b"\xff", &good[at..]].concat();
    let path = tmp.path().join("sources.json");
    fs::write(&path, &bad).unwrap();
    let validated = bridge().args(["sources", "validate"]).arg(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&validated.stdout);
    assert!(!validated.status.success());
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [format!("{}: sources[0]: it holds bytes that are not UTF-8", path.display())]
    );
    let count = |file: &Path| -> u64 {
        let stats = crate::reference_tools::output(bridge().args(["sources", "stats", "--json"]).arg(file));
        serde_json::from_slice::<serde_json::Value>(&stats).unwrap()["sources"].as_u64().unwrap()
    };
    let whole = tmp.path().join("good.json");
    fs::write(&whole, &good).unwrap();
    assert_eq!(count(&path), count(&whole) - 1);
}

#[test]
fn recipe_outputs_that_exist_are_refused() {
    let tmp = temp_dir();
    fs::create_dir_all(tmp.path().join("pkg")).unwrap();
    write_file(&tmp.path().join("pkg/a"), b"a\n", 0o644);
    let tarball = tmp.path().join("pkg.tar");
    crate::reference_tools::output(
        crate::reference_tools::tool("tar").arg("-cf").arg(&tarball).arg("-C").arg(tmp.path()).arg("pkg"),
    );
    let taken = tmp.path().join("taken");
    fs::write(&taken, b"someone's file").unwrap();
    let created = bridge().args(["recipe", "create"]).arg(&tarball).arg("-o").arg(&taken).output().unwrap();
    assert!(!created.status.success());
    assert!(String::from_utf8_lossy(&created.stderr).contains("refusing to replace"));
    let recipe = tmp.path().join("pkg.recipe");
    crate::reference_tools::output(bridge().args(["recipe", "create"]).arg(&tarball).arg("-o").arg(&recipe));
    fs::create_dir(tmp.path().join("x")).unwrap();
    crate::reference_tools::output(
        crate::reference_tools::tool("tar").arg("-xf").arg(&tarball).arg("-C").arg(tmp.path().join("x")),
    );
    let applied = bridge()
        .args(["recipe", "apply"])
        .arg(&recipe)
        .arg("--tree")
        .arg(tmp.path().join("x"))
        .arg("-o")
        .arg(&taken)
        .output()
        .unwrap();
    assert!(!applied.status.success());
    assert!(String::from_utf8_lossy(&applied.stderr).contains("refusing to replace"));
    assert_eq!(fs::read(&taken).unwrap(), b"someone's file");
}

/// The files under `dir` named `name`, at any depth.
fn find_named(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            found.extend(find_named(&path, name));
        } else if entry.file_name() == name {
            found.push(path);
        }
    }
    found
}

#[test]
fn a_cache_file_damaged_in_place_is_never_served_and_is_repaired() {
    let tmp = temp_dir();
    let file = b"served from a cache entry that will rot (adversarial)\n".to_vec();
    let hex = crate::trees::sha256_hex(&file);
    local_archive().load("content", "adversarial-rot.txt", &file, &[("sha256", &hex)], None);
    let data = tmp.path().join("data");
    let served = Served::start(&local_archive().api, &data, &[]);
    assert_eq!(served.get(&format!("sha256/{hex}")), (200, file.clone()));
    let cached = find_named(&data, &hex);
    assert_eq!(cached.len(), 1, "{cached:?}");
    // Same length, same inode, same mtime: only the bytes differ.
    let stamp = tmp.path().join("stamp");
    crate::reference_tools::output(crate::reference_tools::tool("touch").arg("-r").arg(&cached[0]).arg(&stamp));
    let mut rotten = file.clone();
    rotten[0] ^= 0x20;
    fs::OpenOptions::new().write(true).open(&cached[0]).unwrap().write_all(&rotten).unwrap();
    crate::reference_tools::output(crate::reference_tools::tool("touch").arg("-r").arg(&stamp).arg(&cached[0]));
    for _ in 0..2 {
        assert_eq!(served.get(&format!("sha256/{hex}")), (200, file.clone()));
    }
    // The entry was stored again from the archive.
    assert_eq!(fs::read(&cached[0]).unwrap(), file);
}

#[test]
fn a_megabyte_of_input_is_cut_in_messages() {
    let tmp = temp_dir();
    let huge = "x".repeat(1 << 20);
    let document = serde_json::json!({"version": 1, "sources": [{"type": huge, "urls": ["https://example.org/a"]}]});
    let path = tmp.path().join("sources.json");
    fs::write(&path, document.to_string()).unwrap();
    let validated = bridge().args(["sources", "validate"]).arg(&path).output().unwrap();
    assert!(!validated.status.success());
    let stdout = String::from_utf8_lossy(&validated.stdout);
    assert!(stdout.len() < 2000, "{} bytes of messages", stdout.len());
    assert!(stdout.contains("bytes in all)"), "{stdout}");
}

/// Answers every connection to the returned URL with `answer` (after reading the request's
/// headers), on loopback, until the test process ends.
fn raw_server(answer: fn(&mut std::net::TcpStream)) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/pkg-1.0.tar.gz", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut byte = [0u8];
                while !request.ends_with(b"\r\n\r\n") && std::io::Read::read(&mut stream, &mut byte).unwrap_or(0) == 1 {
                    request.push(byte[0]);
                }
                answer(&mut stream);
            });
        }
    });
    url
}

/// Runs `fetch` of a hash nobody has from `url`, killed if it outlives `deadline`; returns its
/// output and how long it took.
fn fetch_from(url: &str, out: &Path, extra: &[&str], deadline: Duration) -> (std::process::Output, Duration) {
    let hash = format!("sha256:{}", crate::trees::sha256_hex(b"served by nobody"));
    let started = Instant::now();
    let mut child = bridge()
        .args(["fetch", &hash, "--url", url, "--no-cache", "--archive", &local_archive().api, "-o"])
        .arg(out)
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() && started.elapsed() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    (child.wait_with_output().unwrap(), started.elapsed())
}

#[test]
fn trickling_and_endless_downloads_are_cut_off() {
    let tmp = temp_dir();
    // A byte a second, of the 100,000 announced: no gap ever reaches the 3 s timeout.
    let trickling = raw_server(|stream| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
        while stream.write_all(b"x").is_ok() {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    fs::create_dir(tmp.path().join("out")).unwrap();
    let out = tmp.path().join("out/trickled");
    let (output, took) = fetch_from(&trickling, &out, &["--upstream-timeout", "3"], Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(took < Duration::from_secs(30), "{took:?}: {stderr}");
    assert!(stderr.contains("bytes/s"), "{stderr}");
    // Zeros without end and without a length.
    let endless = raw_server(|stream| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        while stream.write_all(&[0; 65536]).is_ok() {}
    });
    let out = tmp.path().join("out/endless");
    let (output, took) = fetch_from(&endless, &out, &["--max-download", "2000000"], Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(took < Duration::from_secs(30), "{took:?}: {stderr}");
    assert!(stderr.contains("larger than 2000000 bytes"), "{stderr}");
    // Nothing is left beside the outputs.
    let left: Vec<_> =
        fs::read_dir(tmp.path().join("out")).map(|d| d.map(|e| e.unwrap().file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn an_output_that_cannot_be_written_is_the_error_reported() {
    let tmp = temp_dir();
    let upstream = raw_server(|stream| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    });
    let hash = format!("sha256:{}", crate::trees::sha256_hex(b"hello"));
    let out = tmp.path().join("no-such-dir/hello");
    let fetched = bridge()
        .args(["fetch", &hash, "--url", &upstream, "--no-cache", "--archive", &local_archive().api, "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&fetched.stderr);
    assert!(!fetched.status.success());
    assert!(stderr.contains(&format!("failed to write {}", out.display())), "{stderr}");
    assert!(!stderr.contains("archive"), "{stderr}");
}
