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
        let (applied, peak) =
            run_measured(bridge().args(["recipe", "apply"]).arg(recipe).arg("--tree").arg(&root).arg("-o").arg(&out));
        let took = started.elapsed();
        // The preflate child's address space bound: 1 GiB for inputs this small.
        assert!(peak < 1536 << 20, "{}: {peak} bytes", recipe.display());
        let stderr = String::from_utf8_lossy(&applied.stderr);
        assert!(!applied.status.success(), "{}: {stderr}", recipe.display());
        // Each recipe's preflate call gets 5 s of CPU time and 1 GiB of address space.
        assert!(took < Duration::from_secs(30), "{}: {took:?}", recipe.display());
        assert!(stderr.contains("preflate"), "{}: {stderr}", recipe.display());
        assert!(!out.exists());
    }
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

    // A well-formed entry whose URL's host is a megabyte long: cut wherever it is a line of text
    // or a key of a report, and whole where it is the entry's own data.
    let url = format!("https://{}.example.org/pkg-1.0.tar.gz", "a".repeat(1 << 20));
    let hash = format!("sha256:{}", crate::trees::sha256_hex(b"a megabyte of host"));
    let source = serde_json::json!({"type": "url", "urls": [url], "integrity": hash, "outputHashMode": "flat"});
    let (empty, one) = (tmp.path().join("empty.json"), tmp.path().join("one.json"));
    fs::write(&empty, serde_json::json!({"version": 1, "sources": []}).to_string()).unwrap();
    fs::write(&one, serde_json::json!({"version": 1, "sources": [source]}).to_string()).unwrap();
    let diffed = bridge().args(["sources", "diff"]).arg(&empty).arg(&one).output().unwrap();
    let counted = bridge().args(["sources", "stats"]).arg(&one).output().unwrap();
    for out in [diffed, counted] {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stdout.len() < 2000, "{} bytes", out.stdout.len());
    }
    let audited = bridge()
        .args(["audit", "--no-cache", "--archive", &local_archive().api, "--state"])
        .arg(tmp.path().join("state.sqlite"))
        .arg(&one)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&audited.stdout).unwrap();
    fn longest_key(value: &serde_json::Value) -> usize {
        match value {
            serde_json::Value::Object(map) => {
                map.iter().map(|(key, value)| key.len().max(longest_key(value))).max().unwrap_or(0)
            }
            serde_json::Value::Array(items) => items.iter().map(longest_key).max().unwrap_or(0),
            _ => 0,
        }
    }
    assert!(longest_key(&report) < 1000, "a key of {} bytes", longest_key(&report));
    assert_eq!(report["sources"][0]["url"].as_str().map(str::len), Some(url.len()));
}

/// Answers every connection to the returned URL with `answer` (after reading the request's
/// headers, which it is given), on loopback, until the test process ends.
fn raw_server(answer: fn(&[u8], &mut std::net::TcpStream)) -> String {
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
                answer(&request, &mut stream);
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
    let trickling = raw_server(|_, stream| {
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
    let endless = raw_server(|_, stream| {
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
    let upstream = raw_server(|_, stream| {
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

/// Runs `command` to its end and returns its output and its own peak resident set (read from
/// `wait4`, so other tests' processes do not count; a child of its own counts if it was larger).
#[expect(clippy::zombie_processes, reason = "reaped by wait4, which std cannot see")]
fn run_measured(command: &mut std::process::Command) -> (std::process::Output, u64) {
    use std::os::unix::process::ExitStatusExt;
    let mut child = command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).unwrap();
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: the pid is this child's, not yet reaped; wait4 fills the struct it is given.
    let reaped = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, usage.as_mut_ptr()) };
    assert_eq!(reaped, child.id() as libc::pid_t);
    // SAFETY: initialised by the successful call.
    let peak = unsafe { usage.assume_init() }.ru_maxrss as u64 * 1024;
    let output = std::process::Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    (output, peak)
}

/// A tar.gz that unpacks to one file of `mib` MiB of zeros: gzip members of 1 MiB each (zlib's
/// level 6, which recipes model), so that it is made in moments whatever its size.
fn gzip_bomb(mib: u64) -> Vec<u8> {
    let member = |bytes: &[u8]| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    };
    let size = mib << 20;
    let mut header = tar::Header::new_gnu();
    header.set_path("zeros").unwrap();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    let zeros = vec![0u8; 1 << 20];
    let mut bomb = member(header.as_bytes());
    let zeros_member = member(&zeros);
    for _ in 0..mib {
        bomb.extend_from_slice(&zeros_member);
    }
    // The end-of-archive blocks.
    bomb.extend_from_slice(&member(&[0u8; 1024]));
    bomb
}

#[test]
fn decompression_bombs_are_refused_before_they_unpack() {
    let tmp = temp_dir();
    // 2.1 GiB of tar stream in 2.2 MB: refused by its measure, which keeps nothing.
    let bomb = tmp.path().join("bomb.tar.gz");
    fs::write(&bomb, gzip_bomb(2150)).unwrap();
    let recipe = tmp.path().join("bomb.recipe");
    let (output, peak) = run_measured(bridge().args(["recipe", "create"]).arg(&bomb).arg("-o").arg(&recipe));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("larger than 2147483648 bytes (a decompression bomb?)"), "{stderr}");
    assert!(peak < 100 << 20, "{peak} bytes");
    assert!(!recipe.exists());
    // An endless input stops at the largest file a recipe is made of.
    let (output, peak) = run_measured(bridge().args(["recipe", "create", "/dev/zero", "-o"]).arg(&recipe));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/dev/zero is larger than 2147483648 bytes"), "{stderr}");
    assert!(peak < (2 << 30) + (100 << 20), "{peak} bytes");
    // A bomb that fits is made within what it is reckoned to take.
    let small = tmp.path().join("small.tar.gz");
    fs::write(&small, gzip_bomb(200)).unwrap();
    let (output, peak) = run_measured(bridge().args(["recipe", "create"]).arg(&small).arg("-o").arg(&recipe));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let reckoned: u64 = stderr.split("reckoned to take ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    // At least the 200 MiB tar stream and the tree; the process's own 30 MiB or so besides.
    assert!(reckoned >= 400, "{stderr}");
    assert!(peak < (reckoned + 40) << 20, "{peak} bytes for {reckoned} MiB reckoned");
}

#[test]
fn load_reckons_memory_by_what_archives_unpack_to() {
    let tmp = temp_dir();
    let upstream = &local_archive().files_dir;
    let mut sources = Vec::new();
    for n in 0..3 {
        let name = format!("bomb-{n}.tar.gz");
        let mut bytes = gzip_bomb(150);
        // Each a different file: a comment in the trailing member's header would do, but a
        // different length of zeros is simpler.
        bytes.extend_from_slice(&vec![0; n]);
        fs::write(upstream.join(&name), &bytes).unwrap();
        let hash = crate::trees::sha256_hex(&bytes);
        sources.push(serde_json::json!({"type": "url", "urls": [format!("{}{name}", local_archive().files_url)],
            "integrity": format!("sha256:{hash}"), "outputHashAlgo": "sha256", "outputHashMode": "flat"}));
    }
    let sources_json = tmp.path().join("sources.json");
    fs::write(&sources_json, serde_json::json!({"version": 1, "revision": "t", "sources": sources}).to_string())
        .unwrap();
    let load = |budget: &str| {
        run_measured(
            bridge()
                .args(["load", "--json", "--no-cache", "--no-nixos-mirrors", "--jobs", "3", "--memory-budget", budget])
                .args(["--archive", &local_archive().api])
                .arg(&sources_json)
                .arg("--recipes")
                .arg(tmp.path().join(format!("recipes-{budget}")))
                .arg("--state")
                .arg(tmp.path().join(format!("state-{budget}.sqlite"))),
        )
    };
    // Three 150 MiB tar streams in 150 KB files: each needs about 300 MiB, over a 64 MiB budget.
    let (output, peak) = load("64");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert_eq!(stdout.matches("more than the budget of 64 MiB").count(), 3, "{stdout}");
    assert!(peak < 100 << 20, "{peak} bytes");
    // With room for one at a time (each holds its 150 MiB stream and tree, and is reckoned at
    // more, for preflate), they run one at a time: three at once would hold 900 MiB.
    let (output, peak) = load("900");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(peak < 500 << 20, "{peak} bytes");
}

#[test]
fn serve_closes_connections_whose_headers_never_finish() {
    let tmp = temp_dir();
    let served = Served::start(&local_archive().api, &tmp.path().join("data"), &["--header-timeout", "2"]);
    let address = served.url.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let started = Instant::now();
    let mut stalled = std::net::TcpStream::connect(&address).unwrap();
    stalled.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
    stalled.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut answer = Vec::new();
    // The server closes the connection (with or without a 408 first) rather than waiting on.
    let _ = std::io::Read::read_to_end(&mut stalled, &mut answer);
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(6), "{took:?}");
    let (status, _) = served.get("metrics");
    assert_eq!(status, 200, "serve stopped answering");
}

#[test]
fn an_audit_killed_midway_keeps_the_verdicts_it_had() {
    static REQUESTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let tmp = temp_dir();
    // An archive that knows nothing, and takes 100 ms to say so about each content and ExtID.
    let archive = raw_server(|request, stream| {
        REQUESTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let head = String::from_utf8_lossy(request);
        if head.contains("/known/") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length: ").map(|n| n.trim().parse().unwrap())
                })
                .unwrap_or(0);
            let mut body = vec![0; length];
            std::io::Read::read_exact(stream, &mut body).unwrap();
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
        } else {
            std::thread::sleep(Duration::from_millis(100));
            let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    let api = archive.replace("pkg-1.0.tar.gz", "api/1/");
    let sources: Vec<_> = (0..120u32)
        .map(|n| {
            let hash = crate::trees::sha256_hex(&n.to_le_bytes());
            serde_json::json!({"type": "url", "urls": [format!("https://example.invalid/pkg-{n}.tar.gz")],
                "integrity": format!("sha256:{hash}"), "outputHashAlgo": "sha256", "outputHashMode": "flat"})
        })
        .collect();
    let sources_json = tmp.path().join("sources.json");
    fs::write(&sources_json, serde_json::json!({"version": 1, "revision": "t", "sources": sources}).to_string())
        .unwrap();
    let state = tmp.path().join("state.sqlite");
    let audit = || {
        bridge()
            .args(["audit", "--no-cache", "--archive", &api, "--state"])
            .arg(&state)
            .arg(&sources_json)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut killed = audit();
    std::thread::sleep(Duration::from_secs(8));
    killed.kill().unwrap();
    killed.wait().unwrap();
    let before = REQUESTS.load(std::sync::atomic::Ordering::SeqCst);
    assert!(before > 20, "{before} requests before the kill");
    let finished = audit().wait_with_output().unwrap();
    assert!(finished.status.success(), "{}", String::from_utf8_lossy(&finished.stderr));
    let report: serde_json::Value = serde_json::from_slice(&finished.stdout).unwrap();
    let cached = report["sources"].as_array().unwrap().iter().filter(|s| s["cached"] == true).count();
    // Kept every 5 s: the killed run's first five seconds at least.
    assert!(cached >= 10, "{cached} verdicts kept of the killed run's {before} requests");
    assert_eq!(report["sources"].as_array().unwrap().len(), 120);
}

#[test]
fn a_killed_run_leaves_debris_that_the_next_run_sweeps() {
    let tmp = temp_dir();
    let trickling = raw_server(|_, stream| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
        while stream.write_all(b"x").is_ok() {
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let out_dir = tmp.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let hash = format!("sha256:{}", crate::trees::sha256_hex(b"served by nobody"));
    let mut killed = bridge()
        .args(["fetch", &hash, "--url", &trickling, "--no-cache", "--archive", &local_archive().api, "-o"])
        .arg(out_dir.join("first"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let debris = || -> Vec<String> {
        fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    };
    let started = Instant::now();
    while debris().is_empty() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    killed.kill().unwrap();
    killed.wait().unwrap();
    let left = debris();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(&format!(".swh-bridge-tmp-{}-", killed.id())), "{left:?}");
    // The next run that writes beside its output there sweeps it; its own temporary file goes
    // with its failure.
    let wrong = raw_server(|_, stream| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    });
    let (output, _) = fetch_from(&wrong, &out_dir.join("second"), &[], Duration::from_secs(60));
    assert!(!output.status.success());
    assert_eq!(debris(), Vec::<String>::new());
}
