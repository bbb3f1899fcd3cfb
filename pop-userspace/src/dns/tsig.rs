//! TSIG (RFC 8945) with hmac-sha256, for the requests a secondary sends its primaries
//! (SOA, AXFR, IXFR) and the answers it accepts, and for the NOTIFYs it takes from them
//! and its signed answers: each signed request's MAC chains into the
//! first response's, and each later message of a transfer chains from the one before.
//! Messages are handled as wire bytes: the TSIG record must be the last additional
//! record, and the MAC covers the message as it was before that record was added.

use anyhow::{Result, anyhow, bail, ensure};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const TYPE_TSIG: u16 = 250;
const CLASS_ANY: u16 = 255;
/// Seconds of clock difference allowed between the signer and us.
const FUDGE: u16 = 300;
const ALGORITHM: &str = "hmac-sha256.";

pub use crate::config::TsigKey;

/// Uncompressed, lowercase wire form of a name.
fn name_wire(name: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        ensure!(label.len() <= 63, "label {label:?} is over 63 bytes");
        out.push(label.len() as u8);
        out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    out.push(0);
    Ok(out)
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn u48(t: u64) -> [u8; 6] {
    let b = t.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

impl TsigKey {
    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.secret).expect("HMAC takes keys of any length")
    }

    /// The TSIG variables after the message in a first message's digest (RFC 8945 4.3.3).
    fn variables(&self, time: u64, error: u16, other: &[u8]) -> Result<Vec<u8>> {
        let mut v = name_wire(&self.name)?;
        v.extend_from_slice(&CLASS_ANY.to_be_bytes());
        v.extend_from_slice(&0u32.to_be_bytes());
        v.extend(name_wire(ALGORITHM)?);
        v.extend_from_slice(&u48(time));
        v.extend_from_slice(&FUDGE.to_be_bytes());
        v.extend_from_slice(&error.to_be_bytes());
        v.extend_from_slice(&(other.len() as u16).to_be_bytes());
        v.extend_from_slice(other);
        Ok(v)
    }

    /// `msg` with a TSIG record appended; the MAC, for checking the response.
    pub fn sign(&self, msg: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
        ensure!(msg.len() >= 12, "a DNS message is at least 12 bytes");
        let time = now();
        let mut h = self.mac();
        h.update(msg);
        h.update(&self.variables(time, 0, &[])?);
        let mac = h.finalize().into_bytes().to_vec();
        Ok((self.append(msg, time, &mac)?, mac))
    }

    /// Checks a signed request (a primary's NOTIFY): key, algorithm, MAC and time. The
    /// request's MAC, which the answer's signature chains from.
    pub fn verify_request(&self, msg: &[u8]) -> Result<Vec<u8>> {
        let f = find(msg)?.ok_or_else(|| anyhow!("not signed (TSIG key {} expected)", self.name))?;
        let (key_name, _) = read_name(&f.key_name, 0)?;
        ensure!(key_name == self.name, "signed with key {key_name}, not {}", self.name);
        ensure!(f.algorithm == ALGORITHM, "signed with {}, not hmac-sha256", f.algorithm);
        let mut h = self.mac();
        h.update(&unsigned_form(msg, &f));
        h.update(&self.variables(f.time, f.error, &f.other)?);
        h.verify_slice(&f.mac).map_err(|_| anyhow!("TSIG signature does not verify (wrong secret for key {}?)", self.name))?;
        let skew = now().abs_diff(f.time);
        ensure!(skew <= u64::from(f.fudge), "TSIG time is {skew} s off ours (fudge {})", f.fudge);
        Ok(f.mac)
    }

    /// `msg`, the answer to a request whose MAC was `request_mac`, signed (RFC 8945 4.3.3).
    pub fn sign_response(&self, request_mac: &[u8], msg: &[u8]) -> Result<Vec<u8>> {
        ensure!(msg.len() >= 12, "a DNS message is at least 12 bytes");
        let time = now();
        let mut h = self.mac();
        h.update(&(request_mac.len() as u16).to_be_bytes());
        h.update(request_mac);
        h.update(msg);
        h.update(&self.variables(time, 0, &[])?);
        self.append(msg, time, &h.finalize().into_bytes())
    }

    /// `msg` with a TSIG record of this key carrying `mac` signed at `time`.
    fn append(&self, msg: &[u8], time: u64, mac: &[u8]) -> Result<Vec<u8>> {
        let mut out = msg.to_vec();
        let arcount = u16::from_be_bytes([msg[10], msg[11]]) + 1;
        out[10..12].copy_from_slice(&arcount.to_be_bytes());
        out.extend(name_wire(&self.name)?);
        out.extend_from_slice(&TYPE_TSIG.to_be_bytes());
        out.extend_from_slice(&CLASS_ANY.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        let mut rdata = name_wire(ALGORITHM)?;
        rdata.extend_from_slice(&u48(time));
        rdata.extend_from_slice(&FUDGE.to_be_bytes());
        rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
        rdata.extend_from_slice(mac);
        rdata.extend_from_slice(&msg[0..2]); // original ID
        rdata.extend_from_slice(&0u16.to_be_bytes()); // error
        rdata.extend_from_slice(&0u16.to_be_bytes()); // other length
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend(rdata);
        Ok(out)
    }
}

/// Checks the messages of one exchange against the MAC of the request they answer.
pub struct Verifier<'k> {
    key: &'k TsigKey,
    /// The MAC the next signed message chains from.
    prior: Vec<u8>,
    /// Unsigned messages since the last signed one (allowed between signed ones in a
    /// transfer, never first).
    pending: Vec<u8>,
    first: bool,
}

/// Where a message's parts are: the TSIG record's start and its RDATA fields.
struct Found {
    start: usize,
    algorithm: String,
    time: u64,
    fudge: u16,
    mac: Vec<u8>,
    original_id: [u8; 2],
    error: u16,
    other: Vec<u8>,
    key_name: Vec<u8>,
}

/// Skips a (possibly compressed) name at `at`; the offset after it.
fn skip_name(msg: &[u8], mut at: usize) -> Result<usize> {
    loop {
        let len = *msg.get(at).ok_or_else(|| anyhow!("a name runs past the message"))? as usize;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xc0 == 0xc0 => return Ok(at + 2),
            l => at += 1 + l,
        }
    }
}

/// Reads an uncompressed name at `at` as text; the offset after it.
fn read_name(msg: &[u8], mut at: usize) -> Result<(String, usize)> {
    let mut out = String::new();
    loop {
        let len = *msg.get(at).ok_or_else(|| anyhow!("a name runs past the message"))? as usize;
        ensure!(len & 0xc0 == 0, "a compressed name in a TSIG record");
        at += 1;
        if len == 0 {
            return Ok((if out.is_empty() { ".".into() } else { out }, at));
        }
        let label = msg.get(at..at + len).ok_or_else(|| anyhow!("a name runs past the message"))?;
        out.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase());
        out.push('.');
        at += len;
    }
}

fn be16(msg: &[u8], at: usize) -> Result<u16> {
    msg.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or_else(|| anyhow!("the message ends early"))
}

/// The last additional record if it is a TSIG.
fn find(msg: &[u8]) -> Result<Option<Found>> {
    ensure!(msg.len() >= 12, "a DNS message is at least 12 bytes");
    let counts: Vec<u16> = (0..4).map(|i| be16(msg, 4 + 2 * i)).collect::<Result<_>>()?;
    let mut at = 12;
    for _ in 0..counts[0] {
        at = skip_name(msg, at)? + 4;
    }
    let records = counts[1] as usize + counts[2] as usize + counts[3] as usize;
    if records == 0 {
        return Ok(None);
    }
    let mut last = 0;
    for _ in 0..records {
        last = at;
        at = skip_name(msg, at)?;
        let rdlen = be16(msg, at + 8)? as usize;
        at += 10 + rdlen;
        ensure!(at <= msg.len(), "a record runs past the message");
    }
    let name_end = skip_name(msg, last)?;
    if be16(msg, name_end)? != TYPE_TSIG {
        return Ok(None);
    }
    let key_name = msg[last..name_end].to_vec();
    let mut r = name_end + 10;
    let (algorithm, after) = read_name(msg, r)?;
    r = after;
    let t = msg.get(r..r + 6).ok_or_else(|| anyhow!("a TSIG record ends early"))?;
    let time = t.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
    let fudge = be16(msg, r + 6)?;
    let mac_len = be16(msg, r + 8)? as usize;
    let mac = msg.get(r + 10..r + 10 + mac_len).ok_or_else(|| anyhow!("a TSIG record ends early"))?.to_vec();
    r += 10 + mac_len;
    let original_id =
        [*msg.get(r).ok_or_else(|| anyhow!("a TSIG record ends early"))?, *msg.get(r + 1).ok_or_else(|| anyhow!("a TSIG record ends early"))?];
    let error = be16(msg, r + 2)?;
    let other_len = be16(msg, r + 4)? as usize;
    let other = msg.get(r + 6..r + 6 + other_len).ok_or_else(|| anyhow!("a TSIG record ends early"))?.to_vec();
    Ok(Some(Found { start: last, algorithm, time, fudge, mac, original_id, error, other, key_name }))
}

/// The message as it was before its TSIG record `f` was added: ARCOUNT one less, the
/// original ID.
fn unsigned_form(msg: &[u8], f: &Found) -> Vec<u8> {
    let mut unsigned = msg[..f.start].to_vec();
    let arcount = u16::from_be_bytes([msg[10], msg[11]]) - 1;
    unsigned[10..12].copy_from_slice(&arcount.to_be_bytes());
    unsigned[0..2].copy_from_slice(&f.original_id);
    unsigned
}

impl<'k> Verifier<'k> {
    pub fn new(key: &'k TsigKey, request_mac: Vec<u8>) -> Verifier<'k> {
        Verifier { key, prior: request_mac, pending: Vec::new(), first: true }
    }

    /// Checks one message of the answer, in order. Err if it should have been signed
    /// and is not, or its MAC, key, algorithm or time is wrong.
    pub fn check(&mut self, msg: &[u8]) -> Result<()> {
        let Some(f) = find(msg)? else {
            ensure!(!self.first, "the answer is not signed (TSIG key {} expected)", self.key.name);
            ensure!(self.pending.len() < 100 * 65535, "too many unsigned messages in a row");
            self.pending.extend_from_slice(msg);
            return Ok(());
        };
        let (key_name, _) = read_name(&f.key_name, 0)?;
        ensure!(key_name == self.key.name, "signed with key {key_name}, not {}", self.key.name);
        ensure!(f.algorithm == ALGORITHM, "signed with {}, not hmac-sha256", f.algorithm);
        if f.error != 0 {
            bail!(
                "the primary rejected our TSIG (error {}: {})",
                f.error,
                match f.error {
                    16 => "BADSIG",
                    17 => "BADKEY",
                    18 => "BADTIME",
                    22 => "BADTRUNC",
                    _ => "unknown",
                }
            );
        }
        let mut h = self.key.mac();
        h.update(&(self.prior.len() as u16).to_be_bytes());
        h.update(&self.prior);
        h.update(&self.pending);
        h.update(&unsigned_form(msg, &f));
        if self.first {
            h.update(&self.key.variables(f.time, f.error, &f.other)?);
        } else {
            h.update(&u48(f.time));
            h.update(&f.fudge.to_be_bytes());
        }
        h.verify_slice(&f.mac).map_err(|_| anyhow!("TSIG signature does not verify (wrong secret for key {}?)", self.key.name))?;
        let skew = now().abs_diff(f.time);
        ensure!(skew <= u64::from(f.fudge), "TSIG time is {skew} s off ours (fudge {})", f.fudge);
        self.prior = f.mac;
        self.pending.clear();
        self.first = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &[u8]) -> TsigKey {
        TsigKey { name: "xfr.example.".into(), secret: secret.to_vec() }
    }

    #[test]
    fn a_signed_exchange_verifies_and_a_wrong_secret_or_a_changed_byte_does_not() {
        let query = [0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0, 0, 252, 0, 1];
        let k = key(b"0123456789abcdef0123456789abcdef");
        let (signed, mac) = k.sign(&query).unwrap();
        assert_eq!(u16::from_be_bytes([signed[10], signed[11]]), 1, "ARCOUNT counts the TSIG");
        assert!(find(&signed).unwrap().is_some());
        let mut response = query.to_vec();
        response[2] |= 0x80;
        let answer = k.sign_response(&mac, &response).unwrap();
        assert!(Verifier::new(&k, mac.clone()).check(&answer).is_ok());
        let other = key(b"another secret entirely");
        assert!(Verifier::new(&other, mac.clone()).check(&answer).unwrap_err().to_string().contains("does not verify"));
        let mut tampered = answer.clone();
        tampered[13] ^= 1;
        assert!(Verifier::new(&k, mac.clone()).check(&tampered).is_err());
        assert!(Verifier::new(&k, mac).check(&response).unwrap_err().to_string().contains("not signed"));
    }

    #[test]
    fn a_signed_request_verifies_as_a_server_sees_it_and_a_wrong_key_or_none_does_not() {
        let notify = [0x12, 0x34, 0x20, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0, 0, 6, 0, 1];
        let k = key(b"0123456789abcdef0123456789abcdef");
        let (signed, mac) = k.sign(&notify).unwrap();
        assert_eq!(k.verify_request(&signed).unwrap(), mac, "the MAC the answer chains from");
        assert!(key(b"another secret").verify_request(&signed).unwrap_err().to_string().contains("does not verify"));
        assert!(k.verify_request(&notify).unwrap_err().to_string().contains("not signed"));
        let other_name = TsigKey { name: "other.example.".into(), secret: k.secret.clone() };
        assert!(other_name.verify_request(&signed).unwrap_err().to_string().contains("signed with key xfr.example."));
        let mut tampered = signed.clone();
        tampered[14] ^= 1;
        assert!(k.verify_request(&tampered).is_err());
    }
}
