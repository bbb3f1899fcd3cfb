//! The checks every section shares: addresses, ports, sizes, paths, and who claims each
//! (VIP, port, protocol). Each error is recorded with its line; validation goes on, so
//! one run lists every problem.

use std::{
    net::IpAddr,
    ops::Range,
    path::{Path, PathBuf},
};

use toml::Spanned;

use super::{ConfigError, Protocol};
use crate::addr::normalise;

pub(super) struct Validator<'a> {
    pub file: &'a Path,
    text: &'a str,
    /// The config file's directory: relative paths in it are relative to the file.
    pub base: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl<'a> Validator<'a> {
    pub fn new(file: &'a Path, text: &'a str) -> Self {
        Validator { file, text, base: file.parent().map(Path::to_path_buf).unwrap_or_default(), errors: Vec::new() }
    }

    /// 1-based line of byte offset `pos`.
    pub fn line(&self, pos: usize) -> usize {
        line_of(self.text, pos)
    }

    /// A map capacity setting: 1024 to 64M entries, `default` when absent.
    pub fn table_size(&mut self, value: Option<Spanned<u32>>, key: &str, default: u32) -> u32 {
        const MAX: u32 = 1 << 26;
        match value {
            Some(n) if !(1024..=MAX).contains(n.get_ref()) => {
                self.error(n.span(), format!("{key} {} must be between 1024 and {MAX}", n.get_ref()));
                default
            }
            Some(n) => n.into_inner(),
            None => default,
        }
    }

    /// A VIP as written, normalised: an IPv4-mapped IPv6 address is the IPv4 VIP (the
    /// data path keys both the same way).
    pub fn vip(&mut self, vip: &Spanned<String>) -> Option<IpAddr> {
        match vip.get_ref().parse::<IpAddr>() {
            Ok(ip) => Some(normalise(ip)),
            Err(_) => {
                self.error(vip.span(), format!("{:?} is not an IPv4 or IPv6 address", vip.get_ref()));
                None
            }
        }
    }

    /// A port 1-65535 (0 when the value is an error, already reported).
    pub fn port(&mut self, port: &Spanned<i64>, who: &str) -> u16 {
        match u16::try_from(*port.get_ref()) {
            Ok(p) if p > 0 => p,
            _ => {
                self.error(port.span(), format!("{who}: port {} is not 1-65535", port.get_ref()));
                0
            }
        }
    }

    /// Records `who` as the handler of (ip, port, protocol); false (and an error naming
    /// both places) when another block already handles it.
    pub fn claim(&mut self, listeners: &mut Listeners, ip: IpAddr, port: u16, protocol: Protocol, span: Range<usize>, who: &str) -> bool {
        let line = line_of(self.text, span.start);
        match listeners.0.entry((ip, port, protocol)) {
            std::collections::hash_map::Entry::Occupied(first) => {
                let (other, other_line) = first.get();
                let message =
                    format!("{ip} port {port}/{} for {who} is already served by {other} at {}:{other_line}", protocol.name(), self.file.display());
                self.error(span, message);
                false
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert((who.to_string(), line));
                true
            }
        }
    }

    pub fn error(&mut self, span: Range<usize>, message: String) {
        self.errors.push(ConfigError { file: self.file.into(), line: Some(line_of(self.text, span.start)), message });
    }

    pub fn absolute_dir(&mut self, value: Option<Spanned<String>>, key: &str, default: &str) -> PathBuf {
        match value {
            None => PathBuf::from(default),
            Some(v) => {
                let p = PathBuf::from(v.get_ref());
                if !p.is_absolute() {
                    self.error(v.span(), format!("{key} {:?} must be an absolute path", v.get_ref()));
                }
                p
            }
        }
    }
}

/// Who handles each (VIP, port, protocol), and the line that said so.
#[derive(Default)]
pub(super) struct Listeners(pub std::collections::HashMap<(IpAddr, u16, Protocol), (String, usize)>);

/// 1-based line number of byte offset `pos` in `text`.
pub(super) fn line_of(text: &str, pos: usize) -> usize {
    text.as_bytes()[..pos.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}
