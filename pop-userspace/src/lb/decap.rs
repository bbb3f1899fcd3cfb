//! `pop decap`: on a backend, attach the XDP program that strips the outer header of the
//! packets pop sends (IPIP, IPv6-in-IPv6), pinned so it stays after the command exits.
//!
//! Only packets whose inner destination is an address of this host are decapsulated
//! (the list is taken when the command runs), and with `--allow-source` only those from
//! the listed PoP addresses. Running the command again on an attached interface
//! refreshes both lists in place; a pin left by a link that is no longer attached to
//! this interface (its namespace deleted, the device re-created) is replaced.

use std::{
    borrow::BorrowMut,
    collections::BTreeSet,
    ffi::CString,
    fs,
    net::IpAddr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, anyhow};
use aya::{
    EbpfLoader,
    maps::{Array, HashMap, Map, MapData, PerCpuArray},
    programs::{Xdp, links::FdLink, xdp::XdpMode},
};
use pop_common::{MAP_DECAP_CONFIG, MAP_DECAP_COUNTERS, MAP_DECAP_LOCAL, MAP_DECAP_SOURCES};

use super::runtime::mapped;
use crate::datapath::{
    loader::{check_bpffs, ifindex},
    pinned::open_pinned,
};

static DECAP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pop-decap.bpf.o"));

/// Counter names of DECAP_COUNTERS, in slot order.
pub const COUNTERS: [&str; 7] = [
    "decapsulated_ipv4",
    "decapsulated_ipv6",
    "passed_not_tunnelled",
    "passed_malformed",
    "dropped_inner_not_local",
    "dropped_source_not_allowed",
    "dropped_inner_malformed",
];

/// Pinned maps beside the link: (map name in the object, pin file prefix).
const MAPS: [(&str, &str); 4] =
    [(MAP_DECAP_COUNTERS, "counters"), (MAP_DECAP_LOCAL, "local"), (MAP_DECAP_SOURCES, "sources"), (MAP_DECAP_CONFIG, "config")];

fn link_pin(dir: &Path, iface: &str) -> PathBuf {
    dir.join(format!("link-{iface}"))
}

fn map_pin(dir: &Path, prefix: &str, iface: &str) -> PathBuf {
    dir.join(format!("{prefix}-{iface}"))
}

/// Interface index the pinned XDP bpf_link is attached to (0 once its device is gone).
fn xdp_link_ifindex(pin: &Path) -> Result<u32> {
    const BPF_OBJ_GET: libc::c_long = 7;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    const BPF_LINK_TYPE_XDP: u32 = 6;
    let path = CString::new(pin.as_os_str().as_encoded_bytes())?;
    let mut attr = [0u8; 128];
    attr[0..8].copy_from_slice(&(path.as_ptr() as u64).to_ne_bytes());
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET, attr.as_mut_ptr(), attr.len() as u32) };
    if fd < 0 {
        return Err(anyhow!("opening {}: {}", pin.display(), std::io::Error::last_os_error()));
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // struct bpf_link_info: type, id, prog_id, then (8-aligned) xdp.ifindex.
    let mut info = [0u8; 64];
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(fd.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(info.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
    if unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, attr.as_mut_ptr(), attr.len() as u32) } < 0 {
        return Err(anyhow!("reading link {}: {}", pin.display(), std::io::Error::last_os_error()));
    }
    let word = |at: usize| u32::from_ne_bytes(info[at..at + 4].try_into().unwrap());
    if word(0) != BPF_LINK_TYPE_XDP {
        return Err(anyhow!("{} is not an XDP link", pin.display()));
    }
    Ok(word(16))
}

/// Addresses of this host (this network namespace), loopback ranges left out: the
/// inner destinations a tunnelled packet may have.
pub fn local_addresses() -> Result<BTreeSet<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(anyhow!("getifaddrs: {}", std::io::Error::last_os_error()));
    }
    let mut out = BTreeSet::new();
    let mut p = head;
    while !p.is_null() {
        let ifa = unsafe { &*p };
        if !ifa.ifa_addr.is_null() {
            match unsafe { (*ifa.ifa_addr).sa_family } as i32 {
                libc::AF_INET => {
                    let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    out.insert(IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes()));
                }
                libc::AF_INET6 => {
                    let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                    out.insert(IpAddr::from(sin6.sin6_addr.s6_addr));
                }
                _ => {}
            }
        }
        p = ifa.ifa_next;
    }
    unsafe { libc::freeifaddrs(head) };
    out.retain(|a| !a.is_loopback());
    Ok(out)
}

/// Makes `map` hold exactly `want`: new keys first, stale ones removed after, so an
/// address that stays is never missing in between.
fn sync_set<T: BorrowMut<MapData>>(map: &mut HashMap<T, [u8; 16], u8>, want: &BTreeSet<[u8; 16]>) -> Result<()> {
    for k in want {
        map.insert(k, 1, 0).map_err(|e| anyhow!("address list full (1024 at most): {e}"))?;
    }
    let stale: Vec<[u8; 16]> = map.keys().filter_map(|k| k.ok()).filter(|k| !want.contains(k)).collect();
    for k in stale {
        let _ = map.remove(&k);
    }
    Ok(())
}

/// The accepted inner destinations and outer sources, in the maps the program reads.
fn configure<T: BorrowMut<MapData>>(
    local_map: &mut HashMap<T, [u8; 16], u8>,
    sources_map: &mut HashMap<T, [u8; 16], u8>,
    config: &mut Array<T, u32>,
    local: &BTreeSet<IpAddr>,
    sources: &[IpAddr],
) -> Result<()> {
    sync_set(local_map, &local.iter().map(|a| mapped(*a)).collect())?;
    // Switch the check off before emptying the list, on only once the list is complete.
    if sources.is_empty() {
        config.set(0, 0, 0)?;
        sync_set(sources_map, &BTreeSet::new())?;
    } else {
        sync_set(sources_map, &sources.iter().map(|a| mapped(*a)).collect())?;
        config.set(0, 1, 0)?;
    }
    Ok(())
}

/// `configure` on the maps pinned for a link that is already attached.
fn configure_pinned(dir: &Path, iface: &str, local: &BTreeSet<IpAddr>, sources: &[IpAddr]) -> Result<()> {
    let open = |prefix: &str| -> Result<MapData> {
        let path = map_pin(dir, prefix, iface);
        open_pinned(&path).context("attached by an older pop? `pop decap --detach` first")
    };
    let mut local_map: HashMap<MapData, [u8; 16], u8> = HashMap::try_from(Map::HashMap(open("local")?))?;
    let mut sources_map: HashMap<MapData, [u8; 16], u8> = HashMap::try_from(Map::HashMap(open("sources")?))?;
    let mut config: Array<MapData, u32> = Array::try_from(Map::Array(open("config")?))?;
    configure(&mut local_map, &mut sources_map, &mut config, local, sources)
}

fn describe(local: &BTreeSet<IpAddr>, sources: &[IpAddr]) -> String {
    let list = |v: Vec<String>| if v.is_empty() { "none".to_string() } else { v.join(", ") };
    format!(
        "inner destinations accepted: {}; outer sources accepted: {}",
        list(local.iter().map(|a| a.to_string()).collect()),
        if sources.is_empty() { "any".to_string() } else { list(sources.iter().map(|a| a.to_string()).collect()) }
    )
}

/// Attaches to `iface`, or refreshes the lists of the program attached there. A pin
/// whose link is not on this interface any more (namespace deleted, device re-created)
/// is not taken for an attachment: attaching afresh is what tells, since the kernel
/// refuses a second XDP link on an interface.
pub fn attach(dir: &Path, iface: &str, generic: bool, sources: &[IpAddr]) -> Result<()> {
    check_bpffs(dir)?;
    let index = ifindex(iface).ok_or_else(|| anyhow!("interface {iface:?} does not exist"))?;
    fs::create_dir_all(dir)?;
    let local = local_addresses()?;
    let pin = link_pin(dir, iface);

    let mut ebpf = EbpfLoader::new().load(DECAP_OBJECT).context("loading the decap object")?;
    {
        let [local_map, sources_map, config] =
            ebpf.maps_disjoint_mut([MAP_DECAP_LOCAL, MAP_DECAP_SOURCES, MAP_DECAP_CONFIG]).map(|m| m.ok_or_else(|| anyhow!("decap map missing")));
        let mut local_map: HashMap<&mut MapData, [u8; 16], u8> = HashMap::try_from(local_map?)?;
        let mut sources_map: HashMap<&mut MapData, [u8; 16], u8> = HashMap::try_from(sources_map?)?;
        let mut config: Array<&mut MapData, u32> = Array::try_from(config?)?;
        // The lists are in place before the program sees a packet.
        configure(&mut local_map, &mut sources_map, &mut config, &local, sources)?;
    }
    let prog: &mut Xdp = ebpf.program_mut(pop_common::DECAP_PROGRAM).ok_or_else(|| anyhow!("{} missing", pop_common::DECAP_PROGRAM))?.try_into()?;
    prog.load()?;
    let mode = if generic { XdpMode::Skb } else { XdpMode::Driver };
    let id = match prog.attach_to_if_index(index, mode) {
        Ok(id) => id,
        Err(e) => {
            // Refused: is it because our own pinned link is attached here?
            if pin.exists() && xdp_link_ifindex(&pin).ok() == Some(index) {
                configure_pinned(dir, iface, &local, sources)?;
                println!("{iface}: decapsulation already attached ({}); lists refreshed: {}", pin.display(), describe(&local, sources));
                return Ok(());
            }
            return Err(anyhow!(
                "attaching to {iface:?} failed: {e}{}",
                if generic {
                    " (another XDP program may be attached)"
                } else {
                    " (another XDP program may be attached; try --generic if the driver lacks native XDP)"
                }
            ));
        }
    };
    let link: FdLink = prog.take_link(id)?.try_into().map_err(|_| anyhow!("no bpf_link for {iface}"))?;
    if pin.exists() {
        let why = match xdp_link_ifindex(&pin) {
            Ok(0) => "its link's interface is gone".to_string(),
            Ok(i) => format!("its link is on interface index {i} (of another namespace or a removed device)"),
            Err(e) => format!("{e:#}"),
        };
        println!("{iface}: replacing the stale decapsulation pin {}: {why}", pin.display());
    }
    remove_pins(dir, iface)?;
    for (name, prefix) in MAPS {
        ebpf.map(name).ok_or_else(|| anyhow!("{name} missing"))?.pin(map_pin(dir, prefix, iface))?;
    }
    link.pin(&pin).with_context(|| format!("pinning {}", pin.display()))?;
    println!("{iface}: decapsulating IPIP and IPv6-in-IPv6 (pinned at {}); {}", pin.display(), describe(&local, sources));
    Ok(())
}

fn remove_pins(dir: &Path, iface: &str) -> Result<()> {
    let pin = link_pin(dir, iface);
    if pin.exists() {
        fs::remove_file(&pin).with_context(|| format!("unpinning {}", pin.display()))?;
    }
    for (_, prefix) in MAPS {
        let _ = fs::remove_file(map_pin(dir, prefix, iface));
    }
    Ok(())
}

pub fn detach(dir: &Path, iface: &str) -> Result<()> {
    if !link_pin(dir, iface).exists() {
        println!("{iface}: no decapsulation attached");
        return Ok(());
    }
    remove_pins(dir, iface)?;
    println!("{iface}: decapsulation detached");
    Ok(())
}

pub fn stats(dir: &Path, iface: &str) -> Result<Vec<(&'static str, u64)>> {
    let path = map_pin(dir, "counters", iface);
    let map = open_pinned(&path).with_context(|| format!("no decapsulation attached to {iface}"))?;
    let slots = map.info()?.max_entries() as usize;
    let map: PerCpuArray<MapData, u64> = PerCpuArray::try_from(Map::PerCpuArray(map))?;
    let mut out = Vec::new();
    // A program attached by an older pop has fewer slots.
    for (i, name) in COUNTERS.iter().enumerate().take(slots) {
        out.push((*name, map.get(&(i as u32), 0)?.iter().sum()));
    }
    Ok(out)
}
