//! Cache-hit throughput and latency of `swh-bridge serve`, against plain static file servers
//! serving the same file in the same run: Python's `http.server` (threaded), and a bare axum
//! server that opens and streams the file (what serve does, minus hash routing, verification
//! bookkeeping, metrics and the access log), each in a process of its own. Not a test: `cargo bench --bench serve_hits`.
//!
//! Each server gets the same load: CONNECTIONS clients, each sending requests back to back for
//! SECONDS, for a 16 KiB and a 1 MiB file.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CONNECTIONS: usize = 16;
const SECONDS: u64 = 5;

struct Load {
    requests: u64,
    bytes: u64,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Load {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile(&self, p: f64) -> Duration {
        self.latencies[((self.latencies.len() - 1) as f64 * p) as usize]
    }
}

async fn load(url: String, expected: usize) -> Load {
    let client = reqwest::Client::builder().pool_max_idle_per_host(CONNECTIONS).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut bytes = 0;
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    let body =
                        client.get(&url).send().await.unwrap().error_for_status().unwrap().bytes().await.unwrap();
                    assert_eq!(body.len(), expected);
                    latencies.push(sent.elapsed());
                    bytes += body.len() as u64;
                }
                (latencies, bytes)
            })
        })
        .collect();
    let mut all = Load { requests: 0, bytes: 0, latencies: Vec::new(), elapsed: Duration::ZERO };
    for task in tasks {
        let (latencies, bytes) = task.await.unwrap();
        all.requests += latencies.len() as u64;
        all.bytes += bytes;
        all.latencies.extend(latencies);
    }
    all.elapsed = started.elapsed();
    all.latencies.sort();
    all
}

/// Starts a child and returns it with the first `http://` address on its standard error.
fn spawn(cmd: &mut Command) -> (std::process::Child, String) {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url =
        first.split_whitespace().find(|w| w.starts_with("http://")).unwrap().trim_end_matches(['(', ')']).to_owned();
    // The rest (serve's access log) is read and dropped, as a log file would take it.
    std::thread::spawn(move || lines.for_each(drop));
    (child, url)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for(port: u16) {
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn main() {
    // Re-run as the plain server, so that it runs in a process of its own as the others do.
    let args: Vec<String> = std::env::args().collect();
    if let [_, mode, root] = args.as_slice() {
        if mode == "plain-server" {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                eprintln!("{}", plain_axum(root.into()).await);
                std::future::pending::<()>().await
            });
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!("{CONNECTIONS} connections, {SECONDS} s per run, cache hits on loopback\n");
    println!("| file | server | requests/s | MB/s | p50 | p99 | vs plain axum |");
    println!("|---|---|---|---|---|---|---|");
    for size in [16 << 10, 1 << 20] {
        let bytes: Vec<u8> = (0..size as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let hex = {
            use sha2::Digest;
            data_encoding::HEXLOWER.encode(&sha2::Sha256::digest(&bytes))
        };
        let cache = dir.path().join("data/cache/sha256");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::write(cache.join(&hex), &bytes).unwrap();
        std::fs::write(cache.join(format!("{hex}.blake3")), blake3::hash(&bytes).to_hex().as_str()).unwrap();
        let www = dir.path().join("www/sha256");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join(&hex), &bytes).unwrap();

        let (mut serve, serve_url) = spawn(
            Command::new(env!("CARGO_BIN_EXE_swh-bridge"))
                .args(["serve", "--listen", "127.0.0.1:0", "--archive", "http://127.0.0.1:9/api/1/", "--data-dir"])
                .arg(dir.path().join("data")),
        );
        let python_port = free_port();
        let mut python = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", &python_port.to_string(), "--directory"])
            .arg(dir.path().join("www"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(python_port);
        let (mut plain, axum_url) =
            spawn(Command::new(std::env::current_exe().unwrap()).arg("plain-server").arg(dir.path().join("www")));

        let path = format!("sha256/{hex}");
        let runs = [
            ("plain axum", runtime.block_on(load(format!("{axum_url}{path}"), size))),
            ("swh-bridge serve", runtime.block_on(load(format!("{serve_url}{path}"), size))),
            ("python http.server", runtime.block_on(load(format!("http://127.0.0.1:{python_port}/{path}"), size))),
        ];
        let baseline = runs[0].1.per_second();
        for (name, run) in &runs {
            println!(
                "| {} KiB | {name} | {:.0} | {:.0} | {:.2} ms | {:.2} ms | {:.2}× |",
                size >> 10,
                run.per_second(),
                run.bytes as f64 / run.elapsed.as_secs_f64() / 1e6,
                run.percentile(0.5).as_secs_f64() * 1e3,
                run.percentile(0.99).as_secs_f64() * 1e3,
                run.per_second() / baseline
            );
        }
        for child in [&mut serve, &mut python, &mut plain] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A bare static file server on the runtime: open, stream, nothing else.
async fn plain_axum(root: std::path::PathBuf) -> String {
    async fn file(
        axum::extract::State(root): axum::extract::State<std::sync::Arc<std::path::PathBuf>>,
        axum::extract::Path((algo, hex)): axum::extract::Path<(String, String)>,
    ) -> axum::response::Response {
        let path = root.join(algo).join(hex);
        let file = tokio::fs::File::open(&path).await.unwrap();
        let length = file.metadata().await.unwrap().len();
        let mut response = axum::response::Response::new(axum::body::Body::from_stream(
            tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024),
        ));
        response.headers_mut().insert(axum::http::header::CONTENT_LENGTH, length.into());
        response
    }
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app =
        axum::Router::new().route("/{algo}/{hex}", axum::routing::get(file)).with_state(std::sync::Arc::new(root));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}/")
}
