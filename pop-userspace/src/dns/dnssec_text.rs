//! Zone-file text of the DNSSEC types (DNSKEY, RRSIG, NSEC, NSEC3, NSEC3PARAM, DS, CDS,
//! CDNSKEY), which hickory-proto 0.26's text parser refuses ("RRSIG should be
//! dynamically generated") even with its DNSSEC features: only DS has a parser there,
//! and its lexer and per-type parsers are private. pop serves pre-signed zones, so these
//! entries are taken out of the text before hickory parses the rest ([`split`]), parsed
//! here to wire RDATA, and handed back as records of hickory's `Unknown` kind.
//!
//! Each entry taken out leaves its owner (and class, and TTL when no `$TTL` is in
//! effect) behind on a line of its own, so hickory's "same owner as the line before"
//! and last-TTL rules see the same context, and every later line keeps its number.

use hickory_proto::rr::{DNSClass, Name, RecordType};
use hickory_proto::serialize::txt::parse_ttl;

use super::zone::{entry_boundaries, entry_tokens, name_to_wire};

pub(crate) const TYPE_DS: u16 = 43;
pub(crate) const TYPE_RRSIG: u16 = 46;
pub(crate) const TYPE_NSEC: u16 = 47;
pub(crate) const TYPE_DNSKEY: u16 = 48;
pub(crate) const TYPE_NSEC3: u16 = 50;
pub(crate) const TYPE_NSEC3PARAM: u16 = 51;
const TYPE_CDS: u16 = 59;
const TYPE_CDNSKEY: u16 = 60;

/// One DNSSEC record parsed from the text.
pub(crate) struct SignedRecord {
    pub owner: Name,
    pub ttl: u32,
    pub class: DNSClass,
    pub rtype: u16,
    pub rdata: Vec<u8>,
}

/// The text for hickory (DNSSEC entries taken out) and the DNSSEC records.
pub(crate) struct Split<'t> {
    pub text: std::borrow::Cow<'t, str>,
    pub records: Vec<SignedRecord>,
}

fn dnssec_type(mnemonic: &str) -> Option<u16> {
    Some(match mnemonic {
        "DS" => TYPE_DS,
        "RRSIG" => TYPE_RRSIG,
        "NSEC" => TYPE_NSEC,
        "DNSKEY" => TYPE_DNSKEY,
        "NSEC3" => TYPE_NSEC3,
        "NSEC3PARAM" => TYPE_NSEC3PARAM,
        "CDS" => TYPE_CDS,
        "CDNSKEY" => TYPE_CDNSKEY,
        _ => return None,
    })
}

/// Whether any word of `text` is a DNSSEC type mnemonic: when none is, [`split`] has
/// nothing to take out, and an unsigned zone of a million names is not walked twice.
fn mentions_dnssec_type(text: &str) -> bool {
    const TYPES: [&str; 8] = ["DS", "RRSIG", "NSEC", "DNSKEY", "NSEC3", "NSEC3PARAM", "CDS", "CDNSKEY"];
    text.split(|c: char| c.is_ascii_whitespace() || c == '(' || c == ')').any(|w| w.len() <= 10 && TYPES.iter().any(|t| w.eq_ignore_ascii_case(t)))
}

/// Takes the DNSSEC entries out of `text` (already `$INCLUDE`-expanded). `origin` is
/// the initial `$ORIGIN`. Errors carry the line (in `text`) of the entry at fault.
pub(crate) fn split<'t>(text: &'t str, origin: Option<&Name>) -> Result<Split<'t>, (usize, String)> {
    if !mentions_dnssec_type(text) {
        return Ok(Split { text: text.into(), records: Vec::new() });
    }
    let mut out = String::with_capacity(text.len());
    let mut records = Vec::new();
    let mut origin = origin.cloned();
    let mut default_ttl: Option<u32> = None;
    let mut last_ttl: Option<u32> = None;
    let mut owner: Option<Name> = None;
    let mut class = DNSClass::IN;
    // The last DNSSEC entry's TTL since the last other record: where in `out` it would
    // go, and its token (see below).
    let mut pending_ttl: Option<(usize, &str)> = None;
    let mut start = 0;
    for b in entry_boundaries(text) {
        let entry = &text[start..b.end];
        start = b.end;
        let inherits = entry.starts_with([' ', '\t']);
        let mut tokens = entry_tokens(entry).peekable();
        let mut owner_token = None;
        if !inherits {
            match tokens.next() {
                None => {
                    out.push_str(entry);
                    continue;
                }
                Some("$ORIGIN") => {
                    origin = tokens.next().and_then(|o| Name::parse(o, None).ok());
                    out.push_str(entry);
                    continue;
                }
                Some("$TTL") => {
                    default_ttl = tokens.next().and_then(|t| parse_ttl(t).ok());
                    out.push_str(entry);
                    continue;
                }
                Some(t) if t.starts_with('$') => {
                    out.push_str(entry);
                    continue;
                }
                Some("@") => {
                    owner = origin.clone();
                    owner_token = Some("@");
                }
                Some(t) => {
                    owner = Name::parse(t, origin.as_ref()).ok();
                    owner_token = Some(t);
                }
            }
        }
        let (mut ttl, mut class_token) = (None, None);
        let mut rtype = None;
        for t in tokens.by_ref() {
            if let Ok(v) = parse_ttl(t) {
                ttl = Some((v, t));
                continue;
            }
            let upper = t.to_ascii_uppercase();
            if let Ok(c) = upper.parse::<DNSClass>() {
                class = c;
                class_token = Some(t);
                continue;
            }
            rtype = Some(upper);
            break;
        }
        if let Some((v, _)) = ttl {
            last_ttl = Some(v);
        }
        let Some(code) = rtype.as_deref().and_then(dnssec_type) else {
            // A record that takes its TTL from the one before, with no `$TTL`: if that
            // was a DNSSEC entry, hickory must see its TTL (RFC 1035's "last TTL").
            if rtype.is_some()
                && let Some((at, t)) = pending_ttl.take()
                && ttl.is_none()
                && default_ttl.is_none()
            {
                out.insert_str(at, &format!(" {t}"));
            }
            out.push_str(entry);
            continue;
        };
        let line = b.first_line;
        let err = |m: String| (line, m);
        let name = owner.clone().ok_or_else(|| err("record name not specified".into()))?;
        let ttl_value = ttl.map(|t| t.0).or(default_ttl).or(last_ttl).ok_or_else(|| err("record ttl not specified".into()))?;
        let rest: Vec<&str> = tokens.collect();
        let mnemonic = rtype.as_deref().unwrap_or_default();
        let rdata = parse_rdata(code, &rest, origin.as_ref()).map_err(|m| err(format!("{name} {mnemonic}: {m}")))?;
        let mut name = name;
        name.set_fqdn(true);
        records.push(SignedRecord { owner: name, ttl: ttl_value, class, rtype: code, rdata });

        // What hickory must still see of this entry: its owner and class (the next
        // entries may inherit both). Its TTL is added only if the next record inherits
        // it (a TTL on an owner-only line would be taken even over a later `$TTL`).
        let mut keep = String::new();
        if inherits {
            keep.push(' ');
        }
        if let Some(t) = owner_token {
            keep.push_str(t);
        }
        if let Some((_, t)) = ttl {
            pending_ttl = Some((out.len() + keep.len(), t));
        }
        if let Some(t) = class_token {
            keep.push(' ');
            keep.push_str(t);
        }
        out.push_str(if keep.trim().is_empty() { "" } else { &keep });
        let newlines = entry.bytes().filter(|&c| c == b'\n').count();
        out.extend(std::iter::repeat_n('\n', newlines.max(1)));
    }
    Ok(Split { text: out.into(), records })
}

/// The SOA's owner when the text names it in full and sets no `$ORIGIN` before it:
/// files written by ldns-signzone (and other signers) have no `$ORIGIN` at all, and
/// their names are all absolute. It serves as the initial origin, as the zone name
/// does for BIND and Knot.
/// Only the first MiB is searched (signers write the SOA first), so a big zone is not
/// walked one more time.
pub(crate) fn absolute_soa_owner(text: &str) -> Option<Name> {
    let head = match text.get(..1 << 20) {
        Some(h) => &h[..h.rfind('\n').map_or(0, |n| n + 1)],
        None => text,
    };
    let mut start = 0;
    for b in entry_boundaries(head) {
        let entry = &head[start..b.end];
        start = b.end;
        if entry.starts_with([' ', '\t']) {
            continue;
        }
        let mut tokens = entry_tokens(entry);
        let owner = match tokens.next() {
            None => continue,
            Some("$ORIGIN") => return None,
            Some(t) if t.starts_with('$') => continue,
            Some(t) => t,
        };
        let rtype = tokens.find(|t| parse_ttl(t).is_err() && t.to_ascii_uppercase().parse::<DNSClass>().is_err());
        if rtype.is_some_and(|t| t.eq_ignore_ascii_case("SOA")) {
            return owner.ends_with('.').then(|| Name::parse(owner, None).ok()).flatten();
        }
    }
    None
}

fn number<T: std::str::FromStr>(tokens: &[&str], i: usize, what: &str) -> Result<T, String> {
    let t = tokens.get(i).ok_or_else(|| format!("missing {what}"))?;
    t.parse().map_err(|_| format!("invalid {what} {t:?}"))
}

fn rest_joined(tokens: &[&str], from: usize, what: &str) -> Result<String, String> {
    let s: String = tokens.get(from..).unwrap_or_default().concat();
    if s.is_empty() { Err(format!("missing {what}")) } else { Ok(s) }
}

fn base64(tokens: &[&str], from: usize, what: &str) -> Result<Vec<u8>, String> {
    let s = rest_joined(tokens, from, what)?;
    data_encoding::BASE64.decode(s.as_bytes()).map_err(|e| format!("invalid base64 in {what}: {e}"))
}

fn hex(s: &str, what: &str) -> Result<Vec<u8>, String> {
    data_encoding::HEXLOWER_PERMISSIVE.decode(s.as_bytes()).map_err(|e| format!("invalid hex in {what}: {e}"))
}

/// A type mnemonic or `TYPEnnn` (RFC 3597).
fn type_code(t: &str) -> Result<u16, String> {
    let upper = t.to_ascii_uppercase();
    if let Some(n) = upper.strip_prefix("TYPE")
        && let Ok(v) = n.parse::<u16>()
    {
        return Ok(v);
    }
    if let Some(v) = dnssec_type(&upper) {
        return Ok(v);
    }
    match upper.parse::<RecordType>() {
        Ok(RecordType::Unknown(v)) => Ok(v),
        Ok(rt) => Ok(u16::from(rt)),
        Err(_) => Err(format!("unknown type {t:?}")),
    }
}

/// The type bit maps of NSEC and NSEC3 (RFC 4034 section 4.1.2).
pub(crate) fn type_bitmap(types: &[u16]) -> Vec<u8> {
    let mut sorted = types.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let window = (sorted[i] >> 8) as u8;
        let mut bits = [0u8; 32];
        let mut len = 0;
        while i < sorted.len() && (sorted[i] >> 8) as u8 == window {
            let low = (sorted[i] & 0xff) as usize;
            bits[low / 8] |= 0x80 >> (low % 8);
            len = low / 8 + 1;
            i += 1;
        }
        out.push(window);
        out.push(len as u8);
        out.extend_from_slice(&bits[..len]);
    }
    out
}

/// The types a type bit map lists.
#[cfg(test)]
pub(crate) fn bitmap_types(mut map: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    while map.len() >= 2 {
        let (window, len) = (map[0] as u16, map[1] as usize);
        let Some(bits) = map.get(2..2 + len) else { break };
        for (byte, b) in bits.iter().enumerate() {
            for bit in 0..8 {
                if b & (0x80 >> bit) != 0 {
                    out.push((window << 8) | (byte * 8 + bit) as u16);
                }
            }
        }
        map = &map[2 + len..];
    }
    out
}

/// An RRSIG time: `YYYYMMDDHHmmSS` (UTC) or seconds since the epoch, modulo 2^32
/// (RFC 4034 section 3.2).
fn sig_time(t: &str) -> Result<u32, String> {
    let bad = || format!("invalid signature time {t:?}");
    if t.len() == 14 && t.bytes().all(|b| b.is_ascii_digit()) {
        let n = |r: std::ops::Range<usize>| t[r].parse::<i64>().unwrap();
        let (y, mo, d, h, mi, s) = (n(0..4), n(4..6), n(6..8), n(8..10), n(10..12), n(12..14));
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
            return Err(bad());
        }
        // Days from the civil date (Howard Hinnant's algorithm).
        let (y2, m2) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
        let era = y2.div_euclid(400);
        let yoe = y2 - era * 400;
        let doy = (153 * m2 + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let secs = days * 86_400 + h * 3600 + mi * 60 + s;
        return Ok(secs.rem_euclid(1 << 32) as u32);
    }
    t.parse::<u32>().map_err(|_| bad())
}

fn push_name(out: &mut Vec<u8>, t: Option<&&str>, origin: Option<&Name>, what: &str) -> Result<(), String> {
    let t = t.ok_or_else(|| format!("missing {what}"))?;
    let name = if *t == "@" {
        origin.cloned().ok_or("@ without an origin")?
    } else {
        Name::parse(t, origin).map_err(|e| format!("invalid {what} {t:?}: {e}"))?
    };
    out.extend_from_slice(&name_to_wire(&name));
    Ok(())
}

/// `-` or hex, with its length byte.
fn push_salt(out: &mut Vec<u8>, t: Option<&&str>) -> Result<(), String> {
    let t = t.ok_or("missing salt")?;
    let salt = if *t == "-" { Vec::new() } else { hex(t, "salt")? };
    if salt.len() > 255 {
        return Err("salt longer than 255 bytes".into());
    }
    out.push(salt.len() as u8);
    out.extend_from_slice(&salt);
    Ok(())
}

/// RDATA in wire format (names uncompressed and lowercase) from presentation tokens.
pub(crate) fn parse_rdata(rtype: u16, t: &[&str], origin: Option<&Name>) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match rtype {
        TYPE_DS | TYPE_CDS => {
            out.extend_from_slice(&number::<u16>(t, 0, "key tag")?.to_be_bytes());
            out.push(number::<u8>(t, 1, "algorithm")?);
            out.push(number::<u8>(t, 2, "digest type")?);
            out.extend(hex(&rest_joined(t, 3, "digest")?, "digest")?);
        }
        TYPE_DNSKEY | TYPE_CDNSKEY => {
            out.extend_from_slice(&number::<u16>(t, 0, "flags")?.to_be_bytes());
            out.push(number::<u8>(t, 1, "protocol")?);
            out.push(number::<u8>(t, 2, "algorithm")?);
            out.extend(base64(t, 3, "public key")?);
        }
        TYPE_RRSIG => {
            out.extend_from_slice(&type_code(t.first().ok_or("missing type covered")?)?.to_be_bytes());
            out.push(number::<u8>(t, 1, "algorithm")?);
            out.push(number::<u8>(t, 2, "labels")?);
            out.extend_from_slice(&number::<u32>(t, 3, "original TTL")?.to_be_bytes());
            out.extend_from_slice(&sig_time(t.get(4).ok_or("missing expiration")?)?.to_be_bytes());
            out.extend_from_slice(&sig_time(t.get(5).ok_or("missing inception")?)?.to_be_bytes());
            out.extend_from_slice(&number::<u16>(t, 6, "key tag")?.to_be_bytes());
            push_name(&mut out, t.get(7), origin, "signer's name")?;
            out.extend(base64(t, 8, "signature")?);
        }
        TYPE_NSEC => {
            push_name(&mut out, t.first(), origin, "next domain name")?;
            let types = t[1..].iter().map(|x| type_code(x)).collect::<Result<Vec<_>, _>>()?;
            out.extend(type_bitmap(&types));
        }
        TYPE_NSEC3 => {
            out.push(number::<u8>(t, 0, "hash algorithm")?);
            out.push(number::<u8>(t, 1, "flags")?);
            out.extend_from_slice(&number::<u16>(t, 2, "iterations")?.to_be_bytes());
            push_salt(&mut out, t.get(3))?;
            let next = t.get(4).ok_or("missing next hashed owner name")?;
            let next = data_encoding::BASE32HEX_NOPAD
                .decode(next.to_ascii_uppercase().as_bytes())
                .map_err(|e| format!("invalid base32hex next hashed owner name {next:?}: {e}"))?;
            if next.is_empty() || next.len() > 255 {
                return Err("bad next hashed owner name length".into());
            }
            out.push(next.len() as u8);
            out.extend(next);
            let types = t[5..].iter().map(|x| type_code(x)).collect::<Result<Vec<_>, _>>()?;
            out.extend(type_bitmap(&types));
        }
        TYPE_NSEC3PARAM => {
            out.push(number::<u8>(t, 0, "hash algorithm")?);
            out.push(number::<u8>(t, 1, "flags")?);
            out.extend_from_slice(&number::<u16>(t, 2, "iterations")?.to_be_bytes());
            push_salt(&mut out, t.get(3))?;
            if t.len() > 4 {
                return Err(format!("unexpected {:?}", t[4]));
            }
        }
        _ => return Err("not a DNSSEC type".into()),
    }
    if out.len() > u16::MAX as usize {
        return Err("RDATA longer than 65535 bytes".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmaps_round_trip_and_match_rfc4034_example() {
        // RFC 4034 section 4.3: A MX RRSIG NSEC TYPE1234.
        let map = type_bitmap(&[1, 15, 46, 47, 1234]);
        let mut want = vec![0x00, 0x06, 0x40, 0x01, 0x00, 0x00, 0x00, 0x03, 0x04, 0x1b];
        want.extend([0; 26]);
        want.push(0x20);
        assert_eq!(map, want);
        assert_eq!(bitmap_types(&map), [1, 15, 46, 47, 1234]);
    }

    #[test]
    fn rrsig_times_and_fields() {
        // RFC 4034 section 3.3's example.
        assert_eq!(sig_time("20030322173103").unwrap(), 1048354263);
        assert_eq!(sig_time("1048354263").unwrap(), 1048354263);
        assert!(sig_time("20031322173103").is_err());
        let origin = Name::from_ascii("example.").unwrap();
        let t = "A 5 3 86400 20030322173103 20030220173103 2642 example. oJB1W6WNGv+ldvQ3WDG0MQkg5IEhjRip8WTrPYGv07h108dUKGMeDPKijVCHX3DDKdfb+v6oB9wfuh3DTJXUAfI/M0zmO/zz8bW0Rznl8O3tGNazPwQKkRN20XPXV6nwwfoXmJQbsLNrLfkGJ5D6fwFm8nN+6pBzeDQfsS3Ap3o=";
        let tokens: Vec<&str> = t.split(' ').collect();
        let rdata = parse_rdata(TYPE_RRSIG, &tokens, Some(&origin)).unwrap();
        assert_eq!(&rdata[..4], &[0, 1, 5, 3]);
        assert_eq!(&rdata[18..27], b"\x07example\x00");
        assert!(parse_rdata(TYPE_RRSIG, &tokens[..8], Some(&origin)).unwrap_err().contains("signature"));
    }

    #[test]
    fn unsigned_text_is_passed_through() {
        let text = "$ORIGIN example.\n@ 300 IN SOA ns hm 1 2 3 4 5\ndsx 60 IN TXT \"nsec3-free\" \n";
        assert!(!mentions_dnssec_type(text));
        assert!(mentions_dnssec_type("x 60 IN (ds 1 2 3 00)\n") && mentions_dnssec_type("x\tnsec3param 1 0 0 -"));
        assert!(matches!(split(text, None).unwrap().text, std::borrow::Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn split_keeps_lines_owner_and_ttl_context() {
        let text = "$ORIGIN example.\n@ 300 IN SOA ns hm 1 2 3 4 5\n  300 RRSIG SOA 8 1 300 20300101000000 20200101000000 1 example. AAAA\nx 60 IN A 192.0.2.1\nx 60 NSEC ( y.example.\n   A RRSIG NSEC )\n  IN TXT \"t\"\n";
        let s = split(text, None).unwrap();
        assert_eq!(s.text.lines().count(), text.lines().count());
        assert_eq!(s.records.len(), 2);
        assert_eq!(s.records[0].owner.to_ascii(), "example.");
        assert_eq!((s.records[1].owner.to_ascii().as_str(), s.records[1].ttl), ("x.example.", 60));
        assert_eq!(bitmap_types(&s.records[1].rdata[11..]), [1, 46, 47]);
        let (_, recs) = hickory_proto::serialize::txt::Parser::new(s.text.as_ref(), None, None).parse().unwrap();
        // The TXT after the NSEC entry still belongs to x, with x's TTL.
        let txt = recs.values().find(|r| r.record_type() == RecordType::TXT).unwrap();
        assert_eq!((txt.name().to_ascii().as_str(), txt.ttl()), ("x.example.", 60));
        // The last TTL is the DNSSEC entry's; a later $TTL wins over it.
        let text = "$ORIGIN example.\n@ 300 IN SOA ns hm 1 2 3 4 5\n@ IN NS ns\nx 60 NSEC y.example. A\ny A 192.0.2.1\nz 70 NSEC y.example. A\n$TTL 80\nw A 192.0.2.2\n";
        let s = split(text, None).unwrap();
        let (_, recs) = hickory_proto::serialize::txt::Parser::new(s.text.as_ref(), None, None).parse().unwrap();
        let ttl_of = |n: &str| recs.values().find(|r| r.name().to_ascii() == n).unwrap().ttl();
        assert_eq!((ttl_of("y.example."), ttl_of("w.example.")), (60, 80), "{}", s.text);
        let e = split("$ORIGIN example.\n@ 300 IN SOA ns hm 1 2 3 4 5\n\nx 60 NSEC3 1 0 0 - !!! A\n", None).err().unwrap();
        assert_eq!(e.0, 4);
        assert!(e.1.contains("x.example. NSEC3: invalid base32hex"), "{}", e.1);
    }
}
