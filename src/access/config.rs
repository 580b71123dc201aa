//! `[access]` in the configuration file: the serde types as written, and their check into
//! [`AccessSettings`]. Kept here, not in `config/`, so the access module owns its vocabulary;
//! `config/` holds one field for it.
//!
//! Files named here (`keys.file`, `jwt.secret_file`, `jwt.public_key_file`, `jwt.jwks_file`)
//! are read at check time, so `-t` proves they load; relative paths are taken from the
//! directory the proxy starts in, like `--config` itself.

use std::num::NonZeroUsize;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::ip::{Cidr, IpRules};
use super::jwt::{self, Expect, JwtVerifier, KeySource};
use super::keys::{self, ApiKey, KeyStore};
use super::limit::{LimitSpec, Rate};
use super::store::{Fallback, RedisStore};
use crate::config::SectionError;

/// `[access]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSection {
    /// Refuse targets that origins may read differently (backslash, `%2F`, `%25XX`).
    #[serde(default)]
    pub strict: bool,
    /// Peers whose `X-Forwarded-For` is believed (addresses or CIDRs).
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    /// The defaults of every rule, and what applies where no rule matches.
    #[serde(default)]
    pub auth: Option<Spanned<String>>,
    #[serde(default)]
    pub ip: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub limit: Option<Spanned<LimitSection>>,
    /// Clients the rate limiter remembers (least recently seen forgotten first).
    #[serde(default = "default_max_clients")]
    pub max_clients: usize,
    /// Requests in progress per client address (nginx `limit_conn`); 0 is no cap.
    #[serde(default)]
    pub limit_conn: u32,
    /// `redis://HOST:PORT`: rate limits shared with every proxy using the same Redis.
    pub store: Option<Spanned<String>>,
    /// While the store is down: `local` (each process decides alone) or `refuse` (503).
    #[serde(default = "default_fallback")]
    pub store_fallback: Spanned<String>,
    #[serde(default = "default_store_timeout")]
    pub store_timeout_ms: u64,
    #[serde(default)]
    pub keys: Option<KeysSection>,
    #[serde(default)]
    pub jwt: Option<Spanned<JwtSection>>,
    #[serde(default)]
    pub rules: Vec<Spanned<RuleSection>>,
}

fn default_fallback() -> Spanned<String> {
    Spanned::new(0..0, "local".to_owned())
}

fn default_store_timeout() -> u64 {
    200
}

/// The longest a request may be held back to the rate (a burst without `nodelay`).
const MAX_DELAY_SECS: f64 = 10.0;

fn default_max_clients() -> usize {
    100_000
}

/// `[access.keys]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysSection {
    #[serde(default = "default_key_header")]
    pub header: String,
    /// Take the key from `Authorization: Bearer KEY` instead of `header`.
    #[serde(default)]
    pub bearer: bool,
    /// Forward the credential header upstream (by default it is removed).
    #[serde(default)]
    pub forward: bool,
    #[serde(default)]
    pub list: Vec<Spanned<KeyEntry>>,
    /// A file of `NAME KEY` or `NAME sha256:HEX` lines.
    pub file: Option<Spanned<String>>,
    /// An environment variable holding the same, one entry per line or comma.
    pub env: Option<Spanned<String>>,
}

fn default_key_header() -> String {
    "X-API-Key".to_owned()
}

/// `{ name = "alice", key = "..." }` or `{ name = "bob", sha256 = "HEX" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub name: String,
    pub key: Option<String>,
    pub sha256: Option<String>,
}

/// `[access.jwt]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSection {
    pub algorithm: Spanned<String>,
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<String>,
    pub public_key_file: Option<String>,
    pub jwks_file: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    #[serde(default = "default_leeway")]
    pub leeway_s: u64,
    /// A claim sent upstream as a header (any such header from the client is removed first).
    pub forward_claim: Option<String>,
    #[serde(default = "default_claim_header")]
    pub claim_header: String,
}

fn default_leeway() -> u64 {
    30
}

fn default_claim_header() -> String {
    "X-Auth-Subject".to_owned()
}

/// `limit = { rate = "10r/s", burst = 5, nodelay = true, by = "ip" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSection {
    pub rate: String,
    #[serde(default)]
    pub burst: u64,
    #[serde(default)]
    pub nodelay: bool,
    #[serde(default = "default_by")]
    pub by: LimitBy,
}

fn default_by() -> LimitBy {
    LimitBy::Ip
}

/// Whose budget a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitBy {
    /// The client address (after trusted proxies).
    Ip,
    /// The API key's name or the JWT's `sub`; the address when there is neither.
    Key,
    /// One budget for everyone the rule covers.
    Rule,
}

/// `[[access.rules]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSection {
    /// A prefix of the normalised path, as nginx's prefix `location`.
    pub path: Spanned<String>,
    /// For `RateLimit-Policy` and the logs; `path` by default.
    pub name: Option<String>,
    pub auth: Option<Spanned<String>>,
    pub ip: Option<Vec<Spanned<String>>>,
    pub limit: Option<Spanned<LimitSection>>,
    /// Forward `X-Original-URL` and `X-Rewrite-URL` on requests this rule covers (stripped
    /// everywhere else: some frameworks serve the URL they name instead of the target).
    #[serde(default)]
    pub allow_url_override: bool,
}

/// Which credential a rule demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Auth {
    #[default]
    None,
    Key,
    Jwt,
    /// An API key or a JWT.
    Any,
}

/// A rule, resolved: its own settings, or the `[access]` defaults where it has none.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    pub name: String,
    pub prefix: String,
    pub auth: Auth,
    pub ip: IpRules,
    pub limit: Option<(LimitSpec, LimitBy)>,
    /// `X-Original-URL` and `X-Rewrite-URL` go upstream (see `RuleSection`).
    pub allow_url_override: bool,
}

/// Where the API key is read from.
#[derive(Debug, Clone)]
pub struct KeySettings {
    pub store: KeyStore,
    pub header: String,
    pub bearer: bool,
    pub forward: bool,
}

#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub verifier: JwtVerifier,
    /// `(claim, header)`.
    pub forward_claim: Option<(String, String)>,
}

/// `[access]`, checked: the keys loaded (as digests), the rules sorted longest prefix first.
#[derive(Debug, Clone)]
pub struct AccessSettings {
    pub strict: bool,
    pub trusted: Vec<Cidr>,
    pub keys: Option<KeySettings>,
    pub jwt: Option<JwtSettings>,
    /// What applies where no rule matches.
    pub default_rule: Rule,
    pub rules: Vec<Rule>,
    pub max_clients: NonZeroUsize,
    pub limit_conn: u32,
    pub store: Option<StoreSettings>,
}

/// The shared store of rate limits.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub url: String,
    pub fallback: Fallback,
    pub timeout: std::time::Duration,
}

impl Default for AccessSettings {
    fn default() -> AccessSettings {
        AccessSettings {
            strict: false,
            trusted: Vec::new(),
            keys: None,
            jwt: None,
            default_rule: Rule {
                name: "default".to_owned(),
                prefix: "/".to_owned(),
                ..Rule::default()
            },
            rules: Vec::new(),
            max_clients: NonZeroUsize::MIN.saturating_add(default_max_clients() - 1),
            limit_conn: 0,
            store: None,
        }
    }
}

impl AccessSettings {
    /// One line for `-t`.
    pub fn summary(&self) -> String {
        format!(
            "access: {} keys, {}jwt, {} rules",
            self.keys.as_ref().map_or(0, |k| k.store.len()),
            if self.jwt.is_some() { "" } else { "no " },
            self.rules.len()
        )
    }

    /// Puts `list` (the `-a` file) before the IP list of every rule and the default.
    pub fn prepend_ip(&mut self, list: &IpRules) {
        self.default_rule.ip.prepend(list);
        for rule in &mut self.rules {
            rule.ip.prepend(list);
        }
    }
}

/// Reads an `-a FILE`: one `allow CIDR`, `deny CIDR` or bare address or CIDR (deny) per line,
/// `#` comments. Errors name the file and line.
pub fn read_ip_file(path: &std::path::Path) -> Result<IpRules, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read the file: {e}", path.display()))?;
    let mut rules = IpRules::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        rules
            .push_line(line)
            .map_err(|e| format!("{}:{}:1: {e}", path.display(), n + 1))?;
    }
    Ok(rules)
}

/// Checks `[access]`; `None` when the file has none.
pub fn check(section: Option<AccessSection>) -> Result<Option<AccessSettings>, SectionError> {
    let err = SectionError::new;
    let Some(section) = section else {
        return Ok(None);
    };
    let at = |span: Range<usize>, message: String| err(Some(span), message);
    let mut trusted = Vec::new();
    for entry in &section.trusted_proxies {
        trusted.push(
            Cidr::parse(entry.get_ref())
                .map_err(|e| at(entry.span(), format!("trusted_proxies: {e}")))?,
        );
    }
    let keys = match section.keys {
        None => None,
        Some(k) => Some(check_keys(k, &at)?),
    };
    if let Some((a, b)) = keys.as_ref().and_then(|k| k.store.duplicate()) {
        // No position: the two may come from different sources (list, file, environment).
        return Err(err(
            None,
            format!("[access.keys] '{a}' and '{b}' have the same key"),
        ));
    }
    let jwt = match section.jwt {
        None => None,
        Some(j) => Some(check_jwt(j, &at)?),
    };
    let base = Rule {
        name: "default".to_owned(),
        prefix: "/".to_owned(),
        auth: auth(section.auth.as_ref(), &at)?.unwrap_or_default(),
        ip: ip_list(section.ip.as_deref(), &at)?.unwrap_or_default(),
        limit: limit(section.limit.as_ref(), &at)?,
        allow_url_override: false,
    };
    let mut rules = Vec::new();
    for rule in section.rules {
        let r = rule.get_ref();
        let prefix = r.path.get_ref();
        if !prefix.starts_with('/') {
            return Err(at(r.path.span(), "path must start with '/'".to_owned()));
        }
        // A rule is matched on the normalised path, so its prefix must be normal too, or it
        // could never match (`/a//b`, `/a/../b`, `/%61`).
        match super::path::normalise(prefix, false) {
            Ok(normal) if normal == *prefix => {}
            _ => {
                return Err(at(
                    r.path.span(),
                    format!("path '{prefix}' is not in normal form (no //, dot-segments, %-encoded letters or ;)"),
                ))
            }
        }
        if rules.iter().any(|x: &Rule| x.prefix == *prefix) {
            return Err(at(r.path.span(), format!("path '{prefix}' has two rules")));
        }
        rules.push(Rule {
            name: r.name.clone().unwrap_or_else(|| prefix.clone()),
            prefix: prefix.clone(),
            auth: auth(r.auth.as_ref(), &at)?.unwrap_or(base.auth),
            // nginx: a location with its own allow/deny replaces the server's, never adds.
            ip: ip_list(r.ip.as_deref(), &at)?.unwrap_or_else(|| base.ip.clone()),
            limit: match &r.limit {
                Some(_) => limit(r.limit.as_ref(), &at)?,
                None => base.limit,
            },
            allow_url_override: r.allow_url_override,
        });
    }
    // Longest prefix first, so the first covering rule is the most specific (nginx).
    rules.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
    let all = rules.iter().chain(std::iter::once(&base));
    for rule in all {
        let missing = match rule.auth {
            Auth::None => None,
            Auth::Key if keys.is_none() => Some("[access.keys]"),
            Auth::Jwt if jwt.is_none() => Some("[access.jwt]"),
            Auth::Any if keys.is_none() && jwt.is_none() => Some("[access.keys] or [access.jwt]"),
            _ => None,
        };
        if let Some(missing) = missing {
            return Err(err(
                None,
                format!(
                    "[access] rule '{}' asks for a credential: add {missing}",
                    rule.name
                ),
            ));
        }
    }
    let fallback = match section.store_fallback.get_ref().as_str() {
        "local" => Fallback::Local,
        "refuse" => Fallback::Refuse,
        other => {
            return Err(at(
                section.store_fallback.span(),
                format!("store_fallback '{other}' must be local or refuse"),
            ))
        }
    };
    if !(1..=10_000).contains(&section.store_timeout_ms) {
        return Err(err(
            None,
            "[access] store_timeout_ms must be from 1 to 10000".to_owned(),
        ));
    }
    let store = match &section.store {
        None => None,
        Some(url) => {
            let timeout = std::time::Duration::from_millis(section.store_timeout_ms);
            // Parsed now so that -t finds a bad URL; connected at the first decision.
            RedisStore::new(url.get_ref(), fallback, timeout).map_err(|e| at(url.span(), e))?;
            Some(StoreSettings {
                url: url.get_ref().clone(),
                fallback,
                timeout,
            })
        }
    };
    let max_clients = NonZeroUsize::new(section.max_clients)
        .ok_or_else(|| err(None, "[access] max_clients must be at least 1".to_owned()))?;
    Ok(Some(AccessSettings {
        strict: section.strict,
        trusted,
        keys,
        jwt,
        default_rule: base,
        rules,
        max_clients,
        limit_conn: section.limit_conn,
        store,
    }))
}

type At<'a> = dyn Fn(Range<usize>, String) -> SectionError + 'a;

fn auth(value: Option<&Spanned<String>>, at: &At<'_>) -> Result<Option<Auth>, SectionError> {
    let Some(value) = value else { return Ok(None) };
    match value.get_ref().as_str() {
        "none" => Ok(Some(Auth::None)),
        "key" => Ok(Some(Auth::Key)),
        "jwt" => Ok(Some(Auth::Jwt)),
        "any" => Ok(Some(Auth::Any)),
        other => Err(at(
            value.span(),
            format!("auth '{other}' must be none, key, jwt or any"),
        )),
    }
}

fn ip_list(list: Option<&[Spanned<String>]>, at: &At<'_>) -> Result<Option<IpRules>, SectionError> {
    let Some(list) = list else { return Ok(None) };
    let mut rules = IpRules::default();
    for line in list {
        let text = line.get_ref().trim();
        if !(text.starts_with("allow ") || text.starts_with("deny ")) {
            return Err(at(
                line.span(),
                format!(
                    "'{text}' must be \"allow CIDR\", \"deny CIDR\", \"allow all\" or \"deny all\""
                ),
            ));
        }
        rules
            .push_line(text)
            .map_err(|e| at(line.span(), e.to_string()))?;
    }
    Ok(Some(rules))
}

fn limit(
    section: Option<&Spanned<LimitSection>>,
    at: &At<'_>,
) -> Result<Option<(LimitSpec, LimitBy)>, SectionError> {
    let Some(section) = section else {
        return Ok(None);
    };
    let l = section.get_ref();
    let rate = Rate::parse(&l.rate).map_err(|e| at(section.span(), e))?;
    if l.burst > 100_000 {
        return Err(at(
            section.span(),
            "burst must be at most 100000".to_owned(),
        ));
    }
    // Without nodelay a request may wait up to burst / rate in its worker: bounded, so that a
    // typo cannot park the pool for hours.
    let longest_wait = l.burst as f64 * rate.per_secs as f64 / rate.requests as f64;
    if !l.nodelay && longest_wait > MAX_DELAY_SECS {
        return Err(at(
            section.span(),
            format!(
                "without nodelay a request may wait burst / rate = {longest_wait:.0} s in a worker; \
                 at most {MAX_DELAY_SECS} s: lower the burst or set nodelay = true"
            ),
        ));
    }
    Ok(Some((
        LimitSpec {
            rate,
            burst: l.burst,
            nodelay: l.nodelay,
        },
        l.by,
    )))
}

fn check_keys(k: KeysSection, at: &At<'_>) -> Result<KeySettings, SectionError> {
    let mut list: Vec<ApiKey> = Vec::new();
    for entry in &k.list {
        let e = entry.get_ref();
        let key = match (&e.key, &e.sha256) {
            (Some(value), None) if !value.is_empty() => ApiKey::from_value(&e.name, value),
            (None, Some(hex)) => ApiKey::from_digest(&e.name, hex)
                .map_err(|err| at(entry.span(), format!("key '{}': {err}", e.name)))?,
            _ => {
                return Err(at(
                    entry.span(),
                    format!("key '{}' needs exactly one of key or sha256", e.name),
                ))
            }
        };
        list.push(key);
    }
    if let Some(file) = &k.file {
        let text = std::fs::read_to_string(file.get_ref())
            .map_err(|e| at(file.span(), format!("keys file '{}': {e}", file.get_ref())))?;
        let mut from_file = keys::parse_list(&text, &['\n'])
            .map_err(|e| at(file.span(), format!("keys file '{}': {e}", file.get_ref())))?;
        list.append(&mut from_file);
    }
    if let Some(var) = &k.env {
        let text = std::env::var(var.get_ref()).map_err(|_| {
            at(
                var.span(),
                format!("environment variable {} is not set", var.get_ref()),
            )
        })?;
        let mut from_env = keys::parse_list(&text, &['\n', ','])
            .map_err(|e| at(var.span(), format!("${}: {e}", var.get_ref())))?;
        list.append(&mut from_env);
    }
    let store = KeyStore::new(list);
    let header = if k.bearer {
        "Authorization".to_owned()
    } else {
        k.header
    };
    Ok(KeySettings {
        store,
        header,
        bearer: k.bearer,
        forward: k.forward,
    })
}

fn check_jwt(section: Spanned<JwtSection>, at: &At<'_>) -> Result<JwtSettings, SectionError> {
    let span = section.span();
    let j = section.into_inner();
    let algorithm =
        jwt::parse_algorithm(j.algorithm.get_ref()).map_err(|e| at(j.algorithm.span(), e))?;
    let read = |path: &str| {
        std::fs::read(path).map_err(|e| at(span.clone(), format!("[access.jwt] '{path}': {e}")))
    };
    let secret: Option<Vec<u8>> = match (&j.secret, &j.secret_env, &j.secret_file) {
        (Some(s), None, None) => Some(s.as_bytes().to_vec()),
        (None, Some(var), None) => Some(
            std::env::var(var)
                .map_err(|_| {
                    at(
                        span.clone(),
                        format!("environment variable {var} is not set"),
                    )
                })?
                .into_bytes(),
        ),
        (None, None, Some(path)) => Some(read(path)?.trim_ascii().to_vec()),
        (None, None, None) => None,
        _ => {
            return Err(at(
                span,
                "[access.jwt] give one of secret, secret_env, secret_file".to_owned(),
            ))
        }
    };
    let pem = j.public_key_file.as_deref().map(read).transpose()?;
    let jwks = match &j.jwks_file {
        Some(path) => Some(
            String::from_utf8(read(path)?)
                .map_err(|_| at(span.clone(), format!("'{path}' is not UTF-8")))?,
        ),
        None => None,
    };
    let source = match (&secret, &pem, &jwks) {
        (Some(s), None, None) => KeySource::Secret(s),
        (None, Some(p), None) => KeySource::Pem(p),
        (None, None, Some(t)) => KeySource::Jwks(t),
        _ => {
            return Err(at(
                span,
                "[access.jwt] give one key: a secret (HS256), public_key_file or jwks_file (RS256, ES256)".to_owned(),
            ))
        }
    };
    let expect = Expect {
        issuer: j.issuer.clone(),
        audience: j.audience.clone(),
        leeway_s: j.leeway_s,
    };
    if j.leeway_s > 300 {
        return Err(at(
            span,
            "[access.jwt] leeway_s must be at most 300".to_owned(),
        ));
    }
    let verifier = JwtVerifier::new(algorithm, source, &expect)
        .map_err(|e| at(span.clone(), format!("[access.jwt] {e}")))?;
    Ok(JwtSettings {
        verifier,
        forward_claim: j.forward_claim.map(|claim| (claim, j.claim_header)),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::parse;

    /// `proxy.example.toml` with its `[access]` block uncommented.
    fn example_with_access() -> String {
        let text = include_str!("../../proxy.example.toml");
        let start = text
            .find("# [access]")
            .expect("the example documents [access]");
        let (head, block) = text.split_at(start);
        let block: Vec<&str> = block
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .unwrap_or(if l.starts_with('#') { "" } else { l })
            })
            .collect();
        format!("{head}{}\n", block.join("\n"))
    }

    #[test]
    fn the_example_access_block_is_valid_uncommented() {
        let text = example_with_access();
        let s = parse(&text, Path::new("proxy.toml")).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let access = s.access.expect("[access] is read");
        assert_eq!(access.rules.len(), 1);
        assert_eq!(access.rules[0].auth, Auth::Key);
        assert_eq!(access.keys.as_ref().map(|k| k.store.len()), Some(2));
        assert!(access.jwt.is_some());
        assert_eq!(access.trusted.len(), 1);
        // And commented, as shipped, there is no [access].
        let s = parse(
            include_str!("../../proxy.example.toml"),
            Path::new("p.toml"),
        )
        .unwrap();
        assert!(s.access.is_none());
    }

    #[test]
    fn access_errors_name_line_and_column() {
        const UP: &str = "[upstreams.app]\nservers = [\"127.0.0.1:8000\"]\n";
        type Case = (&'static str, &'static str, Option<(usize, usize)>);
        let table: &[Case] = &[
            ("[access]\nstrictt = true\n", "unknown field `strictt`", Some((2, 1))),
            ("[access]\nip = [\"allow 10.0.0.1/8\"]\n", "host bits set", Some((2, 7))),
            ("[access]\nip = [\"10.0.0.0/8\"]\n", "must be \"allow CIDR\"", Some((2, 7))),
            ("[access]\ntrusted_proxies = [\"nowhere\"]\n", "not an IPv4", Some((2, 20))),
            ("[access]\nauth = \"maybe\"\n", "auth 'maybe'", Some((2, 8))),
            ("[access]\nauth = \"key\"\n", "add [access.keys]", None),
            ("[access]\nlimit = { rate = \"10r/h\" }\n", "must look like 10r/s", Some((2, 9))),
            ("[access]\nlimit = { rate = \"1r/m\", burst = 5 }\n", "wait burst / rate = 300 s", Some((2, 9))),
            ("[[access.rules]]\npath = \"admin\"\n", "must start with '/'", Some((2, 8))),
            ("[[access.rules]]\npath = \"/a//b\"\n", "not in normal form", Some((2, 8))),
            ("[[access.rules]]\npath = \"/%61\"\n", "not in normal form", Some((2, 8))),
            ("[access.keys]\nlist = [{ name = \"a\" }]\n", "exactly one of key or sha256", Some((2, 9))),
            ("[access.keys]\nlist = [{ name = \"a\", sha256 = \"ab\" }]\n", "64 hexadecimal", Some((2, 9))),
            ("[access.keys]\nlist = [{ name = \"a\", key = \"k\" }, { name = \"b\", key = \"k\" }]\n", "'a' and 'b' have the same key", None),
            ("[access.keys]\nenv = \"REVPROXY_TEST_UNSET_VARIABLE\"\n", "is not set", Some((2, 7))),
            ("[access.jwt]\nalgorithm = \"none\"\nsecret = \"x\"\n", "must be HS256, RS256 or ES256", Some((2, 13))),
            ("[access.jwt]\nalgorithm = \"HS256\"\nsecret = \"short\"\n", "at least 32 bytes", Some((1, 1))),
            ("[access.jwt]\nalgorithm = \"RS256\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n", "need a public key", Some((1, 1))),
        ];
        for (text, want, position) in table {
            let text = format!("{text}{UP}");
            let err = parse(&text, Path::new("proxy.toml")).expect_err(&text);
            let shown = err.to_string();
            assert!(
                shown.contains(want),
                "{text:?}\n gave {shown:?}\n want {want:?}"
            );
            if position.is_some() {
                assert_eq!(err.position, *position, "{shown}");
            }
        }
    }
}
