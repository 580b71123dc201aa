//! The C programs of `chapters/c/`, built with `make -C chapters/c` and run for real: each
//! test shows the failure its chapter describes, then the same scenario through the stage
//! that fixes it. (`tests/c_course_failures.rs` shows chapter 01's failures with a Rust
//! imitation of the C, which needs no compiler.)
//!
//! Without gcc or make the tests print why and pass, so a student without a C toolchain can
//! still run `cargo test`; under CI (`CI` set) a missing toolchain fails them instead.
//!
//! Run with `cargo test --test c_programs -- --nocapture` to see what each program did.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use support::{backend, dead_addr, raw_backend, read_request_head, Proxy, TIMEOUT};

const STAGE1: &str = env!("CARGO_BIN_EXE_stage1");
const STAGE2: &str = env!("CARGO_BIN_EXE_stage2");
const STAGE3: &str = env!("CARGO_BIN_EXE_stage3");
const STAGE5: &str = env!("CARGO_BIN_EXE_stage5");
/// How long a client waits before the test calls it "not served". The C programs have no
/// timeouts of their own, so without this a failing scenario would hang.
const PATIENCE: Duration = Duration::from_millis(500);
const CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

/// Builds the programs once per test binary, into a fresh directory so that every run
/// compiles (and would show every warning); `None` when there is no toolchain and no CI.
fn c_bin_dir() -> Option<&'static PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let has = |tool: &str| {
            Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !has("gcc") || !has("make") {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but gcc or make is missing: .ci/run installs them"
            );
            println!("SKIPPED: gcc or make not found; install them to run the C programs");
            return None;
        }
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("c-programs");
        let _ = std::fs::remove_dir_all(&dir);
        let source = concat!(env!("CARGO_MANIFEST_DIR"), "/chapters/c");
        let out = Command::new("make")
            .args(["-C", source])
            .arg(format!("BIN={}", dir.display()))
            .output()
            .expect("make runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "make -C chapters/c failed:\n{stderr}");
        assert!(
            !stderr.contains("warning"),
            "the C programs must compile without warnings:\n{stderr}"
        );
        Some(dir)
    })
    .as_ref()
}

/// A C program on an ephemeral port. It runs in a process group of its own, so the drop
/// kills the forked children too, then reaps the program.
struct CProgram {
    child: Child,
    addr: SocketAddr,
}

impl CProgram {
    /// `None` when the toolchain is missing (see `c_bin_dir`).
    fn start(name: &str, backends: &[SocketAddr]) -> Option<CProgram> {
        let bin = c_bin_dir()?.join(name);
        let mut cmd = Command::new(&bin);
        cmd.args(["--listen", "127.0.0.1:0"]);
        for backend in backends {
            cmd.args(["--backend", &backend.to_string()]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null()) // "connect to backend: Connection refused" is expected
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let mut program = CProgram {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let line = rx
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("{name} printed no listening line within {TIMEOUT:?}"));
        program.addr = line.parse().expect("listening line has an address");
        Some(program)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for CProgram {
    fn drop(&mut self) {
        // The group id is the program's pid (process_group(0)); only what it forked is in it.
        if let Ok(group) = libc::pid_t::try_from(self.child.id()) {
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
    }
}

fn body_len(response: &[u8]) -> usize {
    response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |p| response.len() - p - 4)
}

#[test]
fn reverse_proxy_cuts_a_10_kb_response_and_stage1_does_not() {
    let backend = raw_backend(|mut s| {
        read_request_head(&mut s);
        let _ =
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10240\r\nConnection: close\r\n\r\n");
        let _ = s.write_all(&[b'x'; 10240]);
    });
    let Some(c) = CProgram::start("reverse_proxy", &[backend]) else {
        return;
    };
    let mut client = support::connect(c.addr);
    client.send(CLOSE);
    let got = client.read_to_close().unwrap_or_default();
    println!(
        "10 KB response, reverse_proxy: {} of 10240 body bytes",
        body_len(&got)
    );
    assert!(got.starts_with(b"HTTP/1.1 200"), "the head arrives");
    assert!(got.len() < 4096, "the response is cut at the 4 KiB buffer");

    let stage = Proxy::start(STAGE1, &[backend], &[]);
    let mut client = stage.connect();
    client.send(CLOSE);
    assert_eq!(client.read_response("GET").body.len(), 10240);
}

/// The body follows once the head has reached the backend: two packets, as after any slow
/// network. The C program's one read() took only the first.
#[test]
fn reverse_proxy_loses_a_body_in_a_second_packet_and_stage1_does_not() {
    let (head_tx, head_rx) = mpsc::channel::<()>();
    let head_tx = Arc::new(Mutex::new(head_tx));
    let (body_tx, body_rx) = mpsc::channel::<Vec<u8>>();
    let body_tx = Arc::new(Mutex::new(body_tx));
    let backend = raw_backend(move |mut s| {
        read_request_head(&mut s);
        let _ = head_tx.lock().unwrap().send(());
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut body = [0u8; 5];
        let got = std::io::Read::read_exact(&mut s, &mut body)
            .map(|()| body.to_vec())
            .unwrap_or_default();
        let _ = body_tx.lock().unwrap().send(got);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    });
    let head = b"POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\n";
    let Some(c) = CProgram::start("reverse_proxy", &[backend]) else {
        return;
    };
    let mut client = support::connect(c.addr);
    client.send(head);
    head_rx.recv_timeout(TIMEOUT).unwrap();
    client.send(b"hello");
    let body = body_rx.recv_timeout(TIMEOUT).unwrap();
    println!(
        "body in a second packet, reverse_proxy: the backend got {:?}",
        String::from_utf8_lossy(&body)
    );
    assert!(body.is_empty());

    let stage = Proxy::start(STAGE1, &[backend], &[]);
    let mut client = stage.connect();
    client.send(head);
    head_rx.recv_timeout(TIMEOUT).unwrap();
    client.send(b"hello");
    assert_eq!(body_rx.recv_timeout(TIMEOUT).unwrap(), b"hello");
    assert_eq!(client.read_response("POST").status, 200);
}

/// A first client connects and says nothing yet; a second one asks. `true` when the second
/// is answered while the first is still connected. The first is answered in the end either
/// way, so a program that serializes shows it waited rather than lost the request.
fn second_client_is_served(addr: SocketAddr) -> bool {
    let mut first = support::connect(addr);
    let mut second = support::connect(addr);
    second.send(CLOSE);
    second.stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let served = second.try_read_response("GET").map(|r| r.status) == Some(200);
    if !served {
        second.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    }
    first.send(CLOSE);
    assert_eq!(first.read_response("GET").status, 200, "the first client");
    if !served {
        // It waited in the listen queue, and is served now that the first is done.
        let mut again = support::connect(addr);
        again.send(CLOSE);
        assert_eq!(again.read_response("GET").status, 200);
    }
    served
}

#[test]
fn reverse_proxy_makes_a_second_client_wait_and_stage2_does_not() {
    let b = backend("b1");
    let Some(c) = CProgram::start("reverse_proxy", &[b.addr()]) else {
        return;
    };
    let served = second_client_is_served(c.addr);
    println!("second client, reverse_proxy: served while the first is connected: {served}");
    assert!(!served, "one client at a time: the second waits");

    let stage = Proxy::start(STAGE2, &[b.addr()], &[]);
    assert!(second_client_is_served(stage.addr));
}

#[test]
fn threaded_proxy_serves_two_clients_at_once_as_stage3_does() {
    let b = backend("b1");
    let Some(c) = CProgram::start("threaded_proxy", &[b.addr()]) else {
        return;
    };
    assert!(second_client_is_served(c.addr), "threaded_proxy");
    let stage = Proxy::start(STAGE3, &[b.addr()], &[]);
    assert!(second_client_is_served(stage.addr), "stage 3");
}

/// `(state)` of every process whose parent is `parent`, from `/proc/*/stat`.
fn children_of(parent: u32) -> Vec<char> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut states = Vec::new();
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue; // ended meanwhile
        };
        // "pid (comm) state ppid ...": comm may hold ')' itself, so split after the last one.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if fields.next().and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            states.push(state);
        }
    }
    states
}

const CONNECTIONS: usize = 10;

fn serve_connections(addr: SocketAddr) {
    for _ in 0..CONNECTIONS {
        let mut client = support::connect(addr);
        client.send(CLOSE);
        assert_eq!(client.read_response("GET").status, 200);
    }
}

#[test]
fn fork_proxy_leaves_zombies_and_stage2_reaps_them() {
    let b = backend("b1");
    let Some(c) = CProgram::start("fork_proxy", &[b.addr()]) else {
        return;
    };
    serve_connections(c.addr);
    // A child becomes a zombie a moment after its client got the answer; wait for all.
    let deadline = Instant::now() + TIMEOUT;
    let zombies = loop {
        let zombies = children_of(c.pid()).iter().filter(|&&s| s == 'Z').count();
        if zombies >= CONNECTIONS || Instant::now() > deadline {
            break zombies;
        }
        thread::sleep(Duration::from_millis(20));
    };
    println!("fork_proxy after {CONNECTIONS} connections: {zombies} zombie children");
    assert_eq!(zombies, CONNECTIONS, "one zombie per connection served");

    let stage = Proxy::start(STAGE2, &[b.addr()], &[]);
    serve_connections(stage.addr);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let children = children_of(stage.pid());
        if children.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stage 2 left children: {children:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Sequential requests on new connections; how many got a valid HTTP response.
fn answered(addr: SocketAddr, requests: usize) -> usize {
    (0..requests)
        .filter(|_| {
            let mut client = support::connect(addr);
            client.send(CLOSE);
            client
                .try_read_response("GET")
                .is_some_and(|r| r.status == 200)
        })
        .count()
}

#[test]
fn balancer_sends_a_share_to_a_dead_backend_and_stage5_does_not() {
    let live = backend("live");
    let backends = [live.addr(), dead_addr()];
    let Some(c) = CProgram::start("proxy_load_balancer", &backends) else {
        return;
    };
    let got = answered(c.addr, 6);
    println!("proxy_load_balancer, one of two backends dead: {got} of 6 answered");
    assert_eq!(got, 3, "every second client gets an empty reply");

    let stage = Proxy::start(STAGE5, &backends, &[]);
    assert_eq!(
        answered(stage.addr, 6),
        6,
        "stage 5 skips the refusing backend"
    );
}
