//! `[[http]]` sites answered in XDP: routes by exact path (and host), each with its
//! reply, checked here to fit one segment.

use std::{collections::HashSet, net::IpAddr};

use serde::Deserialize;
use toml::Spanned;

use super::{Listeners, Protocol, Validator};
use crate::http::reply;
pub use crate::http::reply::HttpReply;

/// One `[[http]]` site answered in XDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSite {
    pub name: String,
    pub vips: Vec<IpAddr>,
    pub port: u16,
    pub routes: Vec<HttpRoute>,
    /// For requests no route matches (404 when not configured).
    pub default: HttpReply,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    /// Exact path (no query).
    pub path: String,
    /// Only for this Host (lowercase, no port); any host when None.
    pub host: Option<String>,
    pub reply: HttpReply,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    name: Spanned<String>,
    vips: Vec<Spanned<String>>,
    port: Option<Spanned<i64>>,
    #[serde(default)]
    routes: Vec<Spanned<RawRoute>>,
    default: Option<Spanned<HttpReply>>,
}

const DEFAULT_HTTP_PORT: u16 = 80;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path: String,
    host: Option<String>,
    status: u16,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    body: String,
    location: Option<String>,
    #[serde(default)]
    append_path: bool,
}

/// Checks every `[[http]]` site: names unique among services and sites (`names`), each
/// (VIP, port) claimed once, routes well-formed and every reply renderable from XDP.
pub(super) fn validate(v: &mut Validator, listeners: &mut Listeners, names: &mut HashSet<String>, raw: Vec<Spanned<RawHttp>>) -> Vec<HttpSite> {
    let mut http = Vec::new();
    let mut route_entries = 0;
    for site in raw {
        let span = site.span();
        let site = site.into_inner();
        let name = site.name.get_ref().clone();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            v.error(site.name.span(), format!("http site name {name:?}: use letters, digits, '-' and '_'"));
        } else if !names.insert(name.clone()) {
            v.error(site.name.span(), format!("name {name:?} is used twice"));
        }
        let port = match &site.port {
            Some(p) => v.port(p, &format!("http site {name:?}")),
            None => DEFAULT_HTTP_PORT,
        };
        let mut vips = Vec::new();
        for vip in &site.vips {
            let Some(ip) = v.vip(vip) else { continue };
            if port != 0 {
                v.claim(listeners, ip, port, Protocol::Tcp, vip.span(), &format!("http site {name:?}"));
            }
            vips.push(ip);
        }
        if site.vips.is_empty() {
            v.error(span.clone(), format!("http site {name:?} needs at least one address in vips"));
        }
        // Each route, the default and the 400 answer are one HTTP_ROUTES entry each.
        route_entries += site.routes.len() + 2;
        if route_entries > pop_common::HTTP_ROUTES_MAX as usize {
            v.error(
                span.clone(),
                format!(
                    "http site {name:?}: more than {} routes in all sites (each site also has a default and a 400 answer)",
                    pop_common::HTTP_ROUTES_MAX
                ),
            );
        }
        let mut routes = Vec::new();
        let mut seen_routes = HashSet::new();
        for r in site.routes {
            let rspan = r.span();
            let r = r.into_inner();
            let reply = HttpReply { status: r.status, headers: r.headers, body: r.body, location: r.location, append_path: r.append_path };
            if !r.path.starts_with('/') || r.path.len() >= pop_common::HTTP_PATH_LEN || r.path.contains(['?', ' ', '\t', '\r', '\n']) {
                v.error(
                    rspan.clone(),
                    format!("route path {:?} must start with '/', be under {} bytes, and have no query or spaces", r.path, pop_common::HTTP_PATH_LEN),
                );
            }
            let host = r.host.map(|h| h.to_ascii_lowercase());
            if let Some(h) = &host
                && (h.is_empty() || h.len() >= pop_common::HTTP_HOST_LEN || h.contains([':', ' ', '/']))
            {
                v.error(rspan.clone(), format!("route host {h:?} must be a host name under {} bytes, without a port", pop_common::HTTP_HOST_LEN));
            }
            if !seen_routes.insert((host.clone(), r.path.clone())) {
                v.error(
                    rspan.clone(),
                    format!("route {:?}{} is listed twice", r.path, host.as_ref().map(|h| format!(" for host {h}")).unwrap_or_default()),
                );
            }
            if let Err(e) = reply::check_reply(&reply) {
                v.error(rspan, format!("route {:?}: {e}", r.path));
            }
            routes.push(HttpRoute { path: r.path, host, reply });
        }
        let default = match site.default {
            Some(d) => {
                let dspan = d.span();
                let d = d.into_inner();
                if let Err(e) = reply::check_reply(&d) {
                    v.error(dspan, format!("default response: {e}"));
                }
                d
            }
            None => reply::not_found(),
        };
        http.push(HttpSite { name, vips, port, routes, default, line: v.line(span.start) });
    }
    http
}
