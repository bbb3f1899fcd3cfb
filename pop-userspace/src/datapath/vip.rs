//! The VIP table: which (address, port, protocol) the data path handles, and how.
//! Synced from the config: new entries first, stale ones removed after, so a VIP that
//! stays configured never disappears in between.

use std::{
    collections::{BTreeMap, HashMap as StdHashMap},
    net::IpAddr,
};

use anyhow::{Result, anyhow, bail};
use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuValues},
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
    /// VIPS: (address, port, protocol) -> handler (the counter slot is given at commit).
    pub keys: BTreeMap<([u8; 16], u16, u8), VipValue>,
    /// VIP_ADDRS: every VIP address -> VIP_ADDR_* flags.
    pub addrs: BTreeMap<[u8; 16], u32>,
}

pub fn desired(config: &Config) -> Desired {
    let mut m = BTreeMap::new();
    for (i, block) in config.dns.iter().enumerate() {
        for &vip in &block.vips {
            let k = vip_key(vip, DNS_PORT, IPPROTO_UDP);
            m.insert((k.addr, k.port_be, k.proto), VipValue { kind: VIP_KIND_DNS, index: i as u32, slot: 0 });
            // DNS over TCP is the server's job; the entry documents the VIP and counts it.
            let k = vip_key(vip, DNS_PORT, IPPROTO_TCP);
            m.insert((k.addr, k.port_be, k.proto), VipValue { kind: VIP_KIND_PASS, index: 0, slot: 0 });
        }
    }
    for (i, site) in config.http.iter().enumerate() {
        for &vip in &site.vips {
            let k = vip_key(vip, site.port, IPPROTO_TCP);
            m.insert((k.addr, k.port_be, k.proto), VipValue { kind: pop_common::VIP_KIND_HTTP, index: i as u32, slot: 0 });
        }
    }
    for (i, svc) in config.services.iter().enumerate() {
        for &vip in &svc.vips {
            let k = vip_key(vip, svc.port, svc.protocol.number());
            m.insert((k.addr, k.port_be, k.proto), VipValue { kind: VIP_KIND_LB, index: i as u32, slot: 0 });
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
}

impl Default for VipUndo {
    fn default() -> Self {
        VipUndo { keys: HashUndo::new("VIP table"), addrs: HashUndo::new("VIP address table") }
    }
}

/// VIPS, VIP_STATS, VIP_ADDRS and VIP_FILTER.
pub struct VipTable(
    pub HashMap<MapData, VipKey, VipValue>,
    pub PerCpuArray<MapData, VipTraffic>,
    pub HashMap<MapData, [u8; 16], u32>,
    pub Array<MapData, VipFilter>,
);

impl VipTable {
    pub fn from_ebpf(ebpf: &mut aya::Ebpf) -> Result<VipTable> {
        let map = ebpf.take_map(pop_common::MAP_VIPS).ok_or_else(|| anyhow!("VIPS map missing"))?;
        let stats = ebpf.take_map(pop_common::MAP_VIP_STATS).ok_or_else(|| anyhow!("VIP_STATS map missing"))?;
        let addrs = ebpf.take_map(pop_common::MAP_VIP_ADDRS).ok_or_else(|| anyhow!("VIP_ADDRS map missing"))?;
        let filter = ebpf.take_map(pop_common::MAP_VIP_FILTER).ok_or_else(|| anyhow!("VIP_FILTER map missing"))?;
        Ok(VipTable(HashMap::try_from(map)?, PerCpuArray::try_from(stats)?, HashMap::try_from(addrs)?, Array::try_from(filter)?))
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
    /// never let through while its entries change. A key that stays keeps its counter
    /// slot; a new key gets a slot no entry uses, zeroed first. `fault` is the test
    /// hook: fail after the first entry.
    pub fn commit(&mut self, desired: &Desired, undo: &mut VipUndo, fault: bool) -> Result<()> {
        self.write_filter(&desired.addrs)?;
        for (addr, flags) in &desired.addrs {
            undo.addrs.insert(&mut self.2, *addr, *flags).map_err(|e| anyhow!("{e:#} ({} entries at most)", pop_common::MAX_VIPS))?;
        }
        let want = &desired.keys;
        let live: StdHashMap<VipKey, VipValue> = self.0.iter().filter_map(|e| e.ok()).collect();
        let slots = assign_slots(want, &live)?;
        let cpus = nr_cpus().map_err(|(_, e)| e)?;
        for (&(addr, port_be, proto), value) in want {
            let key = VipKey { addr, port_be, proto, _pad: 0 };
            let slot = slots[&key];
            if live.get(&key).map(|v| v.slot) != Some(slot) {
                // A slot no live entry uses: whatever it counted before is not this key's.
                let zero = PerCpuValues::try_from(vec![VipTraffic::default(); cpus])?;
                self.1.set(slot, zero, 0).map_err(|e| anyhow!("clearing VIP counter slot {slot}: {e}"))?;
            }
            let value = VipValue { slot, ..*value };
            undo.keys.insert(&mut self.0, key, value).map_err(|e| anyhow!("{e:#} ({} entries at most)", pop_common::MAX_VIPS))?;
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
        failed
    }
}

/// Counter slots for the keys of `want`: a key already live keeps its slot, a new one
/// takes the lowest slot no live key holds (live and new keys coexist until stale
/// ones are removed, so a slot is never shared).
fn assign_slots(want: &BTreeMap<([u8; 16], u16, u8), VipValue>, live: &StdHashMap<VipKey, VipValue>) -> Result<StdHashMap<VipKey, u32>> {
    let mut used: std::collections::BTreeSet<u32> = live.values().map(|v| v.slot).collect();
    let mut free = (0..pop_common::MAX_VIPS).filter(|s| !used.contains(s)).collect::<Vec<_>>().into_iter();
    let mut out = StdHashMap::new();
    for &(addr, port_be, proto) in want.keys() {
        let key = VipKey { addr, port_be, proto, _pad: 0 };
        let slot = match live.get(&key) {
            Some(v) => v.slot,
            None => free.next().ok_or_else(|| anyhow!("no free VIP counter slot ({} at most)", pop_common::MAX_VIPS))?,
        };
        used.insert(slot);
        out.insert(key, slot);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> VipKey {
        vip_key(IpAddr::from([203, 0, 113, i]), 53, IPPROTO_UDP)
    }

    fn want(keys: &[u8]) -> BTreeMap<([u8; 16], u16, u8), VipValue> {
        keys.iter().map(|&i| key(i)).map(|k| ((k.addr, k.port_be, k.proto), VipValue { kind: VIP_KIND_DNS, index: 0, slot: 0 })).collect()
    }

    #[test]
    fn a_vip_that_stays_keeps_its_counter_slot_and_new_ones_take_free_slots() {
        let first = assign_slots(&want(&[1, 2, 3]), &StdHashMap::new()).unwrap();
        assert_eq!(first.values().copied().collect::<std::collections::BTreeSet<_>>().len(), 3, "distinct slots: {first:?}");
        let live: StdHashMap<VipKey, VipValue> = first.iter().map(|(k, &slot)| (*k, VipValue { kind: VIP_KIND_DNS, index: 0, slot })).collect();
        // 2 stays, 1 and 3 go, 4 and 5 come while 1 and 3 are still live.
        let second = assign_slots(&want(&[2, 4, 5]), &live).unwrap();
        assert_eq!(second[&key(2)], first[&key(2)]);
        for new in [4, 5] {
            assert!(!first.values().any(|&s| s == second[&key(new)]), "slot of a live VIP reused: {second:?}");
        }
        assert_ne!(second[&key(4)], second[&key(5)]);
    }
}
