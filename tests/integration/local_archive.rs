//! A real Software Heritage archive on loopback, for end-to-end tests: the storage RPC server
//! (in memory), the web API (Django's server), and a file server the real loaders fetch from.
//! Started once per test binary; the processes die with it (PR_SET_PDEATHSIG), so nothing
//! outlives a test run.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::reference_tools::swh_program;

pub struct LocalArchive {
    /// The web API root, ending in `/api/1/`.
    pub api: String,
    storage_url: String,
    pub files_url: String,
    pub files_dir: PathBuf,
    loader_config: PathBuf,
    swh: PathBuf,
}

static ARCHIVE: OnceLock<LocalArchive> = OnceLock::new();

/// The shared local archive, started on first use.
pub fn local_archive() -> &'static LocalArchive {
    ARCHIVE.get_or_init(|| {
        // Started from a thread that never ends, because PR_SET_PDEATHSIG fires when the thread
        // that forked dies, not the process: so the children live exactly as long as this binary.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            tx.send(LocalArchive::start()).unwrap();
            loop {
                std::thread::park();
            }
        });
        rx.recv().unwrap()
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16, what: &str, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status}:\n{}", fs::read_to_string(log).unwrap_or_default());
        }
        assert!(Instant::now() < deadline, "{what} did not listen on port {port} within a minute");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Spawns a child that gets SIGTERM when the spawning thread dies, logging to `log`.
fn spawn(cmd: &mut Command, log: &Path) -> Child {
    let out = fs::File::create(log).unwrap();
    cmd.stdin(Stdio::null()).stdout(out.try_clone().unwrap()).stderr(out);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd.spawn().unwrap_or_else(|e| {
        panic!("failed to start {:?}: {e}; scripts/test.sh installs the SWH packages", cmd.get_program())
    })
}

impl LocalArchive {
    fn start() -> LocalArchive {
        let dir = tempfile::Builder::new().prefix("swh-bridge-archive-").tempdir().unwrap().keep();
        let swh = swh_program();
        let venv_bin = swh.parent().unwrap().to_owned();
        let (storage_port, web_port, files_port) = (free_port(), free_port(), free_port());
        let storage_url = format!("http://127.0.0.1:{storage_port}/");
        fs::write(dir.join("storage.yml"), "storage:\n  cls: memory\n  objstorage:\n    cls: memory\n").unwrap();
        let remote = format!("storage:\n  cls: remote\n  url: {storage_url}\n");
        fs::write(dir.join("loader.yml"), &remote).unwrap();
        fs::write(
            dir.join("web.yml"),
            format!(
                "{remote}debug: true\nsecret_key: local-test-only\ncounters_backend: swh-storage\n\
                 development_db: {}\nswh_extra_django_apps: []\nsearch_config:\n  metadata_backend: swh-storage\n\
                 search:\n  cls: memory\ncounters:\n  cls: memory\n",
                dir.join("web.sqlite3").display()
            ),
        )
        .unwrap();
        let files_dir = dir.join("files");
        fs::create_dir(&files_dir).unwrap();

        let mut storage = spawn(
            Command::new(&swh).arg("-C").arg(dir.join("storage.yml")).args([
                "storage",
                "rpc-serve",
                "--host",
                "127.0.0.1",
                "--port",
                &storage_port.to_string(),
                "--no-debug",
            ]),
            &dir.join("storage.log"),
        );
        wait_for_port(storage_port, "the storage server", &mut storage, &dir.join("storage.log"));

        let django = |args: &[&str]| {
            let mut cmd = Command::new(venv_bin.join("django-admin"));
            cmd.args(args)
                .env("SWH_CONFIG_FILENAME", dir.join("web.yml"))
                .env("DJANGO_SETTINGS_MODULE", "swh.web.settings.development");
            cmd
        };
        let migrate = django(&["migrate"]).stdin(Stdio::null()).output().unwrap();
        assert!(migrate.status.success(), "django migrate failed:\n{}", String::from_utf8_lossy(&migrate.stderr));
        let mut web =
            spawn(&mut django(&["runserver", &format!("127.0.0.1:{web_port}"), "--noreload"]), &dir.join("web.log"));
        wait_for_port(web_port, "the web API", &mut web, &dir.join("web.log"));

        let mut files = spawn(
            Command::new("python3")
                .args(["-m", "http.server", "--bind", "127.0.0.1", &files_port.to_string()])
                .arg("--directory")
                .arg(&files_dir),
            &dir.join("files.log"),
        );
        wait_for_port(files_port, "the file server", &mut files, &dir.join("files.log"));
        // The children are reaped by the kernel with this process; their handles are let go.
        std::mem::forget((storage, web, files));

        LocalArchive {
            api: format!("http://127.0.0.1:{web_port}/api/1/"),
            storage_url,
            files_url: format!("http://127.0.0.1:{files_port}/"),
            files_dir,
            loader_config: dir.join("loader.yml"),
            swh,
        }
    }

    /// Publishes `bytes` as `name` on the file server and archives it with the real loader of
    /// `loader` (`content` or `directory`), given its checksums (hex by algorithm) and, for
    /// directories, the checksum layout (`standard` for a tarball's flat hash, `nar` for a NAR
    /// hash of the unpacked top folder).
    pub fn load(&self, loader: &str, name: &str, bytes: &[u8], checksums: &[(&str, &str)], layout: Option<&str>) {
        let _turn = one_loader_at_a_time();
        fs::write(self.files_dir.join(name), bytes).unwrap();
        let checksums =
            serde_json::to_string(&checksums.iter().cloned().collect::<std::collections::BTreeMap<_, _>>()).unwrap();
        let mut cmd = Command::new(&self.swh);
        cmd.args(["loader", "run", loader, &format!("{}{name}", self.files_url), &format!("checksums={checksums}")])
            .env("SWH_CONFIG_FILENAME", &self.loader_config)
            .stdin(Stdio::null());
        if let Some(layout) = layout {
            cmd.arg(format!("checksum_layout={layout}"));
        }
        let out = cmd.output().unwrap();
        let mut log = String::from_utf8_lossy(&out.stdout).into_owned();
        log.push_str(&String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success() && log.contains("'status': 'eventful'"),
            "the {loader} loader failed on {name}:\n{log}"
        );
    }

    /// Archives the git repository at `repo` with SWH's real git loader, as Save Code Now would.
    pub fn load_git(&self, repo: &Path) {
        let _turn = one_loader_at_a_time();
        let out = Command::new(&self.swh)
            .args(["loader", "run", "git"])
            .arg(format!("file://{}", repo.display()))
            .env("SWH_CONFIG_FILENAME", &self.loader_config)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let mut log = String::from_utf8_lossy(&out.stdout).into_owned();
        log.push_str(&String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && log.contains("'status': 'eventful'"), "the git loader failed:\n{log}");
    }

    /// Records `data` as a content the archive skipped (as it does files over 100 MiB: listed,
    /// no bytes), with a `checksum-<algo>` ExtID for `hex`, as the content loader would have
    /// given it. Returns its SWHID.
    pub fn add_skipped_content(&self, data: &[u8], algo: &str, hex: &str) -> String {
        let python = self.swh.parent().unwrap().join("python");
        let file = tempfile::NamedTempFile::new().unwrap();
        fs::write(file.path(), data).unwrap();
        let out = Command::new(python)
            .arg("-c")
            .arg(ADD_SKIPPED_CONTENT)
            .arg(&self.storage_url)
            .arg(file.path())
            .arg(format!("checksum-{algo}"))
            .arg(hex)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "adding a skipped content failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// The vault's flat bundle of a directory, cooked by SWH's own cooker from this archive
    /// (the local setup has no vault service to ask).
    pub fn cook_flat(&self, swhid: &str) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle.tar.gz");
        let out = Command::new(&self.swh)
            .arg("vault")
            .arg("cook")
            .arg("-C")
            .arg(&self.loader_config)
            .args(["--bundle-type", "flat", swhid])
            .arg(&bundle)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "swh vault cook failed:\n{}", String::from_utf8_lossy(&out.stderr));
        fs::read(&bundle).unwrap()
    }

    /// Archives the tree at `path` straight into storage, as swh-model sees it, with a
    /// `nar-sha256` ExtID: for trees the directory loader cannot take (swh.loader.core 5.24.2
    /// fails on names that are not UTF-8, which git repositories can hold). Returns its SWHID.
    pub fn add_tree(&self, path: &Path, nar_hex: &str) -> String {
        let python = self.swh.parent().unwrap().join("python");
        let out = Command::new(python)
            .arg("-c")
            .arg(ADD_TREE)
            .arg(&self.storage_url)
            .arg(path)
            .arg(nar_hex)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "adding {} failed:\n{}", path.display(), String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

/// One loader at a time: the in-memory storage loses origins under concurrent visits ("Unknown
/// origin" on origin_visit_add).
fn one_loader_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

const ADD_SKIPPED_CONTENT: &str = r#"
import sys
from swh.model.model import ExtID, SkippedContent
from swh.model.swhids import CoreSWHID, ObjectType
from swh.storage import get_storage

storage_url, path, extid_type, hex = sys.argv[1:5]
storage = get_storage("remote", url=storage_url)
skipped = SkippedContent.from_data(open(path, "rb").read(), reason="Content too large")
storage.skipped_content_add([skipped])
target = CoreSWHID(object_type=ObjectType.CONTENT, object_id=skipped.sha1_git)
storage.extid_add([ExtID(extid_type=extid_type, extid=bytes.fromhex(hex), target=target, extid_version=1)])
print(target)
"#;

const ADD_TREE: &str = r#"
import os, sys
from swh.model import from_disk
from swh.model.model import ExtID
from swh.model.swhids import CoreSWHID, ObjectType
from swh.storage import get_storage

storage_url, path, nar_hex = sys.argv[1], os.fsencode(sys.argv[2]), sys.argv[3]
storage = get_storage("remote", url=storage_url)
root = from_disk.Directory.from_disk(path=path, max_content_length=None)
contents, directories = [], []
for obj in root.iter_tree():
    if isinstance(obj, from_disk.Content):
        contents.append(obj.to_model().with_data())
    elif isinstance(obj, from_disk.Directory):
        directories.append(obj.to_model())
storage.content_add(contents)
storage.directory_add(directories)
target = CoreSWHID(object_type=ObjectType.DIRECTORY, object_id=root.hash)
storage.extid_add([ExtID(extid_type="nar-sha256", extid=bytes.fromhex(nar_hex), target=target, extid_version=1)])
print(target)
"#;
