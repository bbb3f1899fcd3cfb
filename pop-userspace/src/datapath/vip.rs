//! The VIP table: which (address, port, protocol) the data path handles, and how.
//! Synced from the config: new entries first, stale ones removed after, so a VIP that
//! stays configured never disappears in between.

use std::{collections::BTreeMap, net::IpAddr};

use anyhow::{Result, anyhow, bail};
use aya::{
    maps::{Array, HashMap, MapData, PerCpuHashMap, PerCpuValues},
    util::nr_cpus,
};
use pop_common::{
    IPPROTO_TCP, IPPROTO_UDP, VIP_ADDR_PASS_UNHANDLED, VIP_KIND_DNS, VIP_KIND_LB, VIP_KIND_PASS, VipFilter, VipKey, VipTraffic, VipValue, v4_mapped,
};

use crate::{config::Config, datapath::undo::HashUndo};

pub use crate::config::DNS_PORT;

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

/// What a VIP commit changed.
pub struct VipUndo {
    keys: HashUndo<VipKey, VipValue>,
    addrs: HashUndo<[u8; 16], u32>,
    /// Counters created for new VIPs (removed again on rollback).
    stats_created: Vec<VipKey>,
}

impl Default for VipUndo {
    fn default() -> Self {
        VipUndo { keys: HashUndo::new("VIP table"), addrs: HashUndo::new("VIP address table"), stats_created: Vec::new() }
    }
}

/// VIPS, VIP_STATS, VIP_ADDRS and VIP_FILTER.
pub struct VipTable(
    pub HashMap<MapData, VipKey, VipValue>,
    pub PerCpuHashMap<MapData, VipKey, VipTraffic>,
    pub HashMap<MapData, [u8; 16], u32>,
    pub Array<MapData, VipFilter>,
);

impl VipTable {
    pub fn from_ebpf(ebpf: &mut aya::Ebpf) -> Result<VipTable> {
        let map = ebpf.take_map(pop_common::MAP_VIPS).ok_or_else(|| anyhow!("VIPS map missing"))?;
        let stats = ebpf.take_map(pop_common::MAP_VIP_STATS).ok_or_else(|| anyhow!("VIP_STATS map missing"))?;
        let addrs = ebpf.take_map(pop_common::MAP_VIP_ADDRS).ok_or_else(|| anyhow!("VIP_ADDRS map missing"))?;
        let filter = ebpf.take_map(pop_common::MAP_VIP_FILTER).ok_or_else(|| anyhow!("VIP_FILTER map missing"))?;
        Ok(VipTable(HashMap::try_from(map)?, PerCpuHashMap::try_from(stats)?, HashMap::try_from(addrs)?, Array::try_from(filter)?))
    }

    /// Writes VIP_FILTER for `extra` and every address VIP_ADDRS holds now. Before
    /// addresses are added it must hold old and new ones: a packet to an address the
    /// filter lacks is passed to the kernel without looking at VIP_ADDRS.
    fn write_filter(&mut self, extra: &BTreeMap<[u8; 16], u32>) -> Result<()> {
        let held: Vec<[u8; 16]> = self.2.keys().filter_map(|k| k.ok()).collect();
        let filter = VipFilter::of(held.iter().chain(extra.keys()));
        self.3.set(0, filter, 0).map_err(|e| anyhow!("writing the VIP filter: {e}"))
    }

    /// Refuses `desired` if VIPS or VIP_ADDRS could not hold it while old and new
    /// entries coexist (new ones are added before stale ones go).
    pub fn check_room(&self, desired: &Desired) -> Result<()> {
        let max = pop_common::MAX_VIPS as usize;
        let keys =
            self.0.keys().filter_map(|k| k.ok()).filter(|k| !desired.keys.contains_key(&(k.addr, k.port_be, k.proto))).count() + desired.keys.len();
        let addrs = self.2.keys().filter_map(|k| k.ok()).filter(|k| !desired.addrs.contains_key(k)).count() + desired.addrs.len();
        if keys > max || addrs > max {
            bail!("the VIP table would need {} entries ({} addresses) while old and new VIPs coexist; it holds {max}", keys, addrs);
        }
        Ok(())
    }

    /// Brings VIPS and VIP_ADDRS to `desired`, recording every change in `undo`.
    /// Addresses are added first and removed last, so a VIP's unhandled traffic is
    /// never let through while its entries change. `fault` is the test hook: fail
    /// after the first entry. Counters of removed VIPs stay until [`VipTable::finish`].
    pub fn commit(&mut self, desired: &Desired, undo: &mut VipUndo, fault: bool) -> Result<()> {
        self.write_filter(&desired.addrs)?;
        for (addr, flags) in &desired.addrs {
            undo.addrs.insert(&mut self.2, *addr, *flags).map_err(|e| anyhow!("{e:#} ({} entries at most)", pop_common::MAX_VIPS))?;
        }
        let want = &desired.keys;
        let cpus = nr_cpus().map_err(|(_, e)| e)?;
        for (&(addr, port_be, proto), value) in want {
            let key = VipKey { addr, port_be, proto, _pad: 0 };
            undo.keys.insert(&mut self.0, key, *value).map_err(|e| anyhow!("{e:#} ({} entries at most)", pop_common::MAX_VIPS))?;
            // Its traffic counters: created here so the data path only ever increments
            // (BPF_NOEXIST keeps the counts of a VIP that stays).
            let zero = PerCpuValues::try_from(vec![VipTraffic::default(); cpus])?;
            if self.1.insert(key, zero, 1).is_ok() {
                undo.stats_created.push(key);
            }
            if fault {
                bail!("injected fault after writing one VIP entry");
            }
        }
        let stale: Vec<VipKey> = self.0.keys().filter_map(|k| k.ok()).filter(|k| !want.contains_key(&(k.addr, k.port_be, k.proto))).collect();
        for k in stale {
            undo.keys.remove(&mut self.0, k)?;
        }
        let stale: Vec<[u8; 16]> = self.2.keys().filter_map(|k| k.ok()).filter(|k| !desired.addrs.contains_key(k)).collect();
        for k in stale {
            undo.addrs.remove(&mut self.2, k)?;
        }
        self.write_filter(&BTreeMap::new())
    }

    /// Undoes a [`VipTable::commit`].
    pub fn rollback(&mut self, undo: &mut VipUndo) -> Vec<String> {
        // Every address is looked up while the old ones come back, then the filter is
        // exactly theirs again (the commit may have widened or narrowed it).
        let mut failed = Vec::new();
        if let Err(e) = self.3.set(0, VipFilter::EMPTY, 0) {
            failed.push(format!("opening the VIP filter: {e}"));
        }
        failed.extend(undo.keys.restore(&mut self.0));
        failed.extend(undo.addrs.restore(&mut self.2));
        if let Err(e) = self.write_filter(&BTreeMap::new()) {
            failed.push(format!("{e:#}"));
        }
        for k in undo.stats_created.drain(..) {
            let _ = self.1.remove(&k);
        }
        failed
    }

    /// After a commit: drops the counters of VIPs no longer configured.
    pub fn finish(&mut self) {
        let live: Vec<VipKey> = self.0.keys().filter_map(|k| k.ok()).collect();
        let stale: Vec<VipKey> = self.1.keys().filter_map(|k| k.ok()).filter(|k| !live.contains(k)).collect();
        for k in stale {
            let _ = self.1.remove(&k);
        }
    }
}
