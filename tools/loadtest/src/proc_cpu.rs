//! What a stage spent on a cell: CPU time and context switches of its process group, read
//! from `/proc` just before and just after the measured run, so that `compare` can say what
//! one request costs beside how many were served. Throughput on a shared machine says how much
//! CPU a stage was given; CPU per request says what it did with it.
//!
//! The group, not the process: stage2 forks a child per connection, in the group `procs`
//! made for the stage. Its CPU is the leader's own time, plus what its reaped children spent
//! (`cutime`/`cstime`, stage2 reaps every child), plus the own time of the members still
//! alive. Context switches have no such running total for children that are gone, nor for
//! threads that are gone, so they are known only while the group is one process and every
//! thread that worked during the cell is still there at its end (a pool's threads live as long
//! as the process; stage 3's thread per connection does not); otherwise `None`, shown as "-".
//! Without `/proc` (not Linux) or once the process is gone, everything is `None`.

use std::fs;

/// The fields of one `/proc/<pid>/stat` line that the cost needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFields {
    /// Field 5: the process group.
    pub pgrp: u32,
    /// Fields 14 and 15 (utime + stime), in clock ticks.
    pub own_ticks: u64,
    /// Fields 16 and 17 (cutime + cstime): children that ended and were waited for.
    pub reaped_children_ticks: u64,
}

/// Parses a `/proc/<pid>/stat` line. The command name (field 2) sits in parentheses and may
/// itself contain spaces and parentheses, so the fields are counted from the *last* `)`.
pub fn parse_stat(line: &str) -> Option<StatFields> {
    let after_comm = &line[line.rfind(')')? + 1..];
    // Field 3 (state) is the first word after the name.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(StatFields {
        pgrp: u32::try_from(field(5)?).ok()?,
        own_ticks: field(14)?.checked_add(field(15)?)?,
        reaped_children_ticks: field(16)?.checked_add(field(17)?)?,
    })
}

/// `voluntary_ctxt_switches` + `nonvoluntary_ctxt_switches` of one `/proc/.../status`.
pub fn parse_context_switches(status: &str) -> Option<u64> {
    let value = |key: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))?
            .trim()
            .parse()
            .ok()
    };
    value("voluntary_ctxt_switches:")?.checked_add(value("nonvoluntary_ctxt_switches:")?)
}

/// What a process group had spent at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub ticks: u64,
    /// The process's threads alive at that moment; `None` when the group was more than one
    /// process.
    pub threads: Option<Vec<ThreadCounts>>,
}

/// One thread's own CPU time and context switches so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadCounts {
    pub tid: u32,
    /// Time on a CPU in nanoseconds (`/proc/.../schedstat`): exact, where a thread's clock
    /// ticks are rounded each on its own, so that 60 threads' ticks can miss 60 of the
    /// process's.
    pub runtime_ns: u64,
    pub switches: u64,
}

/// The first field of `/proc/.../schedstat`: nanoseconds on a CPU.
pub fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// The group led by `leader` (its pid is the group id, as `procs::spawn_ready` sets it up).
pub fn group_usage(leader: u32) -> Option<Usage> {
    let read_stat = |pid: u32| parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?);
    // The other members first: a child reaped after this scan is then counted in the
    // leader's cutime as well (a few ticks too many at worst) rather than missed.
    let mut members_ticks = 0u64;
    let mut members = 0usize;
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == leader {
            continue;
        }
        if let Some(stat) = read_stat(pid).filter(|s| s.pgrp == leader) {
            members_ticks = members_ticks.saturating_add(stat.own_ticks);
            members += 1;
        }
    }
    let own = read_stat(leader).filter(|s| s.pgrp == leader)?;
    let ticks = own
        .own_ticks
        .saturating_add(own.reaped_children_ticks)
        .saturating_add(members_ticks);
    let threads = if members == 0 && own.reaped_children_ticks == 0 {
        threads_of(leader)
    } else {
        None
    };
    Some(Usage { ticks, threads })
}

/// The counts of every thread of `pid` alive now.
fn threads_of(pid: u32) -> Option<Vec<ThreadCounts>> {
    let mut threads = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let tid = task.file_name().to_str()?.parse().ok()?;
        // A thread that ends between the listing and these reads is skipped: the CPU check
        // in `switches_between` then finds its ticks missing.
        let (Ok(schedstat), Ok(status)) = (
            fs::read_to_string(task.path().join("schedstat")),
            fs::read_to_string(task.path().join("status")),
        ) else {
            continue;
        };
        threads.push(ThreadCounts {
            tid,
            runtime_ns: parse_schedstat(&schedstat)?,
            switches: parse_context_switches(&status)?,
        });
    }
    Some(threads)
}

/// Clock ticks of process CPU that the live threads may leave unexplained before the
/// context switches are called unknown: the process's count is rounded to ticks, and the
/// reads of several files are not one instant.
const UNACCOUNTED_TICKS: u64 = 3;

/// The context switches the threads made between two samples, or `None` when some of the
/// work was done by threads that are gone, whose switches no file keeps: a thread of `before`
/// missing from `after`, or more process CPU (`process_ticks` at `hz`) than the threads alive
/// at the end spent (threads that started and ended in between, as stage 3's do). A thread
/// new in `after` counts from zero.
pub fn switches_between(
    before: &[ThreadCounts],
    after: &[ThreadCounts],
    process_ticks: u64,
    hz: u64,
) -> Option<u64> {
    let earlier = |tid: u32| before.iter().find(|t| t.tid == tid);
    if hz == 0 || before.iter().any(|b| !after.iter().any(|a| a.tid == b.tid)) {
        return None;
    }
    let (mut runtime_ns, mut switches) = (0u64, 0u64);
    for thread in after {
        let (r0, s0) = earlier(thread.tid).map_or((0, 0), |b| (b.runtime_ns, b.switches));
        runtime_ns = runtime_ns.checked_add(thread.runtime_ns.checked_sub(r0)?)?;
        switches = switches.checked_add(thread.switches.checked_sub(s0)?)?;
    }
    let tick_ns = 1_000_000_000 / hz;
    let unexplained_ns = process_ticks
        .saturating_mul(tick_ns)
        .saturating_sub(runtime_ns);
    (unexplained_ns <= UNACCOUNTED_TICKS * tick_ns).then_some(switches)
}

/// Clock ticks per second, the unit of the stat fields.
pub fn ticks_per_second() -> Option<u64> {
    // SAFETY: sysconf has no memory-safety preconditions; -1 means unknown.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|&hz| hz > 0)
}

/// The fewest clock ticks a CPU figure is given for: a count of ticks is off by up to one,
/// so ten or more keep the figure within 10%. A short cell (`compare --quick` at c=1 holds
/// a few dozen requests in 0.5 s, a tick or two) says "-" rather than 0.0 or a tick's worth.
pub const MIN_TICKS: u64 = 10;

/// Per request, between two samples of the same group.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Cost {
    pub cpu_us_per_request: Option<f64>,
    pub context_switches_per_request: Option<f64>,
}

/// The cost of `requests` successful requests, `None` where a sample is missing, went
/// backwards (not the same process) or there were no requests to share it; the CPU also
/// `None` below [`MIN_TICKS`].
pub fn cost(
    before: Option<Usage>,
    after: Option<Usage>,
    requests: u64,
    ticks_per_second: Option<u64>,
) -> Cost {
    let (Some(before), Some(after)) = (before, after) else {
        return Cost::default();
    };
    if requests == 0 {
        return Cost::default();
    }
    let per_request = |n: u64| n as f64 / requests as f64;
    let (Some(ticks), Some(hz)) = (after.ticks.checked_sub(before.ticks), ticks_per_second) else {
        return Cost::default();
    };
    let cpu_us_per_request = (ticks >= MIN_TICKS).then(|| per_request(ticks) * 1e6 / hz as f64);
    let context_switches_per_request = match (&before.threads, &after.threads) {
        (Some(b), Some(a)) => switches_between(b, a, ticks, hz).map(per_request),
        _ => None,
    };
    Cost {
        cpu_us_per_request,
        context_switches_per_request,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line's shape: pid, comm, state, then fields 4 to 52.
    fn stat_line(comm: &str, pgrp: u32, times: [u64; 4]) -> String {
        let [utime, stime, cutime, cstime] = times;
        format!(
            "1234 ({comm}) S 1 {pgrp} {pgrp} 0 -1 4194560 1062 0 0 0 {utime} {stime} {cutime} \
             {cstime} 20 0 9 0 123456 123456789 1200 18446744073709551615 1 1 0 0 0 0 0 \
             4096 17922 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0"
        )
    }

    #[test]
    fn stat_lines() {
        for (comm, times, want) in [
            ("stage4", [7, 3, 0, 0], Some((10, 0))),
            ("my (odd) name", [250, 50, 11, 1], Some((300, 12))),
            ("a) S 1 2 3 4", [1, 2, 3, 4], Some((3, 7))),
            ("", [0, 0, 0, 0], Some((0, 0))),
        ] {
            let parsed = parse_stat(&stat_line(comm, 4321, times));
            assert_eq!(
                parsed.map(|s| (s.own_ticks, s.reaped_children_ticks)),
                want,
                "{comm:?}"
            );
            assert_eq!(parsed.map(|s| s.pgrp), Some(4321), "{comm:?}");
        }
        for bad in ["", "1234 stage4 S 1", "1234 (x) S 1 2 3", "1234 (x) S 1 x"] {
            assert_eq!(parse_stat(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn status_context_switches() {
        let status =
            "Name:\tstage4\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n";
        assert_eq!(parse_context_switches(status), Some(127));
        assert_eq!(parse_context_switches("Name:\tx\n"), None);
        assert_eq!(
            parse_schedstat("193929638 26042508 774\n"),
            Some(193_929_638)
        );
        assert_eq!(parse_schedstat(""), None);
        assert_eq!(parse_schedstat("x 1 2"), None);
        assert_eq!(
            parse_context_switches("voluntary_ctxt_switches: many\nnonvoluntary_ctxt_switches: 1"),
            None
        );
    }

    #[test]
    fn cost_per_request() {
        // One thread that did all the work, or (`None`) a group of processes.
        let usage = |ticks, switches: Option<u64>| {
            Some(Usage {
                ticks,
                threads: switches.map(|switches| {
                    vec![ThreadCounts {
                        tid: 1,
                        runtime_ns: ticks * 10_000_000,
                        switches,
                    }]
                }),
            })
        };
        // 50 ticks at 100 Hz = 0.5 s over 10,000 requests = 50 µs each.
        let cost_of = |before, after, requests| cost(before, after, requests, Some(100));
        let full = cost_of(usage(100, Some(10)), usage(150, Some(12_010)), 10_000);
        assert_eq!(full.cpu_us_per_request, Some(50.0));
        assert_eq!(full.context_switches_per_request, Some(1.2));
        let group = cost_of(usage(100, None), usage(150, None), 10_000);
        assert_eq!(group.cpu_us_per_request, Some(50.0));
        assert_eq!(group.context_switches_per_request, None);
        for unknown in [
            cost_of(None, usage(1, Some(1)), 10),
            cost_of(usage(1, Some(1)), None, 10),
            cost_of(usage(1, Some(1)), usage(2, Some(2)), 0),
            cost_of(usage(5, Some(5)), usage(2, Some(2)), 10),
            cost(usage(1, Some(1)), usage(2, Some(2)), 10, None),
        ] {
            assert_eq!(unknown.cpu_us_per_request, None, "{unknown:?}");
        }
        // Too few ticks for a figure within 10%: "-", though the switches are exact.
        let short = cost_of(usage(100, Some(10)), usage(109, Some(60)), 25);
        assert_eq!(short.cpu_us_per_request, None);
        assert_eq!(short.context_switches_per_request, Some(2.0));
        let enough = cost_of(usage(100, Some(10)), usage(110, Some(60)), 25);
        assert_eq!(enough.cpu_us_per_request, Some(4000.0));
    }

    #[test]
    fn switches_are_known_only_while_every_working_thread_is_still_there() {
        // Runtimes in ticks of 10 ms, at 100 Hz.
        let t = |tid, ticks: u64, switches| ThreadCounts {
            tid,
            runtime_ns: ticks * 10_000_000,
            switches,
        };
        let switches_between =
            |b: &[ThreadCounts], a: &[ThreadCounts], ticks| switches_between(b, a, ticks, 100);
        // A pool: the same threads before and after.
        let before = [t(1, 10, 5), t(2, 20, 100), t(3, 0, 1)];
        let after = [t(1, 12, 9), t(2, 60, 300), t(3, 8, 51)];
        assert_eq!(switches_between(&before, &after, 50), Some(254));
        // A thread started meanwhile counts from zero.
        let grown = [t(1, 12, 9), t(2, 60, 300), t(3, 8, 51), t(4, 5, 20)];
        assert_eq!(switches_between(&before, &grown, 55), Some(274));
        // A thread that ended took its switches with it.
        let shrunk = [t(1, 12, 9), t(2, 60, 300)];
        assert_eq!(switches_between(&before, &shrunk, 42), None);
        // Threads that started and ended in between (stage 3's thread per connection): the
        // process spent more than the threads that are left, beyond a tick or two.
        assert_eq!(switches_between(&before, &after, 53), Some(254));
        assert_eq!(switches_between(&before, &after, 54), None);
        assert_eq!(switches_between(&[t(1, 3, 4)], &[t(1, 4, 6)], 900), None);
        // Counters that went backwards are not the same threads.
        assert_eq!(switches_between(&[t(1, 9, 9)], &[t(1, 4, 6)], 0), None);
    }

    /// Starts `script` in a group of its own and waits for its first line, by which time
    /// whatever it forked before printing exists; returns the child (the group's leader).
    fn group_of(script: &str) -> std::process::Child {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start sh");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the ready line");
        assert_eq!(line.trim(), "ready");
        child
    }

    fn stop_group(mut child: std::process::Child) {
        // SAFETY: kill(2) on the group this test created; ESRCH is fine.
        unsafe {
            libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = child.wait();
    }

    #[test]
    fn a_forked_member_makes_context_switches_unknown() {
        let alone = group_of("echo ready; exec sleep 30");
        let usage = group_usage(alone.id()).expect("a usage");
        assert!(usage.threads.is_some(), "{usage:?}");
        stop_group(alone);
        // sh waits while its child (the same group) sleeps: two processes.
        let forked = group_of("sleep 30 & echo ready; wait");
        let usage = group_usage(forked.id()).expect("a usage");
        assert_eq!(usage.threads, None, "{usage:?}");
        stop_group(forked);
    }

    #[test]
    fn this_process_has_a_usage() {
        // The test runner is not the leader of its group, so ask for the group it is in.
        let own = parse_stat(&fs::read_to_string("/proc/self/stat").expect("/proc/self/stat"))
            .expect("parsed");
        let usage = group_usage(own.pgrp);
        if let Some(leader) = fs::read_to_string(format!("/proc/{}/stat", own.pgrp))
            .ok()
            .and_then(|s| parse_stat(&s))
        {
            let usage = usage.expect("the group's leader is alive");
            assert!(usage.ticks >= leader.own_ticks);
        }
        assert!(ticks_per_second().is_some());
        assert_eq!(group_usage(u32::MAX), None);
    }
}
