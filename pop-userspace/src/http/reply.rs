//! The responses `[[http]]` sites configure, as HTTP/1.1 bytes: rendered once, split
//! where a redirect splices in the request's path, and checked to fit one segment.
//! Pure: config validation and the route table both use it.

use pop_common::{HTTP_PREFIX_MAX, HTTP_RESPONSE_MAX, HTTP_SUFFIX_MAX, HTTP_TARGET_MAX};
use serde::Deserialize;

/// A configured reply: `[http.default]` or one `[[http.routes]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpReply {
    pub status: u16,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
    /// Sets `Location:` (redirects).
    pub location: Option<String>,
    /// Appends the request's path and query to `location`.
    #[serde(default)]
    pub append_path: bool,
}

pub fn not_found() -> HttpReply {
    HttpReply {
        status: 404,
        headers: [("Content-Type".to_string(), "text/plain".to_string())].into(),
        body: "not found\n".into(),
        location: None,
        append_path: false,
    }
}

pub(super) fn bad_request() -> HttpReply {
    HttpReply {
        status: 400,
        headers: [("Content-Type".to_string(), "text/plain".to_string())].into(),
        body: "bad request\n".into(),
        location: None,
        append_path: false,
    }
}

pub fn reason(status: u16) -> Option<&'static str> {
    Some(match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        410 => "Gone",
        429 => "Too Many Requests",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => return None,
    })
}

/// The response split around the spliced-in request target: (prefix, suffix, body length).
pub fn render(r: &HttpReply) -> (Vec<u8>, Vec<u8>, usize) {
    let mut head = format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status).unwrap_or("Status"));
    let mut prefix = Vec::new();
    if let Some(loc) = &r.location {
        head += &format!("Location: {loc}");
        if r.append_path {
            prefix = head.into_bytes();
            head = String::new();
        }
        head += "\r\n";
    }
    for (k, v) in &r.headers {
        head += &format!("{k}: {v}\r\n");
    }
    head += &format!("Content-Length: {}\r\nConnection: close\r\n\r\n", r.body.len());
    let mut suffix = head.into_bytes();
    suffix.extend_from_slice(r.body.as_bytes());
    (prefix, suffix, r.body.len())
}

/// Why a configured response cannot be served from XDP, if it cannot.
pub fn check_reply(r: &HttpReply) -> Result<(), String> {
    if reason(r.status).is_none() {
        return Err(format!("status {} is not one pop knows (2xx, 3xx, 4xx, 5xx in common use)", r.status));
    }
    for (k, v) in &r.headers {
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
            return Err(format!("header name {k:?} is not a valid token"));
        }
        if v.contains(['\r', '\n']) {
            return Err(format!("header {k:?} has a line break in its value"));
        }
        if ["content-length", "connection", "location"].contains(&k.to_ascii_lowercase().as_str()) {
            return Err(format!("header {k:?} is set by pop itself (use `location` for Location)"));
        }
    }
    if r.location.as_deref().is_some_and(|l| l.contains(['\r', '\n']) || l.is_empty()) {
        return Err("location must be one non-empty line".into());
    }
    if r.append_path && r.location.is_none() {
        return Err("append_path needs a location".into());
    }
    let (prefix, suffix, _) = render(r);
    let longest = prefix.len() + suffix.len() + if r.append_path { HTTP_TARGET_MAX } else { 0 };
    if longest > HTTP_RESPONSE_MAX || prefix.len() > HTTP_PREFIX_MAX || suffix.len() > HTTP_SUFFIX_MAX {
        return Err(format!(
            "the response is {longest} bytes{}; it must fit one segment to any client, at most {HTTP_RESPONSE_MAX} (TCP's smallest MSS)",
            if r.append_path { format!(" with the longest path appended ({HTTP_TARGET_MAX})") } else { String::new() }
        ));
    }
    Ok(())
}
