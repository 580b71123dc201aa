//! The checks, by stage. Each is a behaviour a user of a proxy relies on, judged from outside:
//! what the client receives and what reaches the origins. Never a proxy's branding.

mod access;
mod balance;
mod cache;
mod concurrency;
mod edge;
mod forwarding;
mod framing;
mod health;
mod refusals;

pub use access::API_KEY;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::http::{self, Response};
use crate::origin::{Origins, Record};
use crate::program::Program;
use crate::setup::{Launcher, Setup};

/// Why a check did not pass.
#[derive(Debug, Clone)]
pub enum Failure {
    /// The proxy got it wrong: the reason, in words.
    Fail(String),
    /// The check cannot run here (`--addr` mode, a missing tool): why.
    Skip(String),
}

impl From<String> for Failure {
    fn from(reason: String) -> Failure {
        Failure::Fail(reason)
    }
}

impl From<&str> for Failure {
    fn from(reason: &str) -> Failure {
        Failure::Fail(reason.to_string())
    }
}

/// What a check returns.
pub type Checked = Result<(), Failure>;

/// One check.
pub struct Check {
    /// Its name, for `--only` and the report.
    pub name: &'static str,
    /// The stage that introduces it.
    pub stage: u8,
    /// Points it is worth in its stage's score.
    pub points: u32,
    /// Where the course teaches it: `chapters/FILE.md#anchor`.
    pub teaches: &'static str,
    /// One line: what it checks.
    pub what: &'static str,
    pub run: fn(&mut Ctx) -> Checked,
}

/// Every check, in the order they run (stage by stage).
pub fn all() -> Vec<Check> {
    let mut list = Vec::new();
    list.extend(framing::checks());
    list.extend(forwarding::checks());
    list.extend(refusals::checks());
    list.extend(concurrency::checks());
    list.extend(balance::checks());
    list.extend(health::checks());
    list.extend(cache::checks());
    list.extend(access::checks());
    list.extend(edge::checks());
    list.sort_by_key(|c| c.stage);
    list
}

/// What a check works with.
pub struct Ctx<'a> {
    /// The proxy's address (the main instance, or `--addr`).
    pub proxy: SocketAddr,
    /// The TLS listener's address at stage 9, when the grader started the program.
    pub tls: Option<(SocketAddr, &'a crate::websocket::Trust)>,
    pub origins: &'a Origins,
    /// The stage being graded (checks of earlier stages run too).
    pub stage: u8,
    /// The origins the main instance forwards to (indexes into `origins`).
    pub backends: Vec<usize>,
    /// Starts more instances; `None` in `--addr` mode.
    pub launcher: Option<&'a Launcher>,
    /// Extra config the main instance got (stages 7 to 9), for instances a check starts.
    pub extra_toml: String,
    /// The main instance's process id, when the grader started it.
    pub main_pid: Option<u32>,
    /// The check running, for tokens.
    pub check: &'static str,
    tokens: u32,
}

impl<'a> Ctx<'a> {
    /// A context for the main instance at `proxy`.
    pub fn new(
        proxy: SocketAddr,
        origins: &'a Origins,
        stage: u8,
        launcher: Option<&'a Launcher>,
    ) -> Ctx<'a> {
        let count = if stage >= 5 { 3 } else { 1 };
        Ctx {
            proxy,
            tls: None,
            origins,
            stage,
            backends: (0..count).collect(),
            launcher,
            extra_toml: String::new(),
            main_pid: None,
            check: "",
            tokens: 0,
        }
    }

    /// A token no other request of this run carries: the origins' records are found by it.
    pub fn token(&mut self) -> String {
        self.tokens += 1;
        format!("{}-{}", self.check.replace('_', "-"), self.tokens)
    }

    /// A target that the origins answer as `query` asks, carrying a fresh token.
    pub fn target(&mut self, query: &str) -> (String, String) {
        let token = self.token();
        let target = if query.is_empty() {
            format!("/grade/{token}/x")
        } else {
            format!("/grade/{token}/x?{query}")
        };
        (token, target)
    }

    /// The addresses of the main instance's origins.
    pub fn backend_addrs(&self) -> Vec<SocketAddr> {
        let all = self.origins.addrs();
        self.backends.iter().map(|&i| all[i]).collect()
    }

    /// Starts another instance of the program with `setup`; a skip in `--addr` mode.
    pub fn start(&self, mut setup: Setup, why: &str) -> Result<Program, Failure> {
        let Some(launcher) = self.launcher else {
            return Err(Failure::Skip(format!(
                "needs to start the program itself ({why}); not possible with --addr"
            )));
        };
        if launcher.stage >= 7 && setup.extra_toml.is_empty() {
            setup.extra_toml = self.extra_toml.clone();
        }
        launcher
            .start(&setup)
            .map_err(|e| Failure::Fail(format!("could not start the program ({why}): {e}")))
    }

    /// The origin records of `token`, waiting up to 5 s for at least `at_least` of them (an
    /// origin may record a request a moment after the client's answer).
    pub fn records(&self, token: &str, at_least: usize) -> Vec<Record> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let records = self.origins.records(token);
            if records.len() >= at_least || Instant::now() >= deadline {
                return records;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The records of `token` once there is at least one, within 8 s; `None` if none came.
    pub fn records_now_or_wait(&self, token: &str) -> Option<Vec<Record>> {
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            let records = self.origins.records(token);
            if !records.is_empty() {
                return Some(records);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the proxy answers a plain GET with 200 again (after origins came back):
    /// three in a row, within 15 s.
    pub fn wait_serving(&mut self) -> Checked {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut in_a_row = 0;
        let mut last = String::new();
        while Instant::now() < deadline {
            let (_, target) = self.target("");
            match http::exchange(self.proxy, &http::get_close(&target)) {
                Ok(r) if r.status == 200 => in_a_row += 1,
                Ok(r) => {
                    in_a_row = 0;
                    last = format!("status {}", r.status);
                }
                Err(e) => {
                    in_a_row = 0;
                    last = e;
                }
            }
            if in_a_row == 3 {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(Failure::Fail(format!(
            "after the origins came back, the proxy did not answer 200 again within 15 s (last: {last})"
        )))
    }
}

/// `Ok` when `response` has `status`; else a failure that says what came instead.
pub fn expect_status(response: &Response, status: u16, what: &str) -> Checked {
    if response.status == status {
        return Ok(());
    }
    Err(Failure::Fail(format!(
        "{what}: expected status {status}, got {}{}",
        response.status,
        body_hint(&response.body)
    )))
}

/// ` (body "...")` for a short failure message, or nothing.
pub fn body_hint(body: &[u8]) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(" (body {})", http::show(body))
    }
}

/// `Ok` when `body` is the pattern's first `len` bytes.
pub fn expect_pattern(body: &[u8], len: usize, what: &str) -> Checked {
    if body.len() != len {
        return Err(Failure::Fail(format!(
            "{what}: expected a body of {len} bytes, got {} bytes",
            body.len()
        )));
    }
    if let Some(at) = crate::pattern::first_mismatch(body, 0) {
        return Err(Failure::Fail(format!(
            "{what}: the body differs from what the origin sent at byte {at}"
        )));
    }
    Ok(())
}

/// `Ok` when no request carrying `token` reached an origin.
pub fn expect_nothing_reached(ctx: &Ctx, token: &str, what: &str) -> Checked {
    let records = ctx.origins.records(token);
    if let Some(r) = records.first() {
        return Err(Failure::Fail(format!(
            "{what}: a request reached the origin anyway: {}",
            http::show(r.head.as_bytes())
        )));
    }
    Ok(())
}
