//! The VIP table: which handler takes traffic to an (address, port, protocol).

/// Entries in the VIP table.
pub const MAX_VIPS: u32 = 4096;

/// Key of the VIP table: destination address (IPv4 as v4-mapped IPv6), port, protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VipKey {
    /// IPv6 address, or IPv4 as `::ffff:a.b.c.d`, network byte order.
    pub addr: [u8; 16],
    /// Destination port in network byte order.
    pub port_be: u16,
    /// IPPROTO_TCP or IPPROTO_UDP.
    pub proto: u8,
    pub _pad: u8,
}

/// Packets and bytes to one VIP key (per CPU), for rates and anomaly detection.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipTraffic {
    pub packets: u64,
    pub bytes: u64,
}

/// What the data path does with traffic for a VIP key.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VipValue {
    /// One of the `VIP_KIND_*` constants.
    pub kind: u32,
    /// Index into the kind's own tables.
    pub index: u32,
    /// This key's entry in VIP_STATS (an array: no second hash lookup per packet).
    pub slot: u32,
}

/// VIP_ADDRS value bit: traffic to this address that no VIPS entry takes goes to the
/// kernel instead of being dropped (`pop.pass_unhandled_vips`).
pub const VIP_ADDR_PASS_UNHANDLED: u32 = 1;

/// Words of VIP_FILTER's bitmap: 65536 bits for at most MAX_VIPS addresses, so an
/// address that is no VIP finds its bit clear at least 15 times in 16.
pub const VIP_FILTER_WORDS: usize = 1024;

/// VIP_FILTER: bit `vip_filter_bit(a)` is set for every address `a` in VIP_ADDRS, so a
/// packet whose destination finds its bit clear is no VIP's without a hash lookup
/// (most of a host's own traffic). Until the controller first writes it (`ready` 0)
/// the data path looks every packet up as if every bit were set.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VipFilter {
    pub ready: u64,
    pub bits: [u64; VIP_FILTER_WORDS],
}

impl VipFilter {
    pub const EMPTY: VipFilter = VipFilter { ready: 0, bits: [0; VIP_FILTER_WORDS] };

    /// The filter of exactly these addresses (ready).
    pub fn of<'a>(addrs: impl IntoIterator<Item = &'a [u8; 16]>) -> VipFilter {
        let mut f = VipFilter { ready: 1, bits: [0; VIP_FILTER_WORDS] };
        for a in addrs {
            let bit = vip_filter_bit(a) as usize;
            f.bits[bit / 64] |= 1 << (bit % 64);
        }
        f
    }

    /// Whether `addr` may be in VIP_ADDRS (false: it certainly is not).
    #[inline(always)]
    pub fn may_hold(&self, addr: &[u8; 16]) -> bool {
        let bit = vip_filter_bit(addr) as usize;
        self.ready == 0 || (self.bits[(bit / 64) % VIP_FILTER_WORDS] >> (bit % 64)) & 1 != 0
    }
}

/// Bit of `addr` (IPv4 v4-mapped) in VipFilter::bits: its four words folded, then
/// murmur3's finaliser, so neighbouring addresses land far apart.
#[inline(always)]
pub fn vip_filter_bit(addr: &[u8; 16]) -> u32 {
    let w = |i: usize| u32::from_le_bytes([addr[i * 4], addr[i * 4 + 1], addr[i * 4 + 2], addr[i * 4 + 3]]);
    let mut h = w(0);
    h = h.wrapping_mul(0x9e37_79b1) ^ w(1);
    h = h.wrapping_mul(0x9e37_79b1) ^ w(2);
    h = h.wrapping_mul(0x9e37_79b1) ^ w(3);
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h & (VIP_FILTER_WORDS as u32 * 64 - 1)
}

/// Traffic for this VIP goes to the kernel (the controller's own servers).
pub const VIP_KIND_PASS: u32 = 0;
/// UDP/53 of a DNS block: answered from DNS_TABLE; `index` is the block.
pub const VIP_KIND_DNS: u32 = 1;
/// A load-balanced service: steered to a backend; `index` is the service.
pub const VIP_KIND_LB: u32 = 2;
/// An `[[http]]` site answered in XDP; `index` is the site.
pub const VIP_KIND_HTTP: u32 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> [u8; 16] {
        crate::v4_mapped(a)
    }

    #[test]
    fn the_filter_holds_its_addresses_and_turns_most_others_away() {
        let vips: Vec<[u8; 16]> = (0..64u8).map(|i| v4([203, 0, 113, i])).chain([[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]]).collect();
        let f = VipFilter::of(&vips);
        assert!(vips.iter().all(|a| f.may_hold(a)));
        // 65 addresses set at most 65 of 65536 bits: nearly every other address is out.
        let others = (0..=255u8).flat_map(|c| (0..=255u8).map(move |d| v4([198, 51, c, d])));
        let held = others.filter(|a| f.may_hold(a)).count();
        assert!(held < 65536 / 100, "{held} of 65536 other addresses pass the filter");
    }

    #[test]
    fn a_filter_not_yet_written_holds_everything() {
        assert!(VipFilter::EMPTY.may_hold(&v4([192, 0, 2, 1])));
        assert!(!VipFilter::of(&[]).may_hold(&v4([192, 0, 2, 1])));
    }
}
