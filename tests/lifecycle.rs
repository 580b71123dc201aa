//! A running proxy's signals, against the real stage 8 binary: the access log in a file and
//! its reopening on SIGUSR1, graceful shutdown on SIGTERM (a slow request finishes, new
//! connections are refused, idle keep-alive connections close, exit 0; a second signal exits
//! at once), and reload on SIGHUP (a valid file takes over, an invalid one is logged with its
//! line and column, and not one request fails while reloading under load).
//!
//! Every wait has a deadline, and waits on something observable (a port, a channel, a line in
//! a file), never on a fixed sleep.

mod support;

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::{backend, connect, raw_backend, read_request_head, TIMEOUT};

const STAGE: &str = env!("CARGO_BIN_EXE_stage8");

/// A scratch directory for one test's config and log files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("revproxy-lc-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Stage 8 started on `--config FILE`, with stderr in a file; killed on drop.
struct Stage {
    child: Child,
    addr: SocketAddr,
    stderr: PathBuf,
}

impl Stage {
    fn start(config: &Path, stderr: &Path, log_level: &str) -> Stage {
        let config = config.display().to_string();
        Stage::spawn(
            STAGE,
            &["--config", &config, "--log-level", log_level],
            stderr,
        )
    }

    /// Starts `bin` with `args` and `--listen 127.0.0.1:0`.
    fn spawn(bin: &str, args: &[&str], stderr: &Path) -> Stage {
        let errors = fs::File::create(stderr).unwrap();
        let mut child = Command::new(bin)
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(errors)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let Ok(addr) = rx.recv_timeout(TIMEOUT) else {
            let _ = child.kill();
            panic!(
                "stage8 did not start: {}",
                fs::read_to_string(stderr).unwrap()
            );
        };
        Stage {
            child,
            addr: addr.parse().unwrap(),
            stderr: stderr.to_owned(),
        }
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill takes no pointers; the pid is our own child, not yet reaped.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill failed");
    }

    /// The exit status, once the process has ended, within `limit`.
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until stderr holds `count` lines containing `needle`.
    fn wait_stderr(&self, needle: &str, count: usize) -> bool {
        wait_for(|| self.stderr().matches(needle).count() >= count)
    }

    fn get(&self, path: &str) -> support::Response {
        let mut conn = connect(self.addr);
        conn.send(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        conn.read_response("GET")
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `done` until it holds, for at most [`TIMEOUT`].
fn wait_for(done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    done()
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn config(backend: SocketAddr, extra: &str) -> String {
    format!("{extra}\n[upstreams.app]\nservers = [\"{backend}\"]\n")
}

/// Waits until a connection to `addr` is refused (the listener was shut down).
fn wait_refused(addr: SocketAddr) -> bool {
    wait_for(|| {
        matches!(
            TcpStream::connect_timeout(&addr, TIMEOUT),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused
        )
    })
}

/// A backend that tells `arrived` when a request came, then answers only once `release`
/// says so (or after [`TIMEOUT`]).
fn held_backend() -> (SocketAddr, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (arrived_tx, arrived) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let arrived_tx = Arc::new(Mutex::new(arrived_tx));
    let release_rx = Arc::new(Mutex::new(release_rx));
    let addr = raw_backend(move |mut stream| {
        read_request_head(&mut stream);
        let _ = arrived_tx.lock().unwrap().send(());
        let _ = release_rx.lock().unwrap().recv_timeout(TIMEOUT);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow");
    });
    (addr, arrived, release)
}

#[test]
fn the_access_log_file_is_reopened_on_sigusr1_after_a_rename() {
    let dir = Scratch::new("reopen");
    let b = backend("b1");
    let log = dir.path("access.log");
    let extra = format!("[log]\naccess_log = {:?}\n", log.display().to_string());
    fs::write(dir.path("proxy.toml"), config(b.addr(), &extra)).unwrap();
    let stage = Stage::start(&dir.path("proxy.toml"), &dir.path("stderr"), "warn");

    let mut conn = connect(stage.addr);
    for i in 0..20 {
        conn.send(format!("GET /echo/before/{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        assert_eq!(conn.read_response("GET").status, 200);
    }
    assert!(
        wait_for(|| lines(&log).len() == 20),
        "20 lines: {:?}",
        lines(&log)
    );
    // What logrotate does: rename, then signal.
    let rotated = dir.path("access.log.1");
    fs::rename(&log, &rotated).unwrap();
    stage.signal(libc::SIGUSR1);
    assert!(
        wait_for(|| log.exists()),
        "a new file is opened at the path"
    );
    for i in 0..15 {
        // In fragments, on the same keep-alive connection.
        conn.send_in_fragments(
            format!("GET /echo/after/{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
            7,
        );
        assert_eq!(conn.read_response("GET").status, 200);
    }
    assert!(
        wait_for(|| lines(&log).len() == 15),
        "15 lines: {:?}",
        lines(&log)
    );
    let old = lines(&rotated);
    let new = lines(&log);
    assert_eq!(old.len(), 20, "no line lost or moved: {old:?}");
    assert!(old
        .iter()
        .all(|l| l.contains("\"GET /echo/before/") && l.contains(" 200 ")));
    assert!(
        new.iter()
            .all(|l| l.contains("\"GET /echo/after/") && l.contains(" 200 ")),
        "{new:?}"
    );
    assert!(
        !stage.stderr().contains("GET /"),
        "access lines stay out of stderr"
    );
}

#[test]
fn json_access_lines_parse_and_name_the_upstream_and_the_cache_verdict() {
    let dir = Scratch::new("json");
    let b = backend("b1");
    let log = dir.path("access.json");
    let extra = format!(
        "[cache]\nenabled = true\n[log]\naccess_log = {:?}\nformat = \"json\"\n",
        log.display().to_string()
    );
    fs::write(dir.path("proxy.toml"), config(b.addr(), &extra)).unwrap();
    let stage = Stage::start(&dir.path("proxy.toml"), &dir.path("stderr"), "warn");
    let paths = ["/echo/one", "/?x=%22y%22&z=1", "/cacheable", "/cacheable"];
    // One keep-alive connection: each line is written before the next request is read, so
    // the lines come in order (across connections they may not).
    let mut conn = connect(stage.addr);
    for path in paths {
        conn.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        assert_eq!(conn.read_response("GET").status, 200);
    }
    // An upload, chunked and in fragments: its line counts the 11 body bytes received.
    conn.send_in_fragments(
        b"POST /echo/upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n",
        5,
    );
    assert_eq!(conn.read_response("POST").status, 200);
    assert!(wait_for(|| lines(&log).len() == 5), "{:?}", lines(&log));
    let mut all = lines(&log);
    let upload: serde_json::Value =
        serde_json::from_str(&all.pop().expect("five lines")).expect("a JSON line");
    assert_eq!(
        (&upload["method"], &upload["request_bytes"]),
        (&serde_json::json!("POST"), &serde_json::json!(11)),
        "{upload}"
    );
    let seen: Vec<(String, serde_json::Value)> = all
        .iter()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            assert_eq!(v["status"], 200, "{line}");
            assert_eq!(v["method"], "GET", "{line}");
            assert_eq!(v["client"], "127.0.0.1", "{line}");
            assert!(
                v["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
                "{line}"
            );
            assert!(
                v["time"].as_str().is_some_and(|t| t.ends_with('Z')),
                "{line}"
            );
            for key in ["user", "route", "tls", "bytes", "referer", "user_agent"] {
                assert!(v.get(key).is_some(), "{key} present in {line}");
            }
            assert_eq!(v["request_bytes"], 0, "a GET has no body: {line}");
            (v["target"].as_str().unwrap().to_owned(), v.clone())
        })
        .collect();
    let targets: Vec<&str> = seen.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(targets, paths);
    // Relayed from the backend, then answered from the cache without it.
    assert_eq!(seen[0].1["upstream"], b.addr().to_string());
    assert_eq!(seen[2].1["cache"], "MISS");
    assert_eq!(seen[3].1["cache"], "HIT");
    assert!(seen[3].1["upstream"].is_null(), "a hit has no upstream");
}

#[test]
fn sigterm_lets_a_slow_request_finish_refuses_new_connections_and_exits_0() {
    let dir = Scratch::new("term");
    let (slow, arrived, release) = held_backend();
    let extra = "[server]\nshutdown_timeout_ms = 8000\n";
    fs::write(dir.path("proxy.toml"), config(slow, extra)).unwrap();
    let mut stage = Stage::start(&dir.path("proxy.toml"), &dir.path("stderr"), "warn");

    let mut conn = connect(stage.addr);
    conn.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    arrived
        .recv_timeout(TIMEOUT)
        .expect("the request reached the backend");
    stage.signal(libc::SIGTERM);
    assert!(
        wait_refused(stage.addr),
        "new connections are refused once shutting down"
    );
    assert!(
        stage.child.try_wait().unwrap().is_none(),
        "still running for the slow request"
    );
    release.send(()).unwrap();
    let res = conn.read_response("GET");
    assert_eq!((res.status, res.text().as_str()), (200, "slow"));
    assert_eq!(res.header("connection"), Some("close"), "{res:?}");
    assert!(
        conn.read_to_close().is_some(),
        "the connection closes after it"
    );
    let status = stage.wait_exit(TIMEOUT).expect("the process exits");
    assert_eq!(status.code(), Some(0), "{}", stage.stderr());
}

/// Stages 3 to 5 get the same shutdown through the library's accept loop.
#[test]
fn stages_3_to_5_drain_on_sigterm_too() {
    let dir = Scratch::new("flags");
    for bin in [
        env!("CARGO_BIN_EXE_stage3"),
        env!("CARGO_BIN_EXE_stage4"),
        env!("CARGO_BIN_EXE_stage5"),
    ] {
        let (slow, arrived, release) = held_backend();
        let slow = slow.to_string();
        let args = ["--backend", &slow, "--log-level", "warn"];
        let mut stage = Stage::spawn(bin, &args, &dir.path("stderr"));
        let mut conn = connect(stage.addr);
        conn.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
        arrived
            .recv_timeout(TIMEOUT)
            .expect("the request reached the backend");
        stage.signal(libc::SIGTERM);
        assert!(wait_refused(stage.addr), "{bin}: new connections refused");
        release.send(()).unwrap();
        let res = conn.read_response("GET");
        assert_eq!(res.status, 200, "{bin}");
        assert_eq!(res.header("connection"), Some("close"), "{bin}: {res:?}");
        let status = stage.wait_exit(TIMEOUT).expect("the process exits");
        assert_eq!(status.code(), Some(0), "{bin}: {}", stage.stderr());
    }
}

#[test]
fn sigterm_closes_an_idle_keep_alive_connection_at_once() {
    let dir = Scratch::new("idle");
    let b = backend("b1");
    // An idle timeout far beyond the test's patience: only the shutdown can close it.
    let extra = "[server]\nidle_timeout_ms = 600000\n";
    fs::write(dir.path("proxy.toml"), config(b.addr(), extra)).unwrap();
    let mut stage = Stage::start(&dir.path("proxy.toml"), &dir.path("stderr"), "warn");
    let mut conn = connect(stage.addr);
    conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let res = conn.read_response("GET");
    assert_eq!(res.status, 200);
    assert_eq!(
        res.header("connection"),
        None,
        "kept alive before the signal"
    );
    stage.signal(libc::SIGTERM);
    let rest = conn
        .read_to_close()
        .expect("closed within the read timeout");
    assert!(rest.is_empty(), "closed without a word: {rest:?}");
    let status = stage.wait_exit(TIMEOUT).expect("the process exits");
    assert_eq!(status.code(), Some(0), "{}", stage.stderr());
}

#[test]
fn a_second_sigterm_exits_at_once_with_1() {
    let dir = Scratch::new("twice");
    let (slow, arrived, _release) = held_backend();
    let extra = "[server]\nshutdown_timeout_ms = 60000\n";
    fs::write(dir.path("proxy.toml"), config(slow, extra)).unwrap();
    let mut stage = Stage::start(&dir.path("proxy.toml"), &dir.path("stderr"), "warn");
    let mut conn = connect(stage.addr);
    conn.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    arrived
        .recv_timeout(TIMEOUT)
        .expect("the request reached the backend");
    stage.signal(libc::SIGTERM);
    // The first is taken (the listener is shut) before the second is sent: two pending
    // signals of one kind would merge into one.
    assert!(wait_refused(stage.addr));
    stage.signal(libc::SIGTERM);
    let status = stage
        .wait_exit(Duration::from_secs(5))
        .expect("exits at once");
    assert_eq!(status.code(), Some(1), "{}", stage.stderr());
}

#[test]
fn sighup_reloads_a_valid_file_and_keeps_the_old_one_when_invalid() {
    let dir = Scratch::new("reload");
    let (a, b) = (backend("a"), backend("b"));
    let file = dir.path("proxy.toml");
    fs::write(&file, config(a.addr(), "")).unwrap();
    let stage = Stage::start(&file, &dir.path("stderr"), "info");
    let served_by = |stage: &Stage| stage.get("/").header("x-backend-server").map(str::to_owned);
    assert_eq!(served_by(&stage).as_deref(), Some("a"));
    // A keep-alive connection opened before the reload follows it from its next request.
    let mut kept = connect(stage.addr);
    kept.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        kept.read_response("GET").header("x-backend-server"),
        Some("a")
    );

    fs::write(&file, config(b.addr(), "")).unwrap();
    stage.signal(libc::SIGHUP);
    assert!(stage.wait_stderr("reloaded", 1), "{}", stage.stderr());
    assert_eq!(served_by(&stage).as_deref(), Some("b"));
    kept.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        kept.read_response("GET").header("x-backend-server"),
        Some("b")
    );

    // A typo on line 3, column 1: refused, and the running configuration stays.
    let invalid = format!(
        "[server]\nidle_timeout_ms = 1000\nworkerz = 4\n{}",
        config(a.addr(), "")
    );
    fs::write(&file, invalid).unwrap();
    stage.signal(libc::SIGHUP);
    let place = format!("{}:3:1", file.display());
    assert!(
        stage.wait_stderr(&place, 1),
        "the error names file:line:column: {}",
        stage.stderr()
    );
    assert!(stage.stderr().contains("unknown field `workerz`"));
    assert!(stage.stderr().contains("the running configuration stays"));
    assert_eq!(served_by(&stage).as_deref(), Some("b"));
}

#[test]
fn a_request_in_flight_during_a_reload_finishes_on_the_old_configuration() {
    let dir = Scratch::new("inflight");
    let (old, arrived, release) = held_backend();
    let new = backend("new");
    let file = dir.path("proxy.toml");
    fs::write(&file, config(old, "")).unwrap();
    let stage = Stage::start(&file, &dir.path("stderr"), "info");
    let mut conn = connect(stage.addr);
    conn.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    arrived
        .recv_timeout(TIMEOUT)
        .expect("the request reached the old backend");
    fs::write(&file, config(new.addr(), "")).unwrap();
    stage.signal(libc::SIGHUP);
    assert!(stage.wait_stderr("reloaded", 1), "{}", stage.stderr());
    let fresh = stage.get("/");
    assert_eq!(fresh.header("x-backend-server"), Some("new"), "{fresh:?}");
    release.send(()).unwrap();
    let res = conn.read_response("GET");
    assert_eq!((res.status, res.text().as_str()), (200, "slow"));
    // The connection lives on, and its next request goes to the new configuration.
    conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        conn.read_response("GET").header("x-backend-server"),
        Some("new")
    );
}

/// Threads of the stage process whose name starts with `prefix`.
fn threads_named(pid: u32, prefix: &str) -> usize {
    fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|task| {
            fs::read_to_string(task.path().join("comm")).is_ok_and(|n| n.starts_with(prefix))
        })
        .count()
}

#[test]
fn twenty_reloads_under_load_fail_no_request() {
    const RELOADS: usize = 20;
    let dir = Scratch::new("load");
    let (a, b) = (backend("a"), backend("b"));
    let file = dir.path("proxy.toml");
    let with_health = |addr: SocketAddr| {
        format!(
            "{}[upstreams.app.health]\npath = \"/health\"\ninterval_ms = 200\ntimeout_ms = 100\n",
            config(
                addr,
                &format!(
                    "[log]\naccess_log = {:?}\n",
                    dir.path("access.log").display().to_string()
                )
            )
        )
    };
    fs::write(&file, with_health(a.addr())).unwrap();
    let stage = Stage::start(&file, &dir.path("stderr"), "info");

    let addr = stage.addr;
    let ok = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop) = mpsc::channel::<()>();
    let client = {
        let ok = Arc::clone(&ok);
        thread::spawn(move || {
            let mut failures = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut sent = 0;
            // Bounded: 4000 requests or 20 s, whichever comes first, or the test's stop.
            while sent < 4000 && Instant::now() < deadline && stop.try_recv().is_err() {
                // Ten requests on a keep-alive connection, then one on its own connection.
                let mut conn = connect(addr);
                for i in 0..11 {
                    let close = if i == 10 { "Connection: close\r\n" } else { "" };
                    let request = format!("GET /echo/{sent} HTTP/1.1\r\nHost: t\r\n{close}\r\n");
                    sent += 1;
                    if conn.stream.write_all(request.as_bytes()).is_err() {
                        failures.push(format!("request {sent}: write failed"));
                        break;
                    }
                    match conn.try_read_response("GET") {
                        Some(res) if res.status == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(res) => failures.push(format!("request {sent}: {}", res.status)),
                        None => {
                            failures.push(format!("request {sent}: no response"));
                            break;
                        }
                    }
                }
            }
            (sent, failures)
        })
    };
    for i in 1..=RELOADS {
        let backend = if i % 2 == 1 { b.addr() } else { a.addr() };
        fs::write(&file, with_health(backend)).unwrap();
        stage.signal(libc::SIGHUP);
        // One reload at a time: two SIGHUPs pending at once would merge into one.
        assert!(
            stage.wait_stderr("reloaded", i),
            "reload {i}: {}",
            stage.stderr()
        );
        let served = ok.load(Ordering::Relaxed);
        assert!(
            wait_for(|| ok.load(Ordering::Relaxed) > served),
            "requests go on"
        );
    }
    let _ = stop_tx.send(());
    let (sent, failures) = client.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert_eq!(ok.load(Ordering::Relaxed), sent, "every response was 200");
    assert!(
        sent > RELOADS * 2,
        "the load ran through the reloads: {sent}"
    );
    // The old health checks stopped: one checker thread, not one per reload.
    let pid = stage.child.id();
    assert!(
        wait_for(|| threads_named(pid, "health-") == 1),
        "{} health threads after {RELOADS} reloads",
        threads_named(pid, "health-")
    );
    eprintln!("{sent} requests, all 200, through {RELOADS} reloads");
}

/// A reload that leaves `[cache]` as it was keeps the cache's entries (the origins would
/// otherwise get every request at once after each reload); one that changes it starts empty.
#[test]
fn a_reload_keeps_the_cache_unless_its_section_changed() {
    let dir = Scratch::new("reload-cache");
    let (a, b) = (backend("a"), backend("b"));
    let file = dir.path("proxy.toml");
    let cache = "[cache]\nenabled = true\n";
    fs::write(&file, config(a.addr(), cache)).unwrap();
    let stage = Stage::start(&file, &dir.path("stderr"), "info");
    let verdict = |stage: &Stage| {
        let res = stage.get("/cacheable");
        assert_eq!(res.status, 200);
        res.header("x-cache").unwrap_or("none").to_owned()
    };
    assert_eq!(verdict(&stage), "MISS");
    assert_eq!(verdict(&stage), "HIT");
    // Another backend, the same [cache]: still a hit, from the entry backend a gave.
    fs::write(&file, config(b.addr(), cache)).unwrap();
    stage.signal(libc::SIGHUP);
    assert!(stage.wait_stderr("reloaded", 1), "{}", stage.stderr());
    assert_eq!(stage.get("/").header("x-backend-server"), Some("b"));
    assert_eq!(verdict(&stage), "HIT");
    // A changed [cache]: empty.
    let smaller = "[cache]\nenabled = true\nmax_size = 1048576\n";
    fs::write(&file, config(b.addr(), smaller)).unwrap();
    stage.signal(libc::SIGHUP);
    assert!(stage.wait_stderr("reloaded", 2), "{}", stage.stderr());
    assert_eq!(verdict(&stage), "MISS");
}

/// A reload that leaves the limits as they were keeps the budgets spent: a client does not
/// get a fresh one with every reload. Changed limits start from full budgets.
#[test]
fn a_reload_keeps_spent_rate_limits_unless_the_limits_changed() {
    let dir = Scratch::new("reload-limits");
    let (a, b) = (backend("a"), backend("b"));
    let file = dir.path("proxy.toml");
    let limit = |burst: u32| {
        format!("[access]\nlimit = {{ rate = \"1r/m\", burst = {burst}, nodelay = true }}\n")
    };
    fs::write(&file, config(a.addr(), &limit(2))).unwrap();
    let stage = Stage::start(&file, &dir.path("stderr"), "info");
    let statuses = |n: usize| -> Vec<u16> { (0..n).map(|_| stage.get("/").status).collect() };
    // One request of the rate and a burst of two, then refused.
    assert_eq!(statuses(4), [200, 200, 200, 429]);
    fs::write(&file, config(b.addr(), &limit(2))).unwrap();
    stage.signal(libc::SIGHUP);
    assert!(stage.wait_stderr("reloaded", 1), "{}", stage.stderr());
    assert_eq!(statuses(1), [429], "the budget spent before the reload");
    fs::write(&file, config(b.addr(), &limit(3))).unwrap();
    stage.signal(libc::SIGHUP);
    assert!(stage.wait_stderr("reloaded", 2), "{}", stage.stderr());
    assert_eq!(stage.get("/").header("x-backend-server"), Some("b"));
}

/// Stage 9 keeps its cache across a reload only while the routes are the same: a route that
/// now sends to another group must not answer from what the old group said.
#[test]
fn stage9_drops_its_cache_when_a_route_moves_to_another_group() {
    let dir = Scratch::new("stage9-cache");
    let (a, b) = (backend("a"), backend("b"));
    let file = dir.path("proxy.toml");
    let text = |group: &str, retries: u32| {
        format!(
            "[cache]\nenabled = true\n\
             [upstreams.one]\nservers = [\"{}\"]\nretries = {retries}\n\
             [upstreams.two]\nservers = [\"{}\"]\n\
             [[routes]]\nname = \"site\"\npath = \"/\"\nupstream = \"{group}\"\n",
            a.addr(),
            b.addr()
        )
    };
    fs::write(&file, text("one", 2)).unwrap();
    let config = file.display().to_string();
    let args = ["--config", &config, "--log-level", "info"];
    let stage = Stage::spawn(env!("CARGO_BIN_EXE_stage9"), &args, &dir.path("stderr"));
    let fetch = |stage: &Stage| {
        let res = stage.get("/cacheable");
        let verdict = res.header("x-cache").unwrap_or("none").to_owned();
        (verdict, res.header("x-backend-server").map(str::to_owned))
    };
    assert_eq!(fetch(&stage).0, "MISS");
    assert_eq!(fetch(&stage).0, "HIT");
    // Something else changed, the routes did not: the entry stays.
    fs::write(&file, text("one", 1)).unwrap();
    stage.signal(libc::SIGHUP);
    assert!(stage.wait_stderr("reloaded", 1), "{}", stage.stderr());
    assert_eq!(fetch(&stage).0, "HIT");
    // The route now sends to group two: fetched from b, not served from a's entry.
    fs::write(&file, text("two", 1)).unwrap();
    stage.signal(libc::SIGHUP);
    assert!(stage.wait_stderr("reloaded", 2), "{}", stage.stderr());
    assert_eq!(fetch(&stage), ("MISS".to_owned(), Some("b".to_owned())));
}

/// Stage 9 reloads through the same code: its routes and groups change, and the JSON log
/// names the route that took each request.
#[test]
fn stage9_reloads_its_routes() {
    let dir = Scratch::new("stage9");
    let (a, b) = (backend("a"), backend("b"));
    let file = dir.path("proxy.toml");
    let log = dir.path("access.json");
    let routes = |route: &str, group: &str| {
        format!(
            "[log]\naccess_log = {:?}\nformat = \"json\"\n\
             [upstreams.one]\nservers = [\"{}\"]\n[upstreams.two]\nservers = [\"{}\"]\n\
             [[routes]]\nname = \"{route}\"\npath = \"/\"\nupstream = \"{group}\"\n",
            log.display().to_string(),
            a.addr(),
            b.addr()
        )
    };
    fs::write(&file, routes("first", "one")).unwrap();
    let config = file.display().to_string();
    let args = ["--config", &config, "--log-level", "info"];
    let stage = Stage::spawn(env!("CARGO_BIN_EXE_stage9"), &args, &dir.path("stderr"));
    assert_eq!(stage.get("/").header("x-backend-server"), Some("a"));
    fs::write(&file, routes("second", "two")).unwrap();
    stage.signal(libc::SIGHUP);
    assert!(stage.wait_stderr("reloaded", 1), "{}", stage.stderr());
    assert_eq!(stage.get("/").header("x-backend-server"), Some("b"));
    assert!(wait_for(|| lines(&log).len() == 2), "{:?}", lines(&log));
    let mut routes: Vec<String> = lines(&log)
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["route"].to_string())
        .collect();
    routes.sort();
    assert_eq!(routes, ["\"first\"", "\"second\""]);
}
