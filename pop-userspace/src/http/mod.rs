//! `[[http]]` sites answered in XDP: rendering each configured response once, split
//! where the request's path is spliced in (redirects that append it), with the
//! checksums of the fixed parts pre-summed; and keeping HTTP_ROUTES in step with the
//! config.

use std::collections::HashSet;

use anyhow::{Result, anyhow, bail};
use aya::maps::{Array, HashMap, MapData};
use pop_common::{
    HTTP_HOST_LEN, HTTP_PATH_BAD_REQUEST, HTTP_PATH_DEFAULT, HTTP_PATH_LEN, HTTP_PREFIX_MAX, HTTP_SITES_MAX, HTTP_SUFFIX_MAX, HttpKey, HttpResponse,
    HttpSiteRoutes,
};

pub mod reply;

use self::reply::{bad_request, render};
pub use self::reply::{check_reply, not_found, reason};
use crate::{
    config::{Config, HttpReply},
    datapath::undo::HashUndo,
    dns::table::partial_csum,
};

fn value(route: u32, r: &HttpReply) -> HttpResponse {
    let (prefix, suffix, body_len) = render(r);
    let mut v = HttpResponse {
        route,
        prefix_len: prefix.len() as u16,
        suffix_len: suffix.len() as u16,
        body_len: body_len as u16,
        append_path: r.append_path as u16,
        prefix_sum: partial_csum(&prefix),
        suffix_sum: partial_csum(&suffix),
        head_sum: partial_csum(&suffix[..suffix.len() - body_len]),
        prefix: [0; HTTP_PREFIX_MAX],
        suffix: [0; HTTP_SUFFIX_MAX],
    };
    v.prefix[..prefix.len()].copy_from_slice(&prefix);
    v.suffix[..suffix.len()].copy_from_slice(&suffix);
    v
}

fn key(site: u32, host: Option<&str>, path: &[u8]) -> HttpKey {
    let mut k = HttpKey { site, host: [0; HTTP_HOST_LEN], path: [0; HTTP_PATH_LEN] };
    if let Some(h) = host {
        k.host[..h.len()].copy_from_slice(h.as_bytes());
    }
    k.path[..path.len()].copy_from_slice(path);
    k
}

/// Every HTTP_ROUTES entry the config asks for, with a display name per route id.
pub fn entries(config: &Config) -> (Vec<(HttpKey, HttpResponse)>, Vec<String>) {
    let mut out = Vec::new();
    let mut names = Vec::new();
    for (i, site) in config.http.iter().enumerate() {
        let i = i as u32;
        for r in &site.routes {
            let id = names.len() as u32;
            names.push(format!("{} {}{}", site.name, r.host.as_deref().unwrap_or(""), r.path));
            out.push((key(i, r.host.as_deref(), r.path.as_bytes()), value(id, &r.reply)));
        }
        let id = names.len() as u32;
        names.push(format!("{} (default)", site.name));
        out.push((key(i, None, &[HTTP_PATH_DEFAULT]), value(id, &site.default)));
        let id = names.len() as u32;
        names.push(format!("{} (400 bad request)", site.name));
        out.push((key(i, None, &[HTTP_PATH_BAD_REQUEST]), value(id, &bad_request())));
    }
    (out, names)
}

/// Per site of `config`, the path lengths of its routes (HTTP_SITE_ROUTES).
pub fn site_routes(config: &Config) -> Vec<HttpSiteRoutes> {
    config
        .http
        .iter()
        .map(|site| {
            let mut s = HttpSiteRoutes::default();
            for r in &site.routes {
                s.add(r.host.is_some(), r.path.len());
            }
            s
        })
        .collect()
}

/// HTTP_ROUTES as an apply will leave it, and HTTP_SITE_ROUTES.
pub struct HttpPlan {
    want: Vec<(HttpKey, HttpResponse)>,
    stale: Vec<HttpKey>,
    sites: Vec<HttpSiteRoutes>,
}

/// The HTTP maps the controller writes. HTTP_SITE_ROUTES is kept a superset of what
/// HTTP_ROUTES holds: widened to old and new routes before any route is written,
/// narrowed to the new ones only once the whole apply is committed.
pub struct HttpMaps {
    pub routes: HashMap<MapData, HttpKey, HttpResponse>,
    sites: Array<MapData, HttpSiteRoutes>,
    /// Sites from this one on hold no bits (all of them until this process wrote them).
    sites_clear_from: u32,
}

impl HttpMaps {
    pub fn from_ebpf(ebpf: &mut aya::Ebpf) -> Result<HttpMaps> {
        let mut take = |name: &str| ebpf.take_map(name).ok_or_else(|| anyhow!("{name} missing"));
        let routes = HashMap::try_from(take(pop_common::MAP_HTTP_ROUTES)?)?;
        let sites = Array::try_from(take(pop_common::MAP_HTTP_SITE_ROUTES)?)?;
        Ok(HttpMaps { routes, sites, sites_clear_from: HTTP_SITES_MAX })
    }

    /// After the apply committed: every site's bits are exactly its routes'.
    pub fn finish(&mut self, plan: &HttpPlan) {
        let n = plan.sites.len() as u32;
        for i in 0..self.sites_clear_from.max(n) {
            let want = plan.sites.get(i as usize).copied().unwrap_or_default();
            if self.sites.get(&i, 0).ok() != Some(want)
                && let Err(e) = self.sites.set(i, want, 0)
            {
                // Left wider than needed: only lookups that cannot match, never a miss.
                log::warn!("narrowing HTTP_SITE_ROUTES[{i}]: {e}");
                return;
            }
        }
        self.sites_clear_from = n;
    }
}

/// Plans the routes of every site: entries to write, and routes no longer configured.
/// Refuses a plan the map could not hold while old and new routes coexist.
pub fn plan(map: &HashMap<MapData, HttpKey, HttpResponse>, config: &Config) -> Result<HttpPlan> {
    let (want, _) = entries(config);
    let keep: HashSet<(u32, [u8; HTTP_HOST_LEN], [u8; HTTP_PATH_LEN])> = want.iter().map(|(k, _)| (k.site, k.host, k.path)).collect();
    let stale: Vec<HttpKey> = map.keys().filter_map(|k| k.ok()).filter(|k| !keep.contains(&(k.site, k.host, k.path))).collect();
    let current = map.keys().count();
    if current - stale.len() + want.len() > pop_common::HTTP_ROUTES_MAX as usize {
        bail!(
            "HTTP route table: {} routes live and {} configured would need {} entries during the change; it holds {}",
            current,
            want.len(),
            current + want.len() - stale.len(),
            pop_common::HTTP_ROUTES_MAX
        );
    }
    Ok(HttpPlan { want, stale, sites: site_routes(config) })
}

/// Writes the planned routes, then removes stale ones. Each entry changes in one map
/// update, so a request sees the old or the new response; `undo` records what each
/// write replaced. `fault` is the test hook: fail after the first write.
pub fn commit(maps: &mut HttpMaps, plan: &HttpPlan, undo: &mut HashUndo<HttpKey, HttpResponse>, fault: bool) -> Result<()> {
    // Old and new routes' lengths before any route changes (see HttpMaps).
    for (i, new) in plan.sites.iter().enumerate() {
        let i = i as u32;
        let old = maps.sites.get(&i, 0).map_err(|e| anyhow!("reading HTTP_SITE_ROUTES[{i}]: {e}"))?;
        if old.union(new) != old {
            maps.sites.set(i, old.union(new), 0).map_err(|e| anyhow!("writing HTTP_SITE_ROUTES[{i}]: {e}"))?;
        }
    }
    let map = &mut maps.routes;
    for (k, v) in &plan.want {
        undo.insert(map, *k, *v)?;
        if fault {
            bail!("injected fault after writing one route");
        }
    }
    for k in &plan.stale {
        undo.remove(map, *k)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16) -> HttpReply {
        HttpReply { status, headers: Default::default(), body: String::new(), location: None, append_path: false }
    }

    #[test]
    fn site_routes_note_each_routes_path_length_by_host_or_any_host() {
        let text = "[[interface]]\nname = \"e\"\n[[http]]\nname = \"a\"\nvips = [\"203.0.113.80\"]\n\
                    [[http.routes]]\npath = \"/\"\nstatus = 200\n\
                    [[http.routes]]\nhost = \"www.example.com\"\npath = \"/some/page\"\nstatus = 200\n\
                    [[http]]\nname = \"b\"\nvips = [\"203.0.113.81\"]\n";
        let config = Config::parse(std::path::Path::new("pop.toml"), text).unwrap();
        let sites = site_routes(&config);
        assert_eq!(sites.len(), 2);
        assert!(HttpSiteRoutes::has(&sites[0].any_host, 1) && !HttpSiteRoutes::has(&sites[0].any_host, 10));
        assert!(HttpSiteRoutes::has(&sites[0].with_host, 10) && !HttpSiteRoutes::has(&sites[0].with_host, 1));
        assert_eq!(sites[1], HttpSiteRoutes::default(), "a site with only its default needs no lookup but that");
        let mut wide = sites[0];
        wide.add(false, 127);
        assert!(HttpSiteRoutes::has(&wide.union(&sites[1]).any_host, 127) && !HttpSiteRoutes::has(&wide.any_host, 128));
    }

    #[test]
    fn redirect_splits_around_the_path() {
        let r = HttpReply { location: Some("https://www.example.com".into()), append_path: true, ..reply(301) };
        let (p, s, body) = render(&r);
        assert_eq!(String::from_utf8(p).unwrap(), "HTTP/1.1 301 Moved Permanently\r\nLocation: https://www.example.com");
        assert_eq!(String::from_utf8(s).unwrap(), "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        assert_eq!(body, 0);
    }

    #[test]
    fn plain_response_is_all_suffix_with_body_last() {
        let mut r = reply(200);
        r.body = "ok\n".into();
        r.headers.insert("Cache-Control".into(), "no-store".into());
        let (p, s, body) = render(&r);
        assert!(p.is_empty());
        assert_eq!(String::from_utf8(s).unwrap(), "HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n");
        assert_eq!(body, 3);
    }

    #[test]
    fn checks() {
        assert!(check_reply(&reply(200)).is_ok());
        assert!(check_reply(&reply(299)).unwrap_err().contains("status 299"));
        let mut r = reply(200);
        r.body = "x".repeat(1200);
        assert!(check_reply(&r).unwrap_err().contains("at most 536 (TCP's smallest MSS)"));
        // The limit counts the longest path a redirect may append.
        let mut r = HttpReply { location: Some("https://www.example.com".into()), append_path: true, ..reply(301) };
        assert!(check_reply(&r).is_ok());
        r.headers.insert("X-Long".into(), "y".repeat(200));
        assert!(check_reply(&r).unwrap_err().contains("with the longest path appended (255)"));
        let mut r = reply(200);
        r.body = "x".repeat(400);
        assert!(check_reply(&r).is_ok());
        let mut r = reply(200);
        r.headers.insert("Content-Length".into(), "3".into());
        assert!(check_reply(&r).unwrap_err().contains("set by pop itself"));
        let r = HttpReply { append_path: true, ..reply(301) };
        assert!(check_reply(&r).unwrap_err().contains("needs a location"));
        let mut r = reply(200);
        r.headers.insert("X-Bad".into(), "a\r\nb".into());
        assert!(check_reply(&r).is_err());
    }
}
