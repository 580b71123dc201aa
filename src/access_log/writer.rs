//! The access log file, written by a thread of its own so that no request thread ever waits
//! on the disk.
//!
//! Request threads format their line and hand it over through a bounded channel without
//! blocking ([`FileLog::send`]). When the writer falls behind (a slow or full disk) and the
//! channel is full, the line is dropped and counted, and a warning says so once per
//! [`WARN_EVERY`] drops: losing log lines is better than stalling every request, and the
//! count says how many were lost. The writer flushes whenever the channel runs empty, so a
//! line reaches the file within moments of its response.
//!
//! [`FileLog::reopen`] (on `SIGUSR1`) travels through the same channel, behind the lines sent
//! before it: lines of requests answered before the signal go to the old file (renamed by
//! logrotate), later ones to a new file at the configured path.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Mutex;
use std::thread::JoinHandle;

/// Lines that may wait for the writer: about a megabyte of lines, a second or more of a busy
/// proxy's traffic.
pub const DEFAULT_CAPACITY: usize = 8192;

/// A warning every this many dropped lines (and at the first).
pub const WARN_EVERY: u64 = 1000;

enum Message {
    Line(String),
    /// Open the file's path again (after a rename), or a new path (after a reload).
    Reopen(Option<PathBuf>),
    Stop,
}

/// An access log file and the thread that writes it.
pub struct FileLog {
    to_writer: SyncSender<Message>,
    dropped: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl FileLog {
    /// Opens (appending, creating it if needed) `path` and starts the writer thread, with
    /// room for `capacity` lines in between.
    pub fn open(path: &Path, capacity: usize) -> io::Result<FileLog> {
        let file = open_append(path)?;
        let (to_writer, lines) = mpsc::sync_channel(capacity.max(1));
        let path = path.to_owned();
        let thread = std::thread::Builder::new()
            .name("access-log".to_owned())
            .spawn(move || write_lines(&lines, path, file))?;
        Ok(FileLog {
            to_writer,
            dropped: AtomicU64::new(0),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues one line (without its newline); never blocks.
    pub fn send(&self, line: String) {
        match self.to_writer.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped == 1 || dropped.is_multiple_of(WARN_EVERY) {
                    log::warn!("access log: the writer is behind, {dropped} lines dropped so far");
                }
            }
            Err(TrySendError::Disconnected(_)) => {} // stopped: the process is ending
        }
    }

    /// Lines dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Reopens the file at its path, or at `path` when given, after the lines queued so far.
    /// Waits for room in the queue (this is the signal thread, not a request's).
    pub fn reopen(&self, path: Option<PathBuf>) {
        let _ = self.to_writer.send(Message::Reopen(path));
    }

    /// Writes what is queued, closes the file and ends the writer thread.
    pub fn finish(&self) {
        let _ = self.to_writer.send(Message::Stop);
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("access log {}: {e}", path.display())))
}

/// The writer thread: lines to the file, flushed whenever nothing more is waiting.
fn write_lines(lines: &Receiver<Message>, mut path: PathBuf, file: File) {
    crate::exercise::stub!("write_lines");
    let mut out = BufWriter::new(file);
    let mut failing = false;
    loop {
        let message = match lines.try_recv() {
            Ok(message) => message,
            Err(TryRecvError::Empty) => {
                report(&mut failing, out.flush());
                match lines.recv() {
                    Ok(message) => message,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        match message {
            Message::Line(mut line) => {
                line.push('\n');
                report(&mut failing, out.write_all(line.as_bytes()));
            }
            Message::Reopen(new_path) => {
                report(&mut failing, out.flush());
                let wanted = new_path.unwrap_or_else(|| path.clone());
                match open_append(&wanted) {
                    Ok(file) => {
                        log::info!("access log reopened: {}", wanted.display());
                        out = BufWriter::new(file);
                        path = wanted;
                    }
                    // Keep writing to the file we have, as nginx does: a line in the renamed
                    // file is better than none.
                    Err(err) => log::error!("{err}; still writing to the previous file"),
                }
            }
            Message::Stop => break,
        }
    }
    report(&mut failing, out.flush());
}

/// Logs a write error when writing starts to fail, not for every line after.
fn report(failing: &mut bool, result: io::Result<()>) {
    match result {
        Ok(()) => *failing = false,
        Err(err) if !*failing => {
            log::error!("access log: cannot write: {err}");
            *failing = true;
        }
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("revproxy-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_reopen_after_a_rename_sends_later_lines_to_a_new_file() {
        let dir = temp_dir("writer");
        let path = dir.join("access.log");
        let log = FileLog::open(&path, 64).unwrap();
        log.send("one".to_owned());
        log.send("two".to_owned());
        // Renamed while open: the writer still has the old file, as after logrotate's mv.
        std::fs::rename(&path, dir.join("access.log.1")).unwrap();
        log.send("three".to_owned());
        log.reopen(None);
        log.send("four".to_owned());
        log.finish();
        assert_eq!(lines(&dir.join("access.log.1")), ["one", "two", "three"]);
        assert_eq!(lines(&path), ["four"]);
        assert_eq!(log.dropped(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let dir = temp_dir("drops");
        let path = dir.join("access.log");
        let log = FileLog::open(&path, 1).unwrap();
        // Far more than a queue of one holds, faster than any disk: some must be dropped,
        // and none of the sends may block (a blocking send would hang this test).
        let sent = 20_000;
        for i in 0..sent {
            log.send(format!("line {i}"));
        }
        log.finish();
        let written = lines(&path).len() as u64;
        assert_eq!(
            written + log.dropped(),
            sent,
            "every line is written or counted"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
