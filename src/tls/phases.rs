//! Two small phases for a proxy that serves https: [`HttpsRedirect`] sends plain-http
//! requests to the same URL over https, and [`Hsts`] tells browsers to use https from then
//! on. Both read the scheme of the request's own connection (`Client::proto`), so one relay
//! can serve the plain and the TLS listener with them in its chain.

use super::config::TlsSettings;
use crate::http::head::Headers;
use crate::http::{Header, RequestHead, ResponseHead};
use crate::relay::{BodyPlan, Client, Phases, Reply};

/// Answers every request that arrived over plain http with `308 Permanent Redirect` to
/// `https://HOST[:PORT]/TARGET` (308, not 301: the method and body are kept on the retry).
#[derive(Debug, Clone)]
pub struct HttpsRedirect {
    /// The TLS listener's port, written into `Location` unless it is 443.
    pub https_port: u16,
}

impl HttpsRedirect {
    /// The reply for `head` (also usable outside a phase chain, by a routing phase).
    pub fn reply(&self, head: &RequestHead) -> Reply {
        let Some(host) = head
            .header("host")
            .and_then(|h| std::str::from_utf8(h).ok())
        else {
            // No name to send the client to (an HTTP/1.0 request without Host).
            return Reply::error(400);
        };
        let location = https_location(host, self.https_port, &head.target);
        Reply::new(308)
            .text(format!("308 Permanent Redirect: use {location}\n"))
            .header("Location", location)
    }
}

impl Phases for HttpsRedirect {
    type Ctx = ();

    fn request(&self, _: &mut (), head: &mut RequestHead, client: &Client) -> Option<Reply> {
        (client.proto == "http").then(|| self.reply(head))
    }
}

/// The https URL for `target` on `host` (whose port, if any, was the plain listener's).
pub fn https_location(host: &str, https_port: u16, target: &str) -> String {
    let name = match host.rsplit_once(':') {
        // An IPv6 literal keeps its brackets; `[::1]` alone has no port to strip.
        Some((name, port)) if !port.contains(']') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    };
    let target = if target.starts_with('/') { target } else { "/" };
    if https_port == 443 {
        format!("https://{name}{target}")
    } else {
        format!("https://{name}:{https_port}{target}")
    }
}

/// Adds `Strict-Transport-Security: VALUE` to responses over TLS (never over plain http,
/// where RFC 6797 section 7.2 says browsers ignore it), replacing one from the origin.
#[derive(Debug, Clone)]
pub struct Hsts {
    /// `max-age=...`, as checked by `[tls] hsts`.
    pub value: String,
}

impl Phases for Hsts {
    /// Whether the request came over TLS.
    type Ctx = bool;

    fn request(&self, over_tls: &mut bool, _: &mut RequestHead, client: &Client) -> Option<Reply> {
        *over_tls = client.proto == "https";
        None
    }

    fn response_head(
        &self,
        over_tls: &mut bool,
        _: &RequestHead,
        response: &mut ResponseHead,
        _: &mut BodyPlan,
    ) {
        if *over_tls {
            response
                .headers
                .retain(|h| !h.name.eq_ignore_ascii_case("strict-transport-security"));
            response.headers.push(Header {
                name: "Strict-Transport-Security".to_owned(),
                value: self.value.as_bytes().to_vec(),
            });
        }
    }
}

/// Both, as `[tls]` asks (`redirect_http`, `hsts`): the one phase set a stage chains in
/// front of its others, so that a redirected request goes no further.
#[derive(Debug, Clone, Default)]
pub struct TlsPhases {
    pub redirect: Option<HttpsRedirect>,
    pub hsts: Option<Hsts>,
}

impl TlsPhases {
    /// From `[tls]`, given the port the TLS listener is bound to.
    pub fn new(settings: &TlsSettings, https_port: u16) -> TlsPhases {
        TlsPhases {
            redirect: settings
                .redirect_http
                .then_some(HttpsRedirect { https_port }),
            hsts: settings.hsts.clone().map(|value| Hsts { value }),
        }
    }
}

impl Phases for TlsPhases {
    /// Whether the request came over TLS (for `Hsts`).
    type Ctx = bool;

    fn request(&self, ctx: &mut bool, head: &mut RequestHead, client: &Client) -> Option<Reply> {
        if let Some(redirect) = &self.redirect {
            if let Some(reply) = redirect.request(&mut (), head, client) {
                return Some(reply);
            }
        }
        *ctx = client.proto == "https";
        None
    }

    fn response_head(
        &self,
        ctx: &mut bool,
        request: &RequestHead,
        response: &mut ResponseHead,
        body: &mut BodyPlan,
    ) {
        if let Some(hsts) = &self.hsts {
            hsts.response_head(ctx, request, response, body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_keep_the_name_and_target_and_change_the_port() {
        let table = [
            ("a.test", 443, "/x?q=1", "https://a.test/x?q=1"),
            ("a.test:8080", 8443, "/", "https://a.test:8443/"),
            ("[::1]:8080", 8443, "/p", "https://[::1]:8443/p"),
            ("[::1]", 443, "/p", "https://[::1]/p"),
            ("a.test", 443, "*", "https://a.test/"),
        ];
        for (host, port, target, want) in table {
            assert_eq!(https_location(host, port, target), want);
        }
    }
}
