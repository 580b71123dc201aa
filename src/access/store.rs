//! Rate limits shared by several proxy processes through Redis: the same GCRA step as
//! [`limit::gcra`](super::limit::gcra), run by Redis as one Lua script per decision, so the
//! read and the write of a client's TAT are atomic across every instance. The time is Redis's
//! own (`TIME`), so instances whose clocks differ still agree.
//!
//! When Redis cannot be reached the decision falls back to the local limiter, or refuses
//! (503), as configured; the outage is logged once when it starts and once when it ends, not
//! per request, and Redis is tried again at most once a second meanwhile, so a dead store
//! costs no request a timeout after the first.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::limit::{Decision, LimitSpec};
use crate::stock::Stock;

/// The GCRA step in Lua, in microseconds (Redis's `TIME` gives seconds and microseconds; a
/// microsecond count since 1970 is below 2^53, exact in Lua's doubles). Returns
/// `{allowed, wait_us, remaining, reset_us}`; the key expires when the budget is whole again.
const GCRA_LUA: &str = r"
local t = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000000 + tonumber(now[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local ahead = tat - now
if ahead > tau then
  return {0, ahead - tau, 0, ahead}
end
local new = tat + t
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000) + 1)
local remaining = math.floor((tau + t - (new - now)) / t)
return {1, ahead, remaining, new - now}
";

/// What to do while Redis is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Decide with this process's own table (each instance then has the whole budget).
    Local,
    /// Refuse with 503 until Redis answers again.
    Refuse,
}

/// The answer of the shared store, or why there is none.
pub enum Shared {
    Decided(Decision),
    Unavailable,
}

/// Connections to Redis: a few kept for reuse, more opened when every kept one is busy.
pub struct RedisStore {
    client: redis::Client,
    script: redis::Script,
    idle: Stock<redis::Connection>,
    timeout: Duration,
    pub fallback: Fallback,
    /// Whether the last attempt failed: the outage is logged on the change, not per request.
    down: AtomicBool,
    /// While down, the next time to try again.
    retry_at: Mutex<Instant>,
    url: String,
}

const KEEP_IDLE: usize = 16;
const RETRY_EVERY: Duration = Duration::from_secs(1);

impl RedisStore {
    /// Parses the URL (no connection is made yet; the first decision connects).
    pub fn new(url: &str, fallback: Fallback, timeout: Duration) -> Result<RedisStore, String> {
        let client = redis::Client::open(url).map_err(|e| format!("store '{url}': {e}"))?;
        Ok(RedisStore {
            client,
            script: redis::Script::new(GCRA_LUA),
            idle: Stock::new(KEEP_IDLE),
            timeout,
            fallback,
            down: AtomicBool::new(false),
            retry_at: Mutex::new(Instant::now()),
            url: url.to_owned(),
        })
    }

    /// One decision for `key`, atomic in Redis.
    pub fn decide(&self, key: &str, spec: &LimitSpec) -> Shared {
        if self.down.load(Ordering::Relaxed) {
            let mut retry_at = self.retry_at.lock().unwrap_or_else(|e| e.into_inner());
            if Instant::now() < *retry_at {
                return Shared::Unavailable;
            }
            *retry_at = Instant::now() + RETRY_EVERY;
        }
        match self.run(key, spec) {
            Ok(decision) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    log::warn!("access: rate-limit store {} answers again", self.url);
                }
                Shared::Decided(decision)
            }
            Err(e) => {
                if !self.down.swap(true, Ordering::Relaxed) {
                    let what = match self.fallback {
                        Fallback::Local => "deciding locally",
                        Fallback::Refuse => "refusing rate-limited requests",
                    };
                    log::warn!(
                        "access: rate-limit store {} unreachable ({e}); {what} until it answers",
                        self.url
                    );
                    *self.retry_at.lock().unwrap_or_else(|e| e.into_inner()) =
                        Instant::now() + RETRY_EVERY;
                }
                Shared::Unavailable
            }
        }
    }

    fn run(&self, key: &str, spec: &LimitSpec) -> redis::RedisResult<Decision> {
        let pooled = self.idle.take(|_| true);
        let mut conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = self.client.get_connection_with_timeout(self.timeout)?;
                conn.set_read_timeout(Some(self.timeout))?;
                conn.set_write_timeout(Some(self.timeout))?;
                conn
            }
        };
        let t_us = spec.rate.per_secs * 1_000_000 / spec.rate.requests;
        let tau_us = t_us.saturating_mul(spec.burst);
        // A failed connection is dropped, not returned: the next decision opens a fresh one.
        let (allowed, wait, remaining, reset): (i64, i64, i64, i64) = self
            .script
            .key(key)
            .arg(t_us)
            .arg(tau_us)
            .invoke(&mut conn)?;
        self.idle.give(conn);
        let us = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        Ok(if allowed == 1 {
            Decision::Allow {
                delay: if spec.nodelay {
                    Duration::ZERO
                } else {
                    us(wait)
                },
                remaining: u64::try_from(remaining).unwrap_or(0),
                reset: us(reset),
            }
        } else {
            Decision::Reject {
                retry_after: us(wait),
            }
        })
    }
}
