//! The request phase that ties the rules together, for every request (the second and later
//! ones on a kept or pipelined connection too, since the relay calls it per request):
//!
//! 1. the path is normalised (400 if it cannot be: above the root, bad encoding, strict mode);
//! 2. the client address is found (the peer, or `X-Forwarded-For` behind trusted proxies);
//! 3. the rule is the longest prefix that covers the normalised path, or the default;
//! 4. `limit_conn` (429), then the rule's IP list (403);
//! 5. a limit by address or by rule (429) comes before authentication, so that guessing keys
//!    is rate limited too; then the credential (401); then a limit by key (429);
//! 6. the credential header is removed (unless configured otherwise), a JWT claim is set as a
//!    header, and the original target goes upstream byte for byte.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::config::{AccessSettings, Auth, LimitBy, Rule};
use super::ip::{real_client, Verdict};
use super::jwt::claim_value;
use super::limit::{ConnLimit, Decision, LimitSpec, Limiter, MonotonicClock};
use super::path::PathError;
use super::path::{as_separators_decoded, covers, covers_any_case, normalise};
use super::store::{Fallback, RedisStore, Shared};
use crate::http::head::{Header, Headers};
use crate::http::{RequestHead, ResponseHead};
use crate::metrics::report::{AccessReport, PhaseReport};
use crate::relay::{BodyPlan, Client, Phases, Reply, Summary};

/// Whose budget: the rule (by index; the default rule is `usize::MAX`) and the client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum LimitKey {
    Ip(usize, IpAddr),
    Name(usize, String),
    Rule(usize),
}

/// Decisions counted, for the logs and tests.
#[derive(Debug, Default)]
pub struct Counters {
    pub allowed: AtomicU64,
    pub bad_path: AtomicU64,
    pub unauthorized: AtomicU64,
    pub forbidden: AtomicU64,
    pub limited: AtomicU64,
}

/// Access control as a phase set; chain it first: `(AccessPhases, CachePhases)`.
pub struct AccessPhases {
    settings: AccessSettings,
    /// Shared with the phases a reload builds, when the limits stay the same (`continuing`).
    limiter: Arc<Limiter<LimitKey>>,
    conns: Option<Arc<ConnLimit>>,
    store: Option<RedisStore>,
    /// The decisions so far, for `/metrics`: kept across reloads, as counters must be.
    pub counters: Arc<Counters>,
}

/// One request's slot in a [`ConnLimit`], held until dropped. It names the limit it was
/// taken from, which a reload may have replaced since.
struct ConnSlot {
    conns: Arc<ConnLimit>,
    ip: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.conns.leave(self.ip);
    }
}

impl std::fmt::Debug for ConnSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConnSlot({})", self.ip)
    }
}

/// What one exchange keeps between its hooks.
#[derive(Debug, Default)]
pub struct AccessCtx {
    /// The `limit_conn` slot this exchange holds, given back in `logging`, or whenever the
    /// context goes (an exchange that ends without being logged, a panic in a later phase):
    /// a slot that leaked would now outlive reloads too.
    conn: Option<ConnSlot>,
    /// For `RateLimit` on the response: policy name, its rate, remaining, reset.
    limit: Option<(String, LimitSpec, u64, Duration)>,
    /// The key name or JWT subject, for the log line.
    identity: Option<String>,
    /// Why the request was refused, for the log line.
    refused: Option<&'static str>,
}

impl AccessPhases {
    /// Fails only on a store URL that does not parse (the config check has parsed it).
    pub fn new(settings: AccessSettings) -> Result<AccessPhases, String> {
        let conns =
            (settings.limit_conn > 0).then(|| Arc::new(ConnLimit::new(settings.limit_conn)));
        let store = match &settings.store {
            Some(s) => Some(RedisStore::new(&s.url, s.fallback, s.timeout)?),
            None => None,
        };
        Ok(AccessPhases {
            store,
            limiter: Arc::new(Limiter::new(
                settings.max_clients,
                Box::new(MonotonicClock::default()),
            )),
            conns,
            settings,
            counters: Arc::default(),
        })
    }

    /// Keeps the rate-limit counters and the connection counts of `running` (the phases a
    /// reload replaces) where they still mean the same: the same rules with the same limits
    /// (a counter is keyed by its rule's place in the list), the same table size, the same
    /// `limit_conn`. A reload must not hand every client a fresh budget, nor let the requests
    /// in flight on the old phases count apart from the new ones. The decisions' counters are
    /// always kept: a counter that went back to zero would read as a restart.
    pub fn continuing(mut self, running: Option<&AccessPhases>) -> AccessPhases {
        let Some(running) = running else {
            return self;
        };
        self.counters = Arc::clone(&running.counters);
        if limits_shape(&running.settings) == limits_shape(&self.settings) {
            self.limiter = Arc::clone(&running.limiter);
        }
        if running.settings.limit_conn == self.settings.limit_conn {
            self.conns.clone_from(&running.conns);
        }
        self
    }

    /// The rule for a normalised path. Strict mode ignores case, for case-insensitive
    /// origins: `/ADMIN` meets the rule for `/admin`.
    fn rule(&self, path: &str) -> (usize, &Rule) {
        let matches = if self.settings.strict {
            covers_any_case
        } else {
            covers
        };
        self.settings
            .rules
            .iter()
            .enumerate()
            .find(|(_, r)| matches(&r.prefix, path))
            .unwrap_or((usize::MAX, &self.settings.default_rule))
    }

    /// The request's rule, or the error that refuses it: the path cannot be normalised, or an
    /// encoded separator would put it under another rule once an origin decodes it. Such a
    /// target is refused rather than judged on one reading: the rule the origin ends up
    /// applying is the one we cannot know.
    fn judge_path(&self, target: &str) -> Result<(usize, &Rule), PathError> {
        let path = normalise(target, self.settings.strict)?;
        let (index, rule) = self.rule(&path);
        if let Some(decoded) = as_separators_decoded(target) {
            if self.rule(&decoded?).0 != index {
                return Err(PathError::AmbiguousSeparator);
            }
        }
        Ok((index, rule))
    }

    fn refuse(&self, ctx: &mut AccessCtx, why: &'static str, reply: Reply) -> Option<Reply> {
        let counter = match reply.status() {
            400 => &self.counters.bad_path,
            401 => &self.counters.unauthorized,
            403 => &self.counters.forbidden,
            _ => &self.counters.limited,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        ctx.refused = Some(why);
        Some(reply)
    }

    /// Spends one request of the rule's budget; `Err` is the 429 to send.
    fn spend(
        &self,
        ctx: &mut AccessCtx,
        index: usize,
        rule: &Rule,
        ip: IpAddr,
        by: LimitBy,
        spec: &LimitSpec,
    ) -> Result<(), Reply> {
        let key = match (by, &ctx.identity) {
            (LimitBy::Ip, _) | (LimitBy::Key, None) => LimitKey::Ip(index, ip),
            (LimitBy::Key, Some(name)) => LimitKey::Name(index, name.clone()),
            (LimitBy::Rule, _) => LimitKey::Rule(index),
        };
        let decision = match &self.store {
            None => self.limiter.decide(key, spec),
            Some(store) => match store.decide(&shared_key(&rule.name, &key), spec) {
                Shared::Decided(decision) => decision,
                Shared::Unavailable if store.fallback == Fallback::Local => {
                    self.limiter.decide(key, spec)
                }
                Shared::Unavailable => return Err(Reply::error(503)),
            },
        };
        match decision {
            Decision::Allow {
                delay,
                remaining,
                reset,
            } => {
                if !delay.is_zero() {
                    // nginx's burst without nodelay: the request leaves at the rate. Bounded
                    // by the burst's tolerance (checked by `gcra`).
                    std::thread::sleep(delay);
                }
                ctx.limit = Some((rule.name.clone(), *spec, remaining, reset));
                Ok(())
            }
            Decision::Reject { retry_after } => {
                let secs = ceil_secs(retry_after).max(1);
                Err(Reply::error(429)
                    .header("Retry-After", secs.to_string())
                    .header("RateLimit-Policy", policy(&rule.name, spec))
                    .header(
                        "RateLimit",
                        format!("\"{}\";r=0;t={secs}", sf_name(&rule.name)),
                    ))
            }
        }
    }

    /// The credential the rule asks for; `Err` is the 401.
    fn authenticate(
        &self,
        ctx: &mut AccessCtx,
        head: &mut RequestHead,
        auth: Auth,
    ) -> Result<(), Reply> {
        if auth == Auth::None {
            return Ok(());
        }
        let keys = self.settings.keys.as_ref().filter(|_| auth != Auth::Jwt);
        let jwt = self.settings.jwt.as_ref().filter(|_| auth != Auth::Key);
        if let Some(keys) = keys {
            if let Some(value) = credential(head, &keys.header, keys.bearer) {
                if let Some(name) = keys.store.check(&value) {
                    ctx.identity = Some(name.to_owned());
                    if !keys.forward {
                        remove(head, &keys.header);
                    }
                    return Ok(());
                }
            }
        }
        if let Some(jwt) = jwt {
            if let Some(token) = credential(head, "Authorization", true) {
                let verified = std::str::from_utf8(&token)
                    .map_err(|_| super::jwt::JwtError::Malformed)
                    .and_then(|t| jwt.verifier.verify(t));
                match verified {
                    Ok(claims) => {
                        ctx.identity = claim_value(&claims, "sub");
                        if let Some((claim, header)) = &jwt.forward_claim {
                            if let Some(value) = claim_value(&claims, claim) {
                                head.headers.push(Header {
                                    name: header.clone(),
                                    value: value.into_bytes(),
                                });
                            }
                        }
                        if !self.settings.keys.as_ref().is_some_and(|k| k.forward) {
                            remove(head, "Authorization");
                        }
                        return Ok(());
                    }
                    Err(e) => {
                        log::debug!("access: JWT refused: {e}");
                        return Err(unauthorized(
                            "Bearer realm=\"revproxy\", error=\"invalid_token\"",
                        ));
                    }
                }
            }
        }
        let challenge = match (keys, jwt) {
            (Some(k), _) if !k.bearer => format!("ApiKey header=\"{}\"", k.header),
            _ => "Bearer realm=\"revproxy\"".to_owned(),
        };
        Err(unauthorized(&challenge))
    }
}

/// Request fields that some frameworks read as the URL to serve, instead of the target.
const URL_OVERRIDES: [&str; 2] = ["x-original-url", "x-rewrite-url"];

/// What the rate-limit counters of `settings` mean: each rule's place, name, prefix and limit,
/// the default's limit, and how many clients the table holds.
fn limits_shape(settings: &AccessSettings) -> impl PartialEq + '_ {
    let rules: Vec<_> = settings
        .rules
        .iter()
        .map(|r| (r.name.as_str(), r.prefix.as_str(), r.limit))
        .collect();
    (rules, settings.default_rule.limit, settings.max_clients)
}

/// The key in Redis: the rule by name (its index may differ between two configurations), the
/// client by address or name. Names are ours; addresses have no spaces.
fn shared_key(rule: &str, key: &LimitKey) -> String {
    match key {
        LimitKey::Ip(_, ip) => format!("revproxy:rl:{rule}:ip:{ip}"),
        LimitKey::Name(_, name) => format!("revproxy:rl:{rule}:key:{name}"),
        LimitKey::Rule(_) => format!("revproxy:rl:{rule}:all"),
    }
}

fn unauthorized(challenge: &str) -> Reply {
    Reply::error(401).header("WWW-Authenticate", challenge)
}

/// The credential in header `name` (after `Bearer ` when `bearer`). A header sent twice is
/// ambiguous (which one would the origin read?) and counts as none.
fn credential(head: &RequestHead, name: &str, bearer: bool) -> Option<Vec<u8>> {
    let mut values = head.values(name);
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let value = value.trim_ascii();
    if !bearer {
        return Some(value.to_vec());
    }
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii().to_vec())
}

fn remove(head: &mut RequestHead, name: &str) {
    head.headers.retain(|h| !h.name.eq_ignore_ascii_case(name));
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A policy name as a structured-field string: quotes and backslashes are dropped, since a
/// name is ours and needs neither.
fn sf_name(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '"' && *c != '\\' && (' '..='~').contains(c))
        .collect()
}

/// `RateLimit-Policy` of the IETF httpapi draft: quota `q` per window `w` seconds.
fn policy(name: &str, spec: &LimitSpec) -> String {
    format!(
        "\"{}\";q={};w={}",
        sf_name(name),
        spec.rate.requests,
        spec.rate.per_secs
    )
}

impl Phases for AccessPhases {
    type Ctx = AccessCtx;

    fn request(
        &self,
        ctx: &mut AccessCtx,
        head: &mut RequestHead,
        client: &Client,
    ) -> Option<Reply> {
        let (index, rule) = match self.judge_path(&head.target) {
            Ok(found) => found,
            Err(e) => {
                log::debug!("access: {}: {e}", client.peer);
                return self.refuse(ctx, "bad path", Reply::error(400).closing());
            }
        };
        // Frameworks behind proxies (Symfony, Laminas, IIS's URL Rewrite) serve the URL these
        // name instead of the target: `GET /` with `X-Original-URL: /admin` would reach
        // `/admin` past every rule here. Stripped, unless the rule allows them; then the URL
        // they name must fall under the same rule as the target.
        for name in URL_OVERRIDES {
            if !rule.allow_url_override {
                remove(head, name);
                continue;
            }
            let elsewhere = head
                .values(name)
                .any(|value| match std::str::from_utf8(value) {
                    // Only an origin-form path is judged; anything else could name any place.
                    Ok(value) if value.starts_with('/') => {
                        self.judge_path(value).map(|(i, _)| i) != Ok(index)
                    }
                    _ => true,
                });
            if elsewhere {
                return self.refuse(ctx, "url override", Reply::error(400).closing());
            }
        }
        // The claim header is ours: a client's own copy goes on every request, whether or not
        // this rule checks a token, so the origin can trust what it finds there.
        if let Some((_, header)) = self
            .settings
            .jwt
            .as_ref()
            .and_then(|j| j.forward_claim.as_ref())
        {
            remove(head, header);
        }
        let ip = real_client(
            client.peer.ip(),
            &self.settings.trusted,
            head.values("x-forwarded-for"),
        );
        if let Some(conns) = &self.conns {
            if !conns.enter(ip) {
                return self.refuse(
                    ctx,
                    "limit_conn",
                    Reply::error(429).header("Retry-After", "1"),
                );
            }
            ctx.conn = Some(ConnSlot {
                conns: Arc::clone(conns),
                ip,
            });
        }
        if rule.ip.verdict(ip) == Verdict::Deny {
            return self.refuse(ctx, "ip denied", Reply::error(403));
        }
        let early = rule.limit.filter(|(_, by)| *by != LimitBy::Key);
        if let Some((spec, by)) = early {
            if let Err(reply) = self.spend(ctx, index, rule, ip, by, &spec) {
                return self.refuse(ctx, "rate limited", reply);
            }
        }
        if let Err(reply) = self.authenticate(ctx, head, rule.auth) {
            return self.refuse(ctx, "unauthorized", reply);
        }
        if let Some((spec, LimitBy::Key)) = rule.limit {
            if let Err(reply) = self.spend(ctx, index, rule, ip, LimitBy::Key, &spec) {
                return self.refuse(ctx, "rate limited", reply);
            }
        }
        // The key header goes on every request, not only where a rule asked for it: a key
        // sent to an open path must not end up in the origin's logs either.
        if let Some(keys) = self
            .settings
            .keys
            .as_ref()
            .filter(|k| !k.bearer && !k.forward)
        {
            remove(head, &keys.header);
        }
        self.counters.allowed.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Its `response_head` only adds the `RateLimit` fields.
    fn reads_reply_fields(&self) -> bool {
        false
    }

    fn response_head(
        &self,
        ctx: &mut AccessCtx,
        _request: &RequestHead,
        response: &mut ResponseHead,
        _body: &mut BodyPlan,
    ) {
        if let Some((name, spec, remaining, reset)) = &ctx.limit {
            let push = |response: &mut ResponseHead, name: &str, value: String| {
                response.headers.push(Header {
                    name: name.to_owned(),
                    value: value.into_bytes(),
                })
            };
            push(response, "RateLimit-Policy", policy(name, spec));
            push(
                response,
                "RateLimit",
                format!(
                    "\"{}\";r={remaining};t={}",
                    sf_name(name),
                    ceil_secs(*reset)
                ),
            );
        }
    }

    fn user<'c>(&self, ctx: &'c AccessCtx) -> Option<&'c str> {
        ctx.identity.as_deref()
    }

    fn report(&self, report: &mut PhaseReport) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let c = &self.counters;
        report.add_access(AccessReport {
            allowed: get(&c.allowed),
            bad_path: get(&c.bad_path),
            unauthorized: get(&c.unauthorized),
            forbidden: get(&c.forbidden),
            limited: get(&c.limited),
        });
    }

    fn logging(&self, ctx: &mut AccessCtx, summary: &Summary<'_>) {
        // The limit_conn slot, if one was held, goes back now (its guard, dropped).
        drop(ctx.conn.take());
        // The key's name, never its value.
        let who = ctx.identity.as_deref().unwrap_or("-");
        match ctx.refused {
            Some(why) => log::info!(
                target: "access",
                "{} {} refused: {why} (key {who})",
                summary.peer,
                summary.status
            ),
            None => log::debug!(target: "access", "{} {} key {who}", summary.peer, summary.status),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn phases(access: &str) -> AccessPhases {
        let text = format!("[upstreams.app]\nservers = [\"127.0.0.1:8000\"]\n{access}");
        let settings = crate::config::parse(&text, Path::new("t.toml")).unwrap();
        AccessPhases::new(settings.access.unwrap()).unwrap()
    }

    fn head(target: &str, headers: &[(&str, &str)]) -> RequestHead {
        RequestHead {
            method: "GET".to_owned(),
            target: target.to_owned(),
            minor_version: 1,
            headers: headers
                .iter()
                .map(|(n, v)| Header {
                    name: (*n).to_owned(),
                    value: v.as_bytes().to_vec(),
                })
                .collect(),
            route: None,
            original_target: None,
        }
    }

    const CLIENT: Client = Client {
        peer: std::net::SocketAddr::V4(std::net::SocketAddrV4::new(
            std::net::Ipv4Addr::LOCALHOST,
            40000,
        )),
        proto: "http",
    };

    #[test]
    fn the_key_name_is_the_user_and_the_key_never_goes_upstream() {
        let p = phases(
            "[access.keys]\nlist = [{ name = \"alice\", key = \"k-1\" }]\n\
             [[access.rules]]\npath = \"/api\"\nauth = \"key\"\n",
        );
        let mut ctx = AccessCtx::default();
        let mut h = head("/api/x", &[("X-API-Key", "k-1"), ("Accept", "*/*")]);
        assert!(p.request(&mut ctx, &mut h, &CLIENT).is_none());
        assert_eq!(p.user(&ctx), Some("alice"));
        assert_eq!(h.headers.len(), 1, "{:?}", h.headers);
        assert_eq!(h.target, "/api/x", "the target is forwarded as it came");
        // On a path without auth the key is not checked, and still not forwarded.
        let mut ctx = AccessCtx::default();
        let mut h = head("/open", &[("X-API-Key", "k-1")]);
        assert!(p.request(&mut ctx, &mut h, &CLIENT).is_none());
        assert!(h.headers.is_empty());
        assert_eq!(p.user(&ctx), None);
        let mut ctx = AccessCtx::default();
        let reply = p
            .request(&mut ctx, &mut head("/api", &[]), &CLIENT)
            .unwrap();
        assert_eq!(reply.status(), 401);
        assert_eq!(p.counters.unauthorized.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_limit_conn_slot_is_given_back_when_its_exchange_ends_however_it_ends() {
        let p = phases("[access]\nlimit_conn = 1\n");
        let mut first = AccessCtx::default();
        assert!(p
            .request(&mut first, &mut head("/", &[]), &CLIENT)
            .is_none());
        let mut second = AccessCtx::default();
        let refused = p.request(&mut second, &mut head("/", &[]), &CLIENT);
        assert_eq!(refused.map(|r| r.status()), Some(429));
        // Never logged (a later phase panicked, say): dropping the context frees the slot.
        drop(first);
        let mut third = AccessCtx::default();
        assert!(p
            .request(&mut third, &mut head("/", &[]), &CLIENT)
            .is_none());
    }
}
