//! Loading, attaching, pinning and detaching the XDP program.
//!
//! Layout under `pop.bpffs_dir` (say `/sys/fs/bpf/pop`):
//!   prog                      the loaded XDP program
//!   links/<ifname>@<ifindex>  one bpf_link per attached interface
//!   maps-v<N>/<MAP>           every persistent map (counters, tables)
//!
//! A restart loads the new program with the pinned maps re-used (counters survive)
//! and swaps it into each pinned link with `bpf_link_update`: the interface never
//! runs without a program. `detach` unpins everything, which detaches the links.

use std::{
    ffi::CString,
    fs, io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    programs::{
        ProgramError, Xdp,
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpMode as AyaXdpMode},
    },
};
use log::{info, warn};
use pop_common::{MAP_LAYOUT_VERSION, XDP_PROGRAM};

use crate::config::{Config, XdpMode};

/// The XDP object built from `pop-ebpf` by build.rs.
static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pop.bpf.o"));

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// Paths of everything pinned for one PoP.
#[derive(Debug, Clone)]
pub struct Pins {
    pub root: PathBuf,
}

impl Pins {
    pub fn new(root: &Path) -> Pins {
        Pins { root: root.to_path_buf() }
    }
    pub fn program(&self) -> PathBuf {
        self.root.join("prog")
    }
    pub fn links_dir(&self) -> PathBuf {
        self.root.join("links")
    }
    pub fn link(&self, ifname: &str, ifindex: u32) -> PathBuf {
        self.links_dir().join(format!("{ifname}@{ifindex}"))
    }
    pub fn maps_dir(&self) -> PathBuf {
        self.root.join(format!("maps-v{MAP_LAYOUT_VERSION}"))
    }
    pub fn map(&self, name: &str) -> PathBuf {
        self.maps_dir().join(name)
    }

    /// Pinned links as (file name, interface name, ifindex).
    fn pinned_links(&self) -> Vec<(PathBuf, String, u32)> {
        let Ok(dir) = fs::read_dir(self.links_dir()) else { return Vec::new() };
        dir.filter_map(|e| e.ok())
            .filter_map(|e| {
                let file = e.file_name().to_string_lossy().into_owned();
                let (name, index) = file.rsplit_once('@')?;
                Some((e.path(), name.to_string(), index.parse().ok()?))
            })
            .collect()
    }
}

/// Fails with an operator-readable message unless `dir` is (or would be created) on bpffs.
pub fn check_bpffs(dir: &Path) -> Result<()> {
    let mut probe = dir;
    while !probe.exists() {
        probe = probe.parent().ok_or_else(|| anyhow!("{} has no existing parent", dir.display()))?;
    }
    let c = CString::new(probe.as_os_str().as_bytes())?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        bail!("statfs {}: {}", probe.display(), io::Error::last_os_error());
    }
    if st.f_type as i64 != BPF_FS_MAGIC {
        bail!(
            "{} is not on a BPF filesystem ({} is not bpffs), so nothing can be pinned there; \
             mount it with `mount -t bpf bpf /sys/fs/bpf` or set pop.bpffs_dir",
            dir.display(),
            probe.display()
        );
    }
    Ok(())
}

/// Index of interface `name` in the current network namespace, if it exists.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => None,
        i => Some(i),
    }
}

/// The running data path: the loaded object (maps, logger source) and its program.
pub struct DataPath {
    pub ebpf: Ebpf,
    pub pins: Pins,
    /// The kernel's id of the loaded program (what an interface reports while attached).
    pub prog_id: u32,
    /// When the kernel loaded it.
    pub loaded_at: Option<std::time::SystemTime>,
}

/// (map, setting, max entries) of every map whose size comes from the config.
fn map_sizes(pop: &crate::config::PopSection) -> [(&'static str, &'static str, u32); 5] {
    let dns = pop.dns_table_size;
    let [s, m, l] = pop_common::MAP_DNS_TAILS;
    let tails = pop_common::dns_tail_capacity(dns);
    [
        (pop_common::MAP_LB_FLOWS, "pop.flow_table_size", pop.flow_table_size),
        (pop_common::MAP_DNS_TABLE, "pop.dns_table_size", dns),
        (s, "pop.dns_table_size", tails[0]),
        (m, "pop.dns_table_size", tails[1]),
        (l, "pop.dns_table_size", tails[2]),
    ]
}

/// Loads the program, re-using pinned maps, and attaches it to every configured
/// interface. On error, nothing this call attached stays attached.
pub fn attach(config: &Config) -> Result<DataPath> {
    let pins = Pins::new(&config.pop.bpffs_dir);
    check_bpffs(&pins.root)?;

    // Resolve every interface before touching anything.
    let mut targets = Vec::new();
    for iface in &config.interfaces {
        let index =
            ifindex(&iface.name).ok_or_else(|| config.error_at(iface.line, format!("interface {:?} does not exist on this host", iface.name)))?;
        targets.push((iface, index));
    }

    fs::create_dir_all(pins.maps_dir()).with_context(|| format!("creating {}", pins.maps_dir().display()))?;
    fs::create_dir_all(pins.links_dir()).with_context(|| format!("creating {}", pins.links_dir().display()))?;

    // A pinned map is re-used as it is: a size change needs a fresh table.
    let sizes = map_sizes(&config.pop);
    for &(map, setting, wanted) in &sizes {
        let pin = pins.map(map);
        if pin.exists() {
            let pinned = aya::maps::MapData::from_pin(&pin)?.info()?.max_entries();
            if pinned != wanted {
                bail!(
                    "{setting} asks for {wanted} entries in {map} but the pinned map at {} holds {pinned}: \
                     `pop detach` first to start with new tables (established flows are forgotten)",
                    pin.display()
                );
            }
        }
    }
    let mut loader = EbpfLoader::new();
    for &(map, _, wanted) in &sizes {
        loader.map_max_entries(map, wanted);
    }
    let mut ebpf = loader
        .default_map_pin_directory(pins.maps_dir())
        .override_global("AYA_LOG_LEVEL", &config.pop.bpf_log.aya_level(), false)
        .override_global("RTT_SAMPLE", &config.pop.client_rtt_sample, true)
        .override_global("FLOW_TABLE_RATE", &config.pop.flow_table_rate, true)
        .load(XDP_OBJECT)
        .context("loading the XDP object (maps and BTF)")?;
    let program: &mut Xdp = ebpf.program_mut(XDP_PROGRAM).ok_or_else(|| anyhow!("program {XDP_PROGRAM} missing from the object"))?.try_into()?;
    program.load().map_err(verifier_error)?;
    let info = program.info().context("reading the loaded program's id")?;
    let (prog_id, loaded_at) = (info.id(), info.loaded_at());
    // How close the program is to the verifier's limit: what a change to the data path
    // costs in verification shows here first.
    if let Some(n) = info.verified_instruction_count() {
        info!("XDP program {prog_id} verified: {n} instructions processed of the verifier's 1000000");
    }

    let mut newly_attached: Vec<PathBuf> = Vec::new();
    let result = (|| -> Result<()> {
        for (iface, index) in &targets {
            let pin = pins.link(&iface.name, *index);
            if pin.exists() {
                match replace_in_link(program, &pin) {
                    Ok(()) => {
                        info!("{}: program replaced in pinned link {}", iface.name, pin.display());
                        continue;
                    }
                    Err(e) => {
                        warn!("{}: pinned link {} is unusable ({e:#}); attaching afresh", iface.name, pin.display());
                        let _ = fs::remove_file(&pin);
                    }
                }
            }
            let mode = match iface.xdp_mode {
                XdpMode::Native => AyaXdpMode::Driver,
                XdpMode::Generic => AyaXdpMode::Skb,
            };
            let id = program.attach_to_if_index(*index, mode).map_err(|e| {
                let hint = if iface.xdp_mode == XdpMode::Native {
                    " (native mode refused: the driver may lack XDP support or another program \
                     is attached; set xdp_mode = \"generic\" for this interface to run in the \
                     kernel's slower generic path)"
                } else {
                    " (another XDP program may be attached)"
                };
                anyhow!(config.error_at(
                    iface.line,
                    format!(
                        "attaching XDP to {:?} in {} mode failed: {}{hint}",
                        iface.name,
                        match iface.xdp_mode {
                            XdpMode::Native => "native",
                            XdpMode::Generic => "generic",
                        },
                        error_chain(&e)
                    )
                ))
            })?;
            let link: FdLink = program
                .take_link(id)?
                .try_into()
                .map_err(|_| anyhow!("{}: the kernel attached XDP without a bpf_link; cannot pin it", iface.name))?;
            link.pin(&pin).with_context(|| format!("pinning link {}", pin.display()))?;
            newly_attached.push(pin);
            info!("{}: attached in {:?} mode", iface.name, iface.xdp_mode);
        }
        Ok(())
    })();
    if let Err(e) = result {
        for pin in newly_attached {
            let _ = fs::remove_file(pin);
        }
        return Err(e);
    }

    // Interfaces that are pinned but no longer configured are detached: the config is the truth.
    let wanted: Vec<PathBuf> = targets.iter().map(|(i, idx)| pins.link(&i.name, *idx)).collect();
    for (path, name, _) in pins.pinned_links() {
        if !wanted.contains(&path) {
            info!("{name}: no longer configured (or re-created); detaching");
            let _ = fs::remove_file(&path);
        }
    }

    let prog_pin = pins.program();
    let _ = fs::remove_file(&prog_pin);
    program.pin(&prog_pin).with_context(|| format!("pinning program {}", prog_pin.display()))?;
    Ok(DataPath { ebpf, pins, prog_id, loaded_at })
}

/// Swaps `program` into the pinned link at `pin` atomically.
fn replace_in_link(program: &mut Xdp, pin: &Path) -> Result<()> {
    let link: FdLink = PinnedLink::from_pin(pin)?.into();
    let link = XdpLink::try_from(link)?;
    let id = program.attach_to_link(link)?;
    // The pin keeps the link; drop our handle without detaching anything.
    let _ = program.take_link(id)?;
    Ok(())
}

/// Removes everything pinned under `bpffs_dir`; returns the interfaces detached.
pub fn detach(bpffs_dir: &Path) -> Result<Vec<String>> {
    let pins = Pins::new(bpffs_dir);
    if !pins.root.exists() {
        return Ok(Vec::new());
    }
    let mut detached = Vec::new();
    for (path, name, _) in pins.pinned_links() {
        fs::remove_file(&path).with_context(|| format!("unpinning {}", path.display()))?;
        detached.push(name);
    }
    fs::remove_dir_all(&pins.root).with_context(|| format!("removing {}", pins.root.display()))?;
    Ok(detached)
}

fn verifier_error(e: ProgramError) -> anyhow::Error {
    anyhow!("the kernel refused the XDP program: {}", error_chain(&e))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
