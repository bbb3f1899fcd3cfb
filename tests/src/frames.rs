//! Building and checking Ethernet/IP/UDP frames by hand, for BPF_PROG_TEST_RUN.

use crate::testrun::checksum;

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const POP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// Layer 2 options of a test frame.
#[derive(Clone, Copy, Debug, Default)]
pub struct L2 {
    /// 802.1Q / 802.1ad tags, outermost first: (TPID, VLAN id).
    pub vlans: &'static [(u16, u16)],
}

fn ethernet(l2: L2, ethertype: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&POP_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    for (tpid, vid) in l2.vlans {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// IPv4/UDP frame from `src:sport` to `dst:dport` carrying `payload`; `options` (a
/// multiple of 4 bytes) go into the IP header.
pub fn udp4(l2: L2, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut f = ethernet(l2, 0x0800);
    let ihl = 20 + options.len();
    let total = ihl + 8 + payload.len();
    let mut ip = vec![0x40 | (ihl / 4) as u8, 0];
    ip.extend_from_slice(&(total as u16).to_be_bytes());
    ip.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    ip.extend_from_slice(options);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&[0, 17]);
    f.extend_from_slice(&udp(&pseudo, sport, dport, payload));
    f
}

/// IPv6/UDP frame.
pub fn udp6(l2: L2, src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = ethernet(l2, 0x86dd);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[17, 64]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&[0, 17]);
    f.extend_from_slice(&udp(&pseudo, sport, dport, payload));
    f
}

fn udp(pseudo: &[u8], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let mut all = pseudo.to_vec();
    all.extend_from_slice(&len.to_be_bytes());
    all.extend_from_slice(&u);
    let c = match checksum(&all) {
        0 => 0xffff,
        c => c,
    };
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

/// A UDP frame taken apart, with its checksums verified.
#[derive(Debug)]
pub struct Parsed {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub vlans: Vec<(u16, u16)>,
    pub src: Vec<u8>,
    pub dst: Vec<u8>,
    pub sport: u16,
    pub dport: u16,
    pub payload: Vec<u8>,
}

/// Parses an Ethernet/VLAN/IP/UDP frame; fails on any bad length or checksum.
pub fn parse_udp(f: &[u8]) -> Result<Parsed, String> {
    let mut off = 12;
    let mut vlans = Vec::new();
    let mut et = u16::from_be_bytes([f[12], f[13]]);
    while et == 0x8100 || et == 0x88a8 {
        vlans.push((et, u16::from_be_bytes([f[off + 2], f[off + 3]])));
        off += 4;
        et = u16::from_be_bytes([f[off], f[off + 1]]);
    }
    let l3 = off + 2;
    let (src, dst, l4, pseudo) = match et {
        0x0800 => {
            let ihl = (f[l3] & 0xf) as usize * 4;
            if checksum(&f[l3..l3 + ihl]) != 0 {
                return Err("bad IPv4 header checksum".into());
            }
            let total = u16::from_be_bytes([f[l3 + 2], f[l3 + 3]]) as usize;
            if l3 + total != f.len() {
                return Err(format!("IPv4 total length {total} but {} bytes follow", f.len() - l3));
            }
            let mut p = f[l3 + 12..l3 + 20].to_vec();
            p.extend_from_slice(&[0, 17]);
            (f[l3 + 12..l3 + 16].to_vec(), f[l3 + 16..l3 + 20].to_vec(), l3 + ihl, p)
        }
        0x86dd => {
            let plen = u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]) as usize;
            if l3 + 40 + plen != f.len() {
                return Err(format!("IPv6 payload length {plen} but {} bytes follow", f.len() - l3 - 40));
            }
            let mut p = f[l3 + 8..l3 + 40].to_vec();
            p.extend_from_slice(&[0, 17]);
            (f[l3 + 8..l3 + 24].to_vec(), f[l3 + 24..l3 + 40].to_vec(), l3 + 40, p)
        }
        other => return Err(format!("ethertype {other:#x}")),
    };
    let ulen = u16::from_be_bytes([f[l4 + 4], f[l4 + 5]]) as usize;
    if l4 + ulen != f.len() {
        return Err(format!("UDP length {ulen} but {} bytes follow", f.len() - l4));
    }
    let mut all = pseudo;
    all.extend_from_slice(&(ulen as u16).to_be_bytes());
    all.extend_from_slice(&f[l4..]);
    if checksum(&all) != 0 {
        return Err("bad UDP checksum".into());
    }
    Ok(Parsed {
        dst_mac: f[0..6].try_into().unwrap(),
        src_mac: f[6..12].try_into().unwrap(),
        vlans,
        src,
        dst,
        sport: u16::from_be_bytes([f[l4], f[l4 + 1]]),
        dport: u16::from_be_bytes([f[l4 + 2], f[l4 + 3]]),
        payload: f[l4 + 8..].to_vec(),
    })
}

/// Any IP frame taken apart: L3 family, protocol, addresses and the L4 bytes, with IP
/// and L4 checksums and all lengths verified (TCP, UDP, ICMP, ICMPv6; IPIP and
/// IPv6-in-IPv6 are checked through to the inner packet).
#[derive(Debug)]
pub struct Ip {
    pub v6: bool,
    pub proto: u8,
    pub src: Vec<u8>,
    pub dst: Vec<u8>,
    pub l4: Vec<u8>,
    pub inner: Option<Box<Ip>>,
}

fn l4_checksum_ok(v6: bool, proto: u8, src: &[u8], dst: &[u8], l4: &[u8]) -> bool {
    match proto {
        6 | 17 | 58 => {
            let mut all = src.to_vec();
            all.extend_from_slice(dst);
            all.extend_from_slice(&[0, proto]);
            all.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            all.extend_from_slice(l4);
            let _ = v6;
            checksum(&all) == 0
        }
        1 => checksum(l4) == 0,
        _ => true,
    }
}

/// Parses an IP packet starting at `l3` of `f` (to its end).
pub fn parse_ip(f: &[u8]) -> Result<Ip, String> {
    parse_ip_checked(f, true)
}

/// As [`parse_ip`]; a tunnelled inner packet's checksums are the client's business (pop
/// forwards it untouched, as any router would), so they are checked only when `check_l4`.
fn parse_ip_checked(f: &[u8], check_l4: bool) -> Result<Ip, String> {
    if f.is_empty() {
        return Err("empty".into());
    }
    let (v6, proto, src, dst, l4) = match f[0] >> 4 {
        4 => {
            if f.len() < 20 {
                return Err("short IPv4 header".into());
            }
            let ihl = (f[0] & 0xf) as usize * 4;
            if ihl < 20 || f.len() < ihl || (check_l4 && checksum(&f[..ihl]) != 0) {
                return Err("bad IPv4 header or checksum".into());
            }
            let total = u16::from_be_bytes([f[2], f[3]]) as usize;
            if total > f.len() || total < ihl {
                return Err(format!("IPv4 total length {total}, {} bytes present", f.len()));
            }
            let f = &f[..total]; // anything after is link-layer padding
            (false, f[9], f[12..16].to_vec(), f[16..20].to_vec(), f[ihl..].to_vec())
        }
        6 => {
            if f.len() < 40 {
                return Err("short IPv6 header".into());
            }
            let plen = u16::from_be_bytes([f[4], f[5]]) as usize;
            if 40 + plen > f.len() {
                return Err(format!("IPv6 payload length {plen}, {} bytes present", f.len() - 40));
            }
            let f = &f[..40 + plen];
            (true, f[6], f[8..24].to_vec(), f[24..40].to_vec(), f[40..].to_vec())
        }
        v => return Err(format!("IP version {v}")),
    };
    let inner = match proto {
        4 | 41 => Some(Box::new(parse_ip_checked(&l4, false)?)),
        _ => {
            if check_l4 && !l4_checksum_ok(v6, proto, &src, &dst, &l4) {
                return Err(format!("bad L4 checksum (protocol {proto})"));
            }
            if check_l4 && proto == 17 && (l4.len() < 8 || u16::from_be_bytes([l4[4], l4[5]]) as usize != l4.len()) {
                return Err("bad UDP length".into());
            }
            None
        }
    };
    Ok(Ip { v6, proto, src, dst, l4, inner })
}

/// Offset of the IP header in an Ethernet frame (after up to two VLAN tags), and the ethertype.
pub fn l3_offset(f: &[u8]) -> Option<(usize, u16)> {
    let mut off = 12;
    let mut et = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    let mut tags = 0;
    while (et == 0x8100 || et == 0x88a8) && tags < 2 {
        off += 4;
        et = u16::from_be_bytes([*f.get(off)?, *f.get(off + 1)?]);
        tags += 1;
    }
    Some((off + 2, et))
}

/// An Ethernet frame carrying IPv4 from `src` to `dst` with protocol `proto`, IP
/// options `options` (a multiple of 4 bytes) and the layer 4 bytes `l4` as given
/// (their checksum is the caller's).
pub fn ip4(src: [u8; 4], dst: [u8; 4], proto: u8, options: &[u8], l4: &[u8]) -> Vec<u8> {
    let ihl = 20 + options.len();
    let mut ip = vec![0x40 | (ihl / 4) as u8, 0];
    ip.extend_from_slice(&((ihl + l4.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    ip.extend_from_slice(options);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = ethernet(L2::default(), 0x0800);
    f.extend_from_slice(&ip);
    f.extend_from_slice(l4);
    f
}

/// An IPv4/TCP frame from 192.0.2.1:`sport` to `dst`:80 with a 20-byte TCP header
/// (`flags`, `seq`, `ack`), `payload`, and correct checksums.
pub fn tcp4(dst: [u8; 4], sport: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    tcp4_with_options(&[], &[], dst, sport, seq, ack, flags, payload)
}

/// [`tcp4`] with IP options `ip_opts` and TCP options `tcp_opts` (each a multiple of 4
/// bytes).
#[allow(clippy::too_many_arguments)]
pub fn tcp4_with_options(ip_opts: &[u8], tcp_opts: &[u8], dst: [u8; 4], sport: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let src = [192, 0, 2, 1];
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&80u16.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = (((20 + tcp_opts.len()) / 4) << 4) as u8;
    t[13] = flags;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    t.extend_from_slice(tcp_opts);
    t.extend_from_slice(payload);
    let mut pseudo = src.to_vec();
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(t.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(&t);
    let c = checksum(&pseudo);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    ip4(src, dst, 6, ip_opts, &t)
}

/// The TCP timestamp option (kind 8, length 10) of the TCP header `t`: (TSval, TSecr).
pub fn tcp_timestamps(t: &[u8]) -> Option<(u32, u32)> {
    let hl = ((*t.get(12)? >> 4) as usize * 4).min(t.len());
    let mut i = 20;
    while i < hl {
        match t[i] {
            0 => return None,
            1 => i += 1,
            kind => {
                let len = *t.get(i + 1)? as usize;
                if len < 2 || i + len > hl {
                    return None;
                }
                if kind == 8 && len == 10 {
                    let v = |k: usize| u32::from_be_bytes(t[i + k..i + k + 4].try_into().unwrap());
                    return Some((v(2), v(6)));
                }
                i += len;
            }
        }
    }
    None
}
