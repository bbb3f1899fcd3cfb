//! `pop decap`: on a backend, attach the XDP program that strips the outer header of the
//! packets pop sends (IPIP, IPv6-in-IPv6), pinned so it stays after the command exits.

use std::{fs, path::Path};

use anyhow::{Context as _, Result, anyhow};
use aya::{
    EbpfLoader,
    maps::{MapData, PerCpuArray},
    programs::{Xdp, links::FdLink, xdp::XdpMode},
};

use crate::loader::{check_bpffs, ifindex};

static DECAP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pop-decap.bpf.o"));

/// Counter names of DECAP_COUNTERS, in slot order.
pub const COUNTERS: [&str; 4] = ["decapsulated_ipv4", "decapsulated_ipv6", "passed_not_tunnelled", "passed_malformed"];

fn link_pin(dir: &Path, iface: &str) -> std::path::PathBuf {
    dir.join(format!("link-{iface}"))
}

pub fn attach(dir: &Path, iface: &str, generic: bool) -> Result<()> {
    check_bpffs(dir)?;
    let index = ifindex(iface).ok_or_else(|| anyhow!("interface {iface:?} does not exist"))?;
    fs::create_dir_all(dir)?;
    let pin = link_pin(dir, iface);
    if pin.exists() {
        println!("{iface}: decapsulation already attached ({})", pin.display());
        return Ok(());
    }
    let mut ebpf = EbpfLoader::new().load(DECAP_OBJECT).context("loading the decap object")?;
    let counters_pin = dir.join(format!("counters-{iface}"));
    let _ = fs::remove_file(&counters_pin);
    ebpf.map("DECAP_COUNTERS").ok_or_else(|| anyhow!("DECAP_COUNTERS missing"))?.pin(&counters_pin)?;
    let prog: &mut Xdp = ebpf.program_mut("pop_decap").ok_or_else(|| anyhow!("pop_decap missing"))?.try_into()?;
    prog.load()?;
    let mode = if generic { XdpMode::Skb } else { XdpMode::Driver };
    let id = prog.attach_to_if_index(index, mode).map_err(|e| {
        anyhow!("attaching to {iface:?} failed: {e}{}", if generic { "" } else { " (try --generic if the driver lacks native XDP)" })
    })?;
    let link: FdLink = prog.take_link(id)?.try_into().map_err(|_| anyhow!("no bpf_link for {iface}"))?;
    link.pin(&pin)?;
    println!("{iface}: decapsulating IPIP and IPv6-in-IPv6 (pinned at {})", pin.display());
    Ok(())
}

pub fn detach(dir: &Path, iface: &str) -> Result<()> {
    let pin = link_pin(dir, iface);
    if !pin.exists() {
        println!("{iface}: no decapsulation attached");
        return Ok(());
    }
    fs::remove_file(&pin)?;
    let _ = fs::remove_file(dir.join(format!("counters-{iface}")));
    println!("{iface}: decapsulation detached");
    Ok(())
}

pub fn stats(dir: &Path, iface: &str) -> Result<Vec<(&'static str, u64)>> {
    let path = dir.join(format!("counters-{iface}"));
    let map = MapData::from_pin(&path).with_context(|| format!("no decapsulation counters at {}", path.display()))?;
    let map: PerCpuArray<MapData, u64> = PerCpuArray::try_from(aya::maps::Map::PerCpuArray(map))?;
    let mut out = Vec::new();
    for (i, name) in COUNTERS.iter().enumerate() {
        out.push((*name, map.get(&(i as u32), 0)?.iter().sum()));
    }
    Ok(out)
}
