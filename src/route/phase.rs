//! Routing as request phases: the request phase finds the route (Host, then the normalised
//! path), names it in the head, and either answers (a fixed page, a redirect, the default for
//! unmatched requests) or rewrites the head for its upstream (prefix stripped, `Host`,
//! request headers); the route phase hands the relay that route's upstream group; the upgrade
//! phase applies the route's `websocket` setting; the response-head phase edits the response
//! headers.
//!
//! The decision uses the normalised path of `access::path` (`/%73ervice1/x` is
//! `/service1/x`, `/service1/../service2` is `/service2`), never the raw bytes, so a route
//! and an access rule always see the same path. The target goes upstream as received, except
//! when a prefix is stripped: the rest of the normalised path is sent then, as nginx sends
//! the normalised URI when `proxy_pass` replaces a location's prefix (a path already in
//! normal form is sent byte for byte).

use std::sync::Arc;

use super::config::{Action, HeaderEdits, Route, RouteSettings, Unmatched, UpstreamHost};
use super::table::{request_host, strip_prefix, HostPattern, Table};
use crate::access::path::normalise;
use crate::http::head::{Header, Headers};
use crate::http::{RequestHead, ResponseHead};
use crate::relay::{BodyPlan, Client, Phases, Reply, ReplyBody};
use crate::upstream::Upstreams;

/// One route with its upstream group resolved to an index in `RoutePhases::groups`.
struct Compiled {
    route: Route,
    group: Option<usize>,
}

/// The routing phases of stage 9.
pub struct RoutePhases {
    routes: Vec<Compiled>,
    table: Table,
    unmatched: Unmatched,
    groups: Vec<(String, Arc<dyn Upstreams>)>,
    /// The settings as printed, to tell a reload that changed them (see `same_routes`).
    printed: String,
}

/// What the phases keep for one exchange: the route that took it.
#[derive(Debug, Default)]
pub struct RouteCtx {
    route: Option<usize>,
}

impl RoutePhases {
    /// Routes over the running upstream `groups` (by name). Without routes the phases do
    /// nothing, and every request goes to the relay's default upstream, as in stage 8.
    pub fn new(
        settings: &RouteSettings,
        groups: Vec<(String, Arc<dyn Upstreams>)>,
    ) -> Result<RoutePhases, String> {
        let mut routes = Vec::new();
        for route in &settings.routes {
            let group = match &route.action {
                Action::Upstream(name) => {
                    Some(groups.iter().position(|(n, _)| n == name).ok_or_else(|| {
                        format!("route {}: upstream {name} is not running", route.name)
                    })?)
                }
                _ => None,
            };
            routes.push(Compiled {
                route: route.clone(),
                group,
            });
        }
        let patterns: Vec<(Vec<HostPattern>, String)> = settings
            .routes
            .iter()
            .map(|r| (r.hosts.clone(), r.path.clone()))
            .collect();
        Ok(RoutePhases {
            routes,
            table: Table::new(&patterns),
            unmatched: settings.unmatched.clone(),
            groups,
            printed: format!("{settings:?}"),
        })
    }

    /// Whether `other` was built from the same `[[routes]]` and `[routing]`: every route sends
    /// the same requests to the same group with the same rewrites. A cache keyed by route name
    /// may keep its entries across a reload only then; a route that now sends to another group
    /// must not answer from what the old one said. (Compared in their printed form: equal
    /// settings print alike, and a false "changed" only costs the cache its entries.)
    pub fn same_routes(&self, other: &RoutePhases) -> bool {
        self.printed == other.printed
    }

    /// The route for a request, or the answer for one no route takes.
    fn choose(&self, head: &RequestHead, path: &str) -> Result<usize, Reply> {
        let host = request_host(head.header("host"));
        match (self.table.find(host.as_deref(), path), &self.unmatched) {
            (Some(index), _) => Ok(index),
            (None, Unmatched::Route(index)) => Ok(*index),
            (None, Unmatched::Status(status)) => Err(Reply::error(*status)),
        }
    }
}

impl Phases for RoutePhases {
    type Ctx = RouteCtx;

    fn request(
        &self,
        ctx: &mut RouteCtx,
        head: &mut RequestHead,
        _client: &Client,
    ) -> Option<Reply> {
        if self.routes.is_empty() {
            return None;
        }
        let path = match normalise(&head.target, false) {
            Ok(path) => path,
            Err(err) => {
                log::debug!("refusing {}: {err}", head.target);
                return Some(Reply::error(400));
            }
        };
        let index = match self.choose(head, &path) {
            Ok(index) => index,
            Err(reply) => return Some(reply),
        };
        ctx.route = Some(index);
        let Compiled { route, group } = &self.routes[index];
        head.route = Some(Arc::clone(&route.name));
        if route.strip_prefix && head.target.starts_with('/') {
            head.rewrite_target(stripped_target(&head.target, &path, &route.path));
        }
        match &route.action {
            Action::Fixed(fixed) => {
                let mut reply = Reply::new(fixed.status);
                for (name, value) in &fixed.headers {
                    reply = reply.header(name, value);
                }
                reply.body = ReplyBody::Shared(Arc::clone(&fixed.body));
                Some(reply)
            }
            Action::Redirect(redirect) => {
                let location = if redirect.keep_path {
                    format!("{}{}", redirect.to.trim_end_matches('/'), head.target)
                } else {
                    redirect.to.clone()
                };
                let reply = Reply::new(redirect.status)
                    .text(format!("Redirecting to {location}\n"))
                    .header("Location", location);
                Some(reply)
            }
            Action::Upstream(_) => {
                let group_name = group.map(|g| self.groups[g].0.as_str());
                match (&route.upstream_host, group_name) {
                    (UpstreamHost::Client, _) | (UpstreamHost::Upstream, None) => {}
                    (UpstreamHost::Upstream, Some(name)) => {
                        set_header(&mut head.headers, "Host", name)
                    }
                    (UpstreamHost::Literal(name), _) => set_header(&mut head.headers, "Host", name),
                }
                edit(&mut head.headers, &route.request_headers);
                None
            }
        }
    }

    fn route<'a>(&'a self, ctx: &mut RouteCtx, _head: &RequestHead) -> Option<&'a dyn Upstreams> {
        let group = self.routes.get(ctx.route?)?.group?;
        Some(&*self.groups[group].1)
    }

    /// A route's `websocket` setting, when it has one, decides over `[upgrades] enabled`.
    fn upgrade(&self, ctx: &mut RouteCtx, _head: &RequestHead, _protocols: &str) -> Option<bool> {
        self.routes.get(ctx.route?)?.route.websocket
    }

    fn response_head(
        &self,
        ctx: &mut RouteCtx,
        _request: &RequestHead,
        response: &mut ResponseHead,
        _body: &mut BodyPlan,
    ) {
        if let Some(compiled) = ctx.route.and_then(|i| self.routes.get(i)) {
            edit(&mut response.headers, &compiled.route.response_headers);
        }
    }
}

/// The target with `prefix` stripped from its path: the raw path when it is already in
/// normal form (sent byte for byte), else the normalised one; the query is kept as sent.
fn stripped_target(target: &str, normal: &str, prefix: &str) -> String {
    let (raw_path, query) = match target.find('?') {
        Some(at) => target.split_at(at),
        None => (target, ""),
    };
    let path = if raw_path == normal { raw_path } else { normal };
    format!("{}{query}", strip_prefix(prefix, path))
}

/// Replaces every header `name` with one line `name: value`, where the first one stood.
fn set_header(headers: &mut Vec<Header>, name: &str, value: &str) {
    let at = headers
        .iter()
        .position(|h| h.name.eq_ignore_ascii_case(name));
    headers.retain(|h| !h.name.eq_ignore_ascii_case(name));
    let header = Header {
        name: name.to_owned(),
        value: value.as_bytes().to_vec(),
    };
    match at {
        Some(at) => headers.insert(at.min(headers.len()), header),
        None => headers.push(header),
    }
}

fn edit(headers: &mut Vec<Header>, edits: &HeaderEdits) {
    if edits.is_empty() {
        return;
    }
    for name in &edits.remove {
        headers.retain(|h| !h.name.eq_ignore_ascii_case(name));
    }
    for (name, value) in &edits.set {
        set_header(headers, name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripping_keeps_the_query_and_sends_normal_paths() {
        // (target, prefix, what goes upstream)
        let table = [
            ("/service1/x", "/service1", "/x"),
            ("/service1", "/service1", "/"),
            ("/service1?q=1", "/service1", "/?q=1"),
            ("/service1/x?a=b&c", "/service1", "/x?a=b&c"),
            ("/%73ervice1/x", "/service1", "/x"),
            ("/service1//x/./y", "/service1", "/x/y"),
            ("/service1/a%2Fb", "/service1", "/a%2Fb"),
        ];
        for (target, prefix, want) in table {
            let normal = normalise(target, false).unwrap();
            assert_eq!(stripped_target(target, &normal, prefix), want, "{target}");
        }
    }

    #[test]
    fn header_edits_replace_and_remove_whatever_the_case() {
        let h = |n: &str, v: &str| Header {
            name: n.to_owned(),
            value: v.as_bytes().to_vec(),
        };
        let mut headers = vec![
            h("Host", "a"),
            h("x-one", "1"),
            h("X-ONE", "2"),
            h("Cookie", "c"),
        ];
        let edits = HeaderEdits {
            set: vec![
                ("X-One".to_owned(), "new".to_owned()),
                ("X-Two".to_owned(), "2".to_owned()),
            ],
            remove: vec!["cookie".to_owned()],
        };
        edit(&mut headers, &edits);
        assert_eq!(
            headers,
            vec![h("Host", "a"), h("X-One", "new"), h("X-Two", "2")]
        );
    }
}
