//! The program under test: started in a process group of its own, watched, and stopped by
//! signalling the whole group (SIGTERM, then SIGKILL), so a forking proxy's children go too.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a program has to accept its first connection.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(2);
/// Lines of stderr kept (the tail shown when the program fails).
const KEEP_LINES: usize = 12;

/// The last lines a program wrote to stderr, and every line that says it panicked.
#[derive(Default)]
struct Stderr {
    tail: VecDeque<String>,
    panics: Vec<String>,
    lines: u64,
    /// The pipe reached its end (the program and its children closed it).
    closed: bool,
}

/// A running program.
pub struct Program {
    child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<Stderr>>,
    exited: Option<ExitStatus>,
}

/// A free loopback port: bound, read, released. Another process could take it in between;
/// on a test machine's loopback that race is rare, and a start that fails says so.
pub fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

impl Program {
    /// Starts `command` with `args` and waits until `127.0.0.1:port` accepts a connection.
    pub fn start(command: &str, args: &[String], port: u16) -> Result<Program, String> {
        let mut program = Program::spawn(command, args, port)?;
        program.wait_ready()?;
        Ok(program)
    }

    /// Starts `command` with `args`, without waiting for it to listen.
    pub fn spawn(command: &str, args: &[String], port: u16) -> Result<Program, String> {
        let mut child = Command::new(command)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start `{command}`: {e}"))?;
        let stderr = Arc::new(Mutex::new(Stderr::default()));
        if let Some(pipe) = child.stderr.take() {
            let keep = stderr.clone();
            // GRADE_SHOW_STDERR=1 echoes the program's stderr, to see what it did.
            let echo = std::env::var_os("GRADE_SHOW_STDERR").is_some();
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if echo {
                        eprintln!("[program] {line}");
                    }
                    let mut s = keep.lock().unwrap_or_else(|e| e.into_inner());
                    s.lines += 1;
                    if line.contains("panicked at") && s.panics.len() < 4 {
                        s.panics.push(line.clone());
                    }
                    if s.tail.len() == KEEP_LINES {
                        s.tail.pop_front();
                    }
                    s.tail.push_back(line);
                }
                keep.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
            });
        }
        Ok(Program {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            stderr,
            exited: None,
        })
    }

    /// Waits until the program accepts a connection, or exits, or `START_TIMEOUT` passes.
    fn wait_ready(&mut self) -> Result<(), String> {
        let program = self;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = program.exit_status() {
                program.settle();
                return Err(format!(
                    "the program exited ({}) before it accepted connections{}",
                    status_words(status),
                    program.stderr_words()
                ));
            }
            if TcpStream::connect_timeout(&program.addr, Duration::from_millis(500)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let words = program.stderr_words();
                program.stop();
                return Err(format!(
                    "the program did not accept connections on {} within {} s{words}",
                    program.addr,
                    START_TIMEOUT.as_secs()
                ));
            }
            // Polling a port: there is no other way to learn that another process listens.
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// The process id (also the process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, once the program has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Waits up to `limit` for the program to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exit_status() {
                self.settle();
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Once the program has exited: waits up to 1 s for the stderr reader to take the last
    /// lines (a forked child may still hold the pipe, hence the bound).
    fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if self.stderr.lock().unwrap_or_else(|e| e.into_inner()).closed {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The last lines of stderr, as `: last lines of stderr: ...`, or nothing.
    pub fn stderr_words(&self) -> String {
        let s = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        if s.tail.is_empty() {
            return String::new();
        }
        let mut text = String::from("; last lines of stderr:");
        for line in &s.tail {
            text.push_str("\n        ");
            text.push_str(line);
        }
        text
    }

    /// All of the stderr tail, as one string (for the broken-config check).
    pub fn stderr_text(&self) -> String {
        let s = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        s.tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// The first panic line seen so far, with the line after it (the `todo!` message).
    pub fn panic_words(&self) -> Option<String> {
        let s = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        let first = s.panics.first()?;
        let next = s
            .tail
            .iter()
            .skip_while(|l| *l != first)
            .nth(1)
            .cloned()
            .unwrap_or_default();
        Some(format!("{first} {next}").trim().to_string())
    }

    /// Stops the whole process group: SIGTERM, then SIGKILL after the grace period.
    pub fn stop(&mut self) {
        let group = self.child.id() as libc::pid_t;
        if self.exit_status().is_none() {
            signal_group(group, libc::SIGTERM);
            if self.wait_exit(GRACE).is_none() {
                signal_group(group, libc::SIGKILL);
                let _ = self.child.wait();
            }
        }
        // Children that outlived their parent (a forked child still serving) go too.
        signal_group(group, libc::SIGKILL);
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal_group(group: libc::pid_t, signal: libc::c_int) {
    if group > 1 {
        // SAFETY: kill(2) with a negative pid signals that process group and touches no memory.
        unsafe {
            libc::kill(-group, signal);
        }
    }
}

/// An exit status in words: `status 101` or `killed by signal 11 (SIGSEGV)`.
pub fn status_words(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("status {code}");
    }
    match status.signal() {
        Some(11) => "killed by signal 11, SIGSEGV".into(),
        Some(13) => "killed by signal 13, SIGPIPE".into(),
        Some(6) => "killed by signal 6, SIGABRT".into(),
        Some(9) => "killed by signal 9, SIGKILL".into(),
        Some(n) => format!("killed by signal {n}"),
        None => "an unknown status".into(),
    }
}

/// Zombie children of `pid`: processes in state Z whose parent is `pid` (Linux `/proc`).
pub fn zombie_children(pid: u32) -> Result<usize, String> {
    let dir = std::fs::read_dir("/proc").map_err(|e| format!("cannot read /proc: {e}"))?;
    let mut count = 0;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{name}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses, so split after
        // the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let ppid = fields.next().unwrap_or("");
        if state == "Z" && ppid == pid.to_string() {
            count += 1;
        }
    }
    Ok(count)
}
