//! Child processes for `compare`: start one, wait until it says where it listens, and make
//! sure it is gone again whatever happens.
//!
//! Every child is started in a process group of its own and held in a [`ChildGuard`] whose
//! `Drop` stops the whole group (SIGTERM, a grace period, then SIGKILL) and reaps the child.
//! The group matters for stage2, which forks a process per connection: killing only the
//! parent would leave its children behind. Being in their own group also means a Ctrl-C in
//! the terminal reaches only the load tester, which then unwinds and lets the guards run;
//! nothing but the processes started here is ever signalled.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Time a child gets to exit after SIGTERM before it is killed.
const GRACE: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(10);
/// How long to wait for the output of a child that exited before it was ready.
const DRAIN: Duration = Duration::from_secs(1);
/// Last lines of output kept per child, to explain a failure.
const KEEP_LINES: usize = 20;

#[derive(Debug)]
pub enum ProcError {
    Spawn {
        name: String,
        source: io::Error,
    },
    Exited {
        name: String,
        status: ExitStatus,
        output: String,
    },
    NotReady {
        name: String,
        waited: Duration,
        output: String,
    },
    Interrupted,
}

impl fmt::Display for ProcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tail = |output: &str| {
            if output.is_empty() {
                String::new()
            } else {
                format!("; last output: {output}")
            }
        };
        match self {
            ProcError::Spawn { name, source } => write!(f, "cannot start {name}: {source}"),
            ProcError::Exited {
                name,
                status,
                output,
            } => write!(f, "{name} exited ({status}){}", tail(output)),
            ProcError::NotReady {
                name,
                waited,
                output,
            } => write!(
                f,
                "{name} printed no \"listening on 127.0.0.1:PORT\" line within {} s{}",
                waited.as_secs(),
                tail(output)
            ),
            ProcError::Interrupted => f.write_str("interrupted"),
        }
    }
}

impl std::error::Error for ProcError {}

/// A started child; dropping the guard stops its process group and reaps it.
pub struct ChildGuard {
    child: Child,
    name: String,
    output: Arc<Mutex<VecDeque<String>>>,
}

impl ChildGuard {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the child has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last lines it printed (stdout and stderr interleaved), joined by " | ".
    pub fn last_output(&self) -> String {
        match self.output.lock() {
            Ok(lines) => lines
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" | "),
            Err(_) => String::new(),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // The child is the leader of its group, so its pid is the group id.
        let group = self.child.id() as libc::pid_t;
        if matches!(self.child.try_wait(), Ok(None)) {
            signal_group(group, libc::SIGTERM);
            // Bounded: GRACE / POLL checks at most.
            let deadline = Instant::now() + GRACE;
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(POLL);
            }
        }
        // Whatever is left of the group (a forking stage's children) goes too.
        signal_group(group, libc::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal_group(group: libc::pid_t, signal: libc::c_int) {
    if group > 1 {
        // SAFETY: kill(2) has no memory-safety preconditions; a negative pid addresses the
        // process group we created for this child, and ESRCH (already gone) is fine.
        unsafe {
            libc::kill(-group, signal);
        }
    }
}

/// Starts `cmd` in its own process group and waits (at most `wait`) for a line with
/// `listening on ... 127.0.0.1:PORT` on its stdout or stderr; returns the guard and PORT.
pub fn spawn_ready(
    mut cmd: Command,
    name: &str,
    wait: Duration,
    stop: &AtomicBool,
) -> Result<(ChildGuard, u16), ProcError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let spawn_error = |source| ProcError::Spawn {
        name: name.to_string(),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn_error)?;
    let output = Arc::new(Mutex::new(VecDeque::with_capacity(KEEP_LINES)));
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    // From here on the guard owns the child, so every early return stops it.
    let mut guard = ChildGuard {
        child,
        name: name.to_string(),
        output: Arc::clone(&output),
    };
    let (tx, rx) = mpsc::channel();
    if let Some(pipe) = stdout {
        pump(pipe, tx.clone(), Arc::clone(&output)).map_err(spawn_error)?;
    }
    if let Some(pipe) = stderr {
        pump(pipe, tx, Arc::clone(&output)).map_err(spawn_error)?;
    }
    let deadline = Instant::now() + wait;
    // Bounded by `deadline`.
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(ProcError::Interrupted);
        }
        if let Some(status) = guard.exited() {
            // The pumps may not have stored its last words yet: wait (briefly) for both
            // pipes to reach end of file, which is when every line is in the ring.
            let drain_until = Instant::now() + DRAIN;
            while let Err(RecvTimeoutError::Timeout) | Ok(_) =
                rx.recv_timeout(drain_until.saturating_duration_since(Instant::now()))
            {
                if Instant::now() >= drain_until {
                    break;
                }
            }
            return Err(ProcError::Exited {
                name: name.to_string(),
                status,
                output: guard.last_output(),
            });
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(ProcError::NotReady {
                name: name.to_string(),
                waited: wait,
                output: guard.last_output(),
            });
        }
        match rx.recv_timeout((deadline - now).min(Duration::from_millis(100))) {
            Ok(line) => {
                if let Some(port) = listening_port(&line) {
                    return Ok((guard, port));
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            // Both pipes closed: the child is exiting; the next pass sees its status.
            Err(RecvTimeoutError::Disconnected) => thread::sleep(POLL),
        }
    }
}

/// Copies lines from a child's pipe until it closes: to `tx` (while someone waits for the
/// ready line) and into the ring of recent lines. Draining the pipe also keeps a chatty
/// child from blocking on a full pipe. Ends when the child's group has exited.
fn pump(
    pipe: impl Read + Send + 'static,
    tx: Sender<String>,
    keep: Arc<Mutex<VecDeque<String>>>,
) -> io::Result<()> {
    thread::Builder::new()
        .name("child-output".into())
        .spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut lines) = keep.lock() {
                    if lines.len() == KEEP_LINES {
                        lines.pop_front();
                    }
                    lines.push_back(line.clone());
                }
                // Fails once nobody waits any more; the line is still kept above.
                let _ = tx.send(line);
            }
        })?;
    Ok(())
}

/// The port in `... listening on [http://]127.0.0.1:PORT ...`.
pub fn listening_port(line: &str) -> Option<u16> {
    let after = &line[line.find("listening on")?..];
    let start = after.find("127.0.0.1:")? + "127.0.0.1:".len();
    let digits: String = after[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A port that was free a moment ago, for a child that cannot bind port 0 itself.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_lines() {
        assert_eq!(
            listening_port("backend b1 listening on http://127.0.0.1:8001"),
            Some(8001)
        );
        assert_eq!(
            listening_port(
                "2025-01-01T00:00:00Z INFO [main] stage3 listening on 127.0.0.1:45123 (threads)"
            ),
            Some(45123)
        );
        assert_eq!(listening_port("listening on 0.0.0.0:80"), None);
        assert_eq!(listening_port("connected to 127.0.0.1:80"), None);
        assert_eq!(listening_port("listening on 127.0.0.1:99999"), None);
    }

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        cmd
    }

    fn alive(pid: u32) -> bool {
        // A zombie is dead for our purposes: it holds no socket and runs no code.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }

    fn wait_gone(pid: u32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !alive(pid) {
                return true;
            }
            thread::sleep(POLL);
        }
        false
    }

    #[test]
    fn guard_stops_the_whole_group() {
        let stop = AtomicBool::new(false);
        // The shell forks a grandchild (like stage2 does) and reports its pid before ready.
        let script =
            "sleep 30 & echo \"grandchild $!\"; echo 'x listening on 127.0.0.1:4321'; wait";
        let (guard, port) =
            spawn_ready(sh(script), "fake-stage", Duration::from_secs(10), &stop).expect("ready");
        assert_eq!(port, 4321);
        let pid = guard.pid();
        let grandchild: u32 = guard
            .last_output()
            .split(" | ")
            .find_map(|l| l.strip_prefix("grandchild "))
            .and_then(|p| p.trim().parse().ok())
            .expect("grandchild pid printed before the ready line");
        assert!(alive(pid) && alive(grandchild));
        drop(guard);
        assert!(wait_gone(pid), "child {pid} still running");
        assert!(
            wait_gone(grandchild),
            "grandchild {grandchild} still running"
        );
    }

    #[test]
    fn child_that_exits_is_reported_with_its_output() {
        let stop = AtomicBool::new(false);
        let result = spawn_ready(
            sh("echo 'bad flag --listen' >&2; exit 3"),
            "broken",
            Duration::from_secs(10),
            &stop,
        );
        match result {
            Err(ProcError::Exited { status, output, .. }) => {
                assert_eq!(status.code(), Some(3));
                assert!(output.contains("bad flag"), "{output}");
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a child that exits is not ready"),
        }
    }

    #[test]
    fn missing_binary_and_stop_flag() {
        let stop = AtomicBool::new(false);
        let missing = spawn_ready(
            Command::new("/nonexistent/stage9"),
            "stage9",
            Duration::from_secs(1),
            &stop,
        );
        assert!(matches!(missing, Err(ProcError::Spawn { .. })));
        let stop = AtomicBool::new(true);
        let stopped = spawn_ready(sh("sleep 30"), "sleeper", Duration::from_secs(10), &stop);
        assert!(matches!(stopped, Err(ProcError::Interrupted)));
    }
}
