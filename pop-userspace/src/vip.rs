//! The VIP table: which (address, port, protocol) the data path handles, and how.
//! Synced from the config: new entries first, stale ones removed after, so a VIP that
//! stays configured never disappears in between.

use std::{collections::BTreeMap, net::IpAddr};

use anyhow::{Result, anyhow};
use aya::{
    maps::{HashMap, MapData, PerCpuHashMap, PerCpuValues},
    util::nr_cpus,
};
use pop_common::{IPPROTO_TCP, IPPROTO_UDP, VIP_ADDR_PASS_UNHANDLED, VIP_KIND_DNS, VIP_KIND_LB, VIP_KIND_PASS, VipKey, VipTraffic, VipValue, v4_mapped};

use crate::config::Config;

pub const DNS_PORT: u16 = 53;

pub fn vip_key(addr: IpAddr, port: u16, proto: u8) -> VipKey {
    let addr = match addr {
        IpAddr::V4(a) => v4_mapped(a.octets()),
        IpAddr::V6(a) => a.octets(),
    };
    VipKey { addr, port_be: port.to_be(), proto, _pad: 0 }
}

/// What the config asks the VIP tables to hold.
pub struct Desired {
    /// VIPS: (address, port, protocol) -> handler.
    pub keys: BTreeMap<([u8; 16], u16, u8), VipValue>,
    /// VIP_ADDRS: every VIP address -> VIP_ADDR_* flags.
    pub addrs: BTreeMap<[u8; 16], u32>,
}

pub fn desired(config: &Config) -> Desired {
    let mut m = BTreeMap::new();
    for (i, block) in config.dns.iter().enumerate() {
        for &vip in &block.vips {
            let k = vip_key(vip, DNS_PORT, IPPROTO_UDP);
            m.insert((k.addr, k.port_be, k.proto), VipValue { kind: VIP_KIND_DNS, index: i as u32 });
            // DNS over TCP is the server's job; the entry documents the VIP and counts it.
            let k = vip_key(vip, DNS_PORT, IPPROTO_TCP);
            m.insert((k.addr, k.port_be, k.proto), VipValue { kind: VIP_KIND_PASS, index: 0 });
        }
    }
    for (i, site) in config.http.iter().enumerate() {
        for &vip in &site.vips {
            let k = vip_key(vip, site.port, IPPROTO_TCP);
            m.insert((k.addr, k.port_be, k.proto), VipValue { kind: pop_common::VIP_KIND_HTTP, index: i as u32 });
        }
    }
    for (i, svc) in config.services.iter().enumerate() {
        for &vip in &svc.vips {
            let k = vip_key(vip, svc.port, svc.protocol.number());
            m.insert((k.addr, k.port_be, k.proto), VipValue { kind: VIP_KIND_LB, index: i as u32 });
        }
    }
    let mut addrs: BTreeMap<[u8; 16], u32> = m.keys().map(|&(addr, _, _)| (addr, 0)).collect();
    for &vip in &config.pop.pass_unhandled_vips {
        if let Some(flags) = addrs.get_mut(&vip_key(vip, 0, 0).addr) {
            *flags |= VIP_ADDR_PASS_UNHANDLED;
        }
    }
    Desired { keys: m, addrs }
}

/// VIPS, VIP_STATS and VIP_ADDRS.
pub struct VipTable(
    pub HashMap<MapData, VipKey, VipValue>,
    pub PerCpuHashMap<MapData, VipKey, VipTraffic>,
    pub HashMap<MapData, [u8; 16], u32>,
);

impl VipTable {
    pub fn from_ebpf(ebpf: &mut aya::Ebpf) -> Result<VipTable> {
        let map = ebpf.take_map(pop_common::MAP_VIPS).ok_or_else(|| anyhow!("VIPS map missing"))?;
        let stats = ebpf.take_map(pop_common::MAP_VIP_STATS).ok_or_else(|| anyhow!("VIP_STATS map missing"))?;
        let addrs = ebpf.take_map(pop_common::MAP_VIP_ADDRS).ok_or_else(|| anyhow!("VIP_ADDRS map missing"))?;
        Ok(VipTable(HashMap::try_from(map)?, PerCpuHashMap::try_from(stats)?, HashMap::try_from(addrs)?))
    }

    /// Brings VIPS and VIP_ADDRS to `desired`. Addresses are added first and removed
    /// last, so a VIP's unhandled traffic is never let through while its entries change.
    pub fn sync(&mut self, desired: &Desired) -> Result<()> {
        for (addr, flags) in &desired.addrs {
            self.2
                .insert(addr, flags, 0)
                .map_err(|e| anyhow!("VIP address table full ({} entries at most): {e}", pop_common::MAX_VIPS))?;
        }
        let want = &desired.keys;
        for (&(addr, port_be, proto), value) in want {
            let key = VipKey { addr, port_be, proto, _pad: 0 };
            self.0
                .insert(key, value, 0)
                .map_err(|e| anyhow!("VIP table full ({} entries at most): {e}", pop_common::MAX_VIPS))?;
            // Its traffic counters: created here so the data path only ever increments
            // (BPF_NOEXIST keeps the counts of a VIP that stays).
            let zero = PerCpuValues::try_from(vec![VipTraffic::default(); nr_cpus().map_err(|(_, e)| e)?])?;
            let _ = self.1.insert(key, zero, 1);
        }
        let stale: Vec<VipKey> = self
            .0
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| !want.contains_key(&(k.addr, k.port_be, k.proto)))
            .collect();
        for k in stale {
            let _ = self.0.remove(&k);
            let _ = self.1.remove(&k);
        }
        let stale: Vec<[u8; 16]> = self.2.keys().filter_map(|k| k.ok()).filter(|k| !desired.addrs.contains_key(k)).collect();
        for k in stale {
            let _ = self.2.remove(&k);
        }
        Ok(())
    }
}
