//! `[[routes]]` and `[routing]` in the configuration file: the serde types as written, and
//! their check into [`RouteSettings`]. Kept here, not in `config/`, so the routing module owns
//! its vocabulary; `config/` holds one field for each table.
//!
//! ```toml
//! [[routes]]
//! name = "service1"               # default: route1, route2, ... in file order
//! hosts = ["a.test", "*.example.test"]  # default: any host
//! path = "/service1"              # prefix, default "/"
//! upstream = "service1"           # or return = { ... }, or redirect = { ... }: exactly one
//! strip_prefix = true             # /service1/x goes upstream as /x
//! upstream_host = "client"        # Host sent upstream: client, upstream, or a literal name
//! request_headers = { set = { "X-Route" = "service1" }, remove = ["Cookie"] }
//! response_headers = { set = { "X-Served-By" = "revproxy" }, remove = ["Server"] }
//! websocket = true                # pass upgrades (WebSocket) here; default: [upgrades] enabled
//!
//! [routing]
//! default_status = 404            # what a request no route takes gets, or:
//! # default_route = "service1"    # the route that takes it instead
//! ```

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::table::HostPattern;
use crate::access::path::normalise;
use crate::config::SectionError;
use crate::http::target::valid_host;

/// One `[[routes]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub name: Option<Spanned<String>>,
    #[serde(default)]
    pub hosts: Vec<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub upstream: Option<Spanned<String>>,
    #[serde(rename = "return")]
    pub fixed: Option<Spanned<ReturnSection>>,
    pub redirect: Option<Spanned<RedirectSection>>,
    #[serde(default)]
    pub strip_prefix: bool,
    pub upstream_host: Option<Spanned<String>>,
    pub request_headers: Option<Spanned<HeaderEditsSection>>,
    pub response_headers: Option<Spanned<HeaderEditsSection>>,
    pub websocket: Option<Spanned<bool>>,
}

/// `return = { status = 200, body = "...", headers = { ... } }`: nginx's `return`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnSection {
    #[serde(default = "default_return_status")]
    pub status: u16,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_return_status() -> u16 {
    200
}

/// `redirect = { to = "https://a.test/new", status = 301, keep_path = true }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectSection {
    pub to: String,
    /// nginx's `return URL` sends 302; so does this.
    #[serde(default = "default_redirect_status")]
    pub status: u16,
    /// Append the request's path and query (after `strip_prefix`) to `to`.
    #[serde(default)]
    pub keep_path: bool,
}

fn default_redirect_status() -> u16 {
    302
}

/// `{ set = { "Name" = "value" }, remove = ["Name"] }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderEditsSection {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `[routing]`: what becomes of a request that no route takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSection {
    /// The status of the proxy's answer (default 404).
    pub default_status: Option<Spanned<u16>>,
    /// A route (by name) that takes such requests instead.
    pub default_route: Option<Spanned<String>>,
}

/// The routes, checked, in file order.
#[derive(Debug, Clone, Default)]
pub struct RouteSettings {
    pub routes: Vec<Route>,
    pub unmatched: Unmatched,
}

impl RouteSettings {
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// For `-t`: how many routes and what the rest gets.
    pub fn summary(&self) -> String {
        let rest = match &self.unmatched {
            Unmatched::Status(status) => format!("others {status}"),
            Unmatched::Route(i) => format!("others to route {}", self.routes[*i].name),
        };
        format!("{} routes, {rest}", self.routes.len())
    }
}

/// One route, checked.
#[derive(Debug, Clone)]
pub struct Route {
    /// Shared with every request head it takes (`RequestHead::route`).
    pub name: Arc<str>,
    /// Empty: any host.
    pub hosts: Vec<HostPattern>,
    /// A prefix of the normalised path.
    pub path: String,
    pub action: Action,
    pub strip_prefix: bool,
    pub upstream_host: UpstreamHost,
    pub request_headers: HeaderEdits,
    pub response_headers: HeaderEdits,
    /// Whether upgrade requests (WebSocket) may switch protocols on this route; `None`
    /// follows `[upgrades] enabled`.
    pub websocket: Option<bool>,
}

/// What a route does with the requests it takes.
#[derive(Debug, Clone)]
pub enum Action {
    /// Forward to the `[upstreams.NAME]` group.
    Upstream(String),
    /// Answer with a fixed response.
    Fixed(FixedResponse),
    Redirect(Redirect),
}

#[derive(Debug, Clone)]
pub struct FixedResponse {
    pub status: u16,
    /// As written; a `Content-Type` of `text/plain; charset=utf-8` is added to a body when
    /// none is given.
    pub headers: Vec<(String, String)>,
    pub body: Arc<[u8]>,
}

#[derive(Debug, Clone)]
pub struct Redirect {
    pub to: String,
    pub status: u16,
    pub keep_path: bool,
}

/// The `Host` a route sends upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamHost {
    /// The client's, unchanged (the default; nginx's `proxy_set_header Host $host`).
    Client,
    /// The upstream group's name (nginx's default, `$proxy_host`).
    Upstream,
    Literal(String),
}

/// Headers to set (replacing every header of that name) and to remove.
#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

/// What a request no route takes gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmatched {
    /// The proxy's own answer with this status.
    Status(u16),
    /// This route (an index in `RouteSettings::routes`) takes it.
    Route(usize),
}

impl Default for Unmatched {
    fn default() -> Unmatched {
        Unmatched::Status(404)
    }
}

/// Request headers a route may not set or remove: the framing and `Expect` are decided before
/// the route runs, `Host` has `upstream_host`, and hop-by-hop headers never go upstream.
const FIXED_REQUEST_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "expect",
    "host",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
];

/// Response headers the proxy writes itself.
const FIXED_RESPONSE_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "trailer",
    "upgrade",
];

/// Checks `[[routes]]` and `[routing]` against the names of the upstream groups.
pub fn check(
    sections: Vec<Spanned<RouteSection>>,
    routing: Option<Spanned<RoutingSection>>,
    upstreams: &[&str],
) -> Result<RouteSettings, SectionError> {
    let err = SectionError::new;
    let at = |span: Range<usize>, message: String| err(Some(span), message);
    let mut routes: Vec<Route> = Vec::new();
    for (index, section) in sections.into_iter().enumerate() {
        let span = section.span();
        let route = check_route(index, section.into_inner(), span.clone(), upstreams, &at)?;
        if routes.iter().any(|r| r.name == route.name) {
            return Err(at(
                span,
                format!("route name {:?} is used twice", &*route.name),
            ));
        }
        if let Some(other) = routes
            .iter()
            .find(|r| r.path == route.path && r.hosts == route.hosts)
        {
            return Err(at(
                span,
                format!(
                    "route {} has the same hosts and path as route {}",
                    route.name, other.name
                ),
            ));
        }
        routes.push(route);
    }
    let unmatched = match routing {
        None => Unmatched::default(),
        Some(routing) => {
            let span = routing.span();
            let routing = routing.into_inner();
            if routes.is_empty() {
                return Err(at(
                    span,
                    "[routing] needs [[routes]] to apply to".to_owned(),
                ));
            }
            match (routing.default_status, routing.default_route) {
                (Some(_), Some(route)) => {
                    return Err(at(
                        route.span(),
                        "[routing] takes default_status or default_route, not both".to_owned(),
                    ))
                }
                (Some(status), None) => {
                    if !(400..=599).contains(status.get_ref()) {
                        return Err(at(
                            status.span(),
                            format!(
                                "default_status {} must be from 400 to 599",
                                status.get_ref()
                            ),
                        ));
                    }
                    Unmatched::Status(*status.get_ref())
                }
                (None, Some(name)) => {
                    match routes.iter().position(|r| *r.name == **name.get_ref()) {
                        Some(i) => Unmatched::Route(i),
                        None => {
                            return Err(at(
                                name.span(),
                                format!("default_route: no route is named {:?}", name.get_ref()),
                            ))
                        }
                    }
                }
                (None, None) => Unmatched::default(),
            }
        }
    };
    Ok(RouteSettings { routes, unmatched })
}

type At<'a> = dyn Fn(Range<usize>, String) -> SectionError + 'a;

fn check_route(
    index: usize,
    section: RouteSection,
    span: Range<usize>,
    upstreams: &[&str],
    at: &At<'_>,
) -> Result<Route, SectionError> {
    let name: Arc<str> = match &section.name {
        Some(name) => {
            let text = name.get_ref();
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(at(
                    name.span(),
                    format!("route name {text:?} must be printable, without spaces"),
                ));
            }
            text.as_str().into()
        }
        None => format!("route{}", index + 1).into(),
    };
    let mut hosts = Vec::new();
    for host in &section.hosts {
        let pattern = HostPattern::parse(host.get_ref()).map_err(|e| at(host.span(), e))?;
        if hosts.contains(&pattern) {
            return Err(at(host.span(), format!("host {pattern} is listed twice")));
        }
        hosts.push(pattern);
    }
    let path = match &section.path {
        None => "/".to_owned(),
        Some(path) => check_path(path, at)?,
    };
    let action = check_action(&section, &name, span.clone(), upstreams, at)?;
    let upstream_host = match &section.upstream_host {
        None => UpstreamHost::Client,
        Some(host) => {
            if !matches!(action, Action::Upstream(_)) {
                return Err(at(
                    host.span(),
                    "upstream_host applies only to a route with upstream = \"NAME\"".to_owned(),
                ));
            }
            match host.get_ref().as_str() {
                "client" => UpstreamHost::Client,
                "upstream" => UpstreamHost::Upstream,
                literal if valid_host(literal.as_bytes()) => {
                    UpstreamHost::Literal(literal.to_owned())
                }
                literal => {
                    return Err(at(
                        host.span(),
                        format!(
                            "upstream_host {literal:?} must be client, upstream, or a host name"
                        ),
                    ))
                }
            }
        }
    };
    if section.strip_prefix && !matches!(action, Action::Upstream(_) | Action::Redirect(_)) {
        return Err(at(
            span,
            "strip_prefix applies only to a route with upstream or redirect".to_owned(),
        ));
    }
    let request_headers = match &section.request_headers {
        None => HeaderEdits::default(),
        Some(edits) => {
            if !matches!(action, Action::Upstream(_)) {
                return Err(at(
                    edits.span(),
                    "request_headers apply only to a route with upstream = \"NAME\"".to_owned(),
                ));
            }
            check_edits(edits, "request_headers", FIXED_REQUEST_HEADERS, at)?
        }
    };
    let response_headers = match &section.response_headers {
        None => HeaderEdits::default(),
        Some(edits) => check_edits(edits, "response_headers", FIXED_RESPONSE_HEADERS, at)?,
    };
    if let Some(websocket) = &section.websocket {
        if !matches!(action, Action::Upstream(_)) {
            return Err(at(
                websocket.span(),
                "websocket applies only to a route with upstream = \"NAME\"".to_owned(),
            ));
        }
    }
    Ok(Route {
        name,
        hosts,
        path,
        action,
        strip_prefix: section.strip_prefix,
        upstream_host,
        request_headers,
        response_headers,
        websocket: section.websocket.as_ref().map(|w| *w.get_ref()),
    })
}

/// A prefix is matched against normalised paths, so it must be written normalised itself (a
/// prefix `/a/../b` could never match anything).
fn check_path(path: &Spanned<String>, at: &At<'_>) -> Result<String, SectionError> {
    let text = path.get_ref();
    if !text.starts_with('/') || text.contains('?') {
        return Err(at(
            path.span(),
            format!("path {text:?} must start with '/' and have no query"),
        ));
    }
    match normalise(text, false) {
        Ok(normal) if normal == *text => Ok(normal),
        Ok(normal) => Err(at(
            path.span(),
            format!("path {text:?} is matched against normalised paths: write {normal:?}"),
        )),
        Err(e) => Err(at(path.span(), format!("path {text:?}: {e}"))),
    }
}

fn check_action(
    section: &RouteSection,
    name: &str,
    span: Range<usize>,
    upstreams: &[&str],
    at: &At<'_>,
) -> Result<Action, SectionError> {
    let given: Vec<Range<usize>> = [
        section.upstream.as_ref().map(Spanned::span),
        section.fixed.as_ref().map(Spanned::span),
        section.redirect.as_ref().map(Spanned::span),
    ]
    .into_iter()
    .flatten()
    .collect();
    match given.len() {
        0 => {
            return Err(at(
                span,
                format!("route {name} needs one action: upstream, return or redirect"),
            ))
        }
        1 => {}
        _ => {
            let second = given
                .iter()
                .max_by_key(|s| s.start)
                .cloned()
                .unwrap_or(span);
            return Err(at(
                second,
                format!(
                    "route {name} has more than one action (upstream, return, redirect): keep one"
                ),
            ));
        }
    }
    if let Some(upstream) = &section.upstream {
        let wanted = upstream.get_ref();
        if !upstreams.contains(&wanted.as_str()) {
            return Err(at(
                upstream.span(),
                format!("no [upstreams.{wanted}] is defined"),
            ));
        }
        return Ok(Action::Upstream(wanted.clone()));
    }
    if let Some(fixed) = &section.fixed {
        let span = fixed.span();
        let fixed = fixed.get_ref();
        // 1xx, 204 and 304 have no body, and a Content-Length on them is an error (RFC 9110
        // sections 8.6 and 15): a fixed response always carries one.
        if !(200..=599).contains(&fixed.status) || matches!(fixed.status, 204 | 304) {
            return Err(at(
                span,
                format!(
                    "return status {} must be from 200 to 599, not 204 or 304",
                    fixed.status
                ),
            ));
        }
        let mut headers = Vec::new();
        for (name, value) in &fixed.headers {
            check_header(name, Some(value), FIXED_RESPONSE_HEADERS)
                .map_err(|e| at(span.clone(), format!("return headers: {e}")))?;
            headers.push((name.clone(), value.clone()));
        }
        let typed = headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        if !typed && !fixed.body.is_empty() {
            headers.push((
                "Content-Type".to_owned(),
                "text/plain; charset=utf-8".to_owned(),
            ));
        }
        return Ok(Action::Fixed(FixedResponse {
            status: fixed.status,
            headers,
            body: fixed.body.as_bytes().into(),
        }));
    }
    let Some(redirect) = &section.redirect else {
        return Err(at(span, format!("route {name} needs one action")));
    };
    let span = redirect.span();
    let redirect = redirect.get_ref();
    if !matches!(redirect.status, 301 | 302 | 303 | 307 | 308) {
        return Err(at(
            span,
            format!(
                "redirect status {} must be 301, 302, 303, 307 or 308",
                redirect.status
            ),
        ));
    }
    if redirect.to.is_empty() || !redirect.to.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(at(
            span,
            format!(
                "redirect to {:?} must be a URL without spaces or control bytes",
                redirect.to
            ),
        ));
    }
    Ok(Action::Redirect(Redirect {
        to: redirect.to.clone(),
        status: redirect.status,
        keep_path: redirect.keep_path,
    }))
}

fn check_edits(
    edits: &Spanned<HeaderEditsSection>,
    what: &str,
    fixed: &[&str],
    at: &At<'_>,
) -> Result<HeaderEdits, SectionError> {
    let span = edits.span();
    let edits = edits.get_ref();
    let mut out = HeaderEdits::default();
    for (name, value) in &edits.set {
        check_header(name, Some(value), fixed)
            .map_err(|e| at(span.clone(), format!("{what}: {e}")))?;
        out.set.push((name.clone(), value.clone()));
    }
    for name in &edits.remove {
        check_header(name, None, fixed).map_err(|e| at(span.clone(), format!("{what}: {e}")))?;
        out.remove.push(name.clone());
    }
    Ok(out)
}

/// A header name is a token (RFC 9110 section 5.1), a value has no control bytes but tab.
fn check_header(name: &str, value: Option<&str>, fixed: &[&str]) -> Result<(), String> {
    const TCHAR: &[u8] = b"!#$%&'*+-.^_`|~";
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || TCHAR.contains(&b))
    {
        return Err(format!("{name:?} is not a header name"));
    }
    if fixed.iter().any(|f| name.eq_ignore_ascii_case(f)) {
        return Err(format!(
            "{name} is the proxy's to decide and cannot be changed"
        ));
    }
    if let Some(value) = value {
        if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(format!("the value of {name} has a control byte"));
        }
    }
    Ok(())
}
