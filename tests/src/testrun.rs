//! BPF_PROG_TEST_RUN on XDP programs with raw bpf(2) calls: feed a frame to a pinned
//! program (or to a bare XDP_PASS baseline) and get its verdict, output frame and the
//! kernel-measured run time. Used by tests for frames veth cannot carry (VLAN tags:
//! this kernel has no 802.1Q devices) and by the benchmark.

use std::{
    ffi::CString,
    os::fd::{FromRawFd as _, OwnedFd},
    path::Path,
    time::Duration,
};

use anyhow::{Result, anyhow};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_TEST_RUN: libc::c_long = 10;

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;

pub(crate) fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> std::io::Result<i32> {
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len() as u32) };
    if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(r as i32) }
}

pub(crate) fn put32(a: &mut [u8; 128], off: usize, v: u32) {
    a[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

pub(crate) fn put64(a: &mut [u8; 128], off: usize, v: u64) {
    a[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

fn get32(a: &[u8; 128], off: usize) -> u32 {
    u32::from_ne_bytes(a[off..off + 4].try_into().unwrap())
}

/// Opens a program pinned on bpffs (e.g. `<bpffs_dir>/prog` of a running PoP).
pub fn pinned_program(path: &Path) -> Result<OwnedFd> {
    let c = CString::new(path.to_str().ok_or_else(|| anyhow!("bad path"))?)?;
    let mut a = [0u8; 128];
    put64(&mut a, 0, c.as_ptr() as u64);
    let fd = bpf(BPF_OBJ_GET, &mut a).map_err(|e| anyhow!("opening pinned program {}: {e}", path.display()))?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A bare `return XDP_PASS` program: the baseline cost of running any XDP program.
pub fn pass_program() -> Result<OwnedFd> {
    let insns: [u64; 2] = [u64::from_le_bytes([0xb7, 0, 0, 0, 2, 0, 0, 0]), u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0])];
    let license = CString::new("GPL")?;
    let mut a = [0u8; 128];
    put32(&mut a, 0, 6); // BPF_PROG_TYPE_XDP
    put32(&mut a, 4, 2);
    put64(&mut a, 8, insns.as_ptr() as u64);
    put64(&mut a, 16, license.as_ptr() as u64);
    let fd = bpf(BPF_PROG_LOAD, &mut a).map_err(|e| anyhow!("loading XDP_PASS: {e}"))?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What one run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub verdict: u32,
    /// The frame after the program (as it would leave with XDP_TX).
    pub frame: Vec<u8>,
    /// Kernel-measured time per run.
    pub duration: Duration,
}

/// Runs `prog` once on `frame`.
pub fn run(prog: &OwnedFd, frame: &[u8]) -> Result<Outcome> {
    use std::os::fd::AsRawFd as _;
    let mut out = vec![0u8; 4096];
    let mut a = [0u8; 128];
    put32(&mut a, 0, prog.as_raw_fd() as u32);
    put32(&mut a, 8, frame.len() as u32);
    put32(&mut a, 12, out.len() as u32);
    put64(&mut a, 16, frame.as_ptr() as u64);
    put64(&mut a, 24, out.as_mut_ptr() as u64);
    put32(&mut a, 32, 1);
    bpf(BPF_PROG_TEST_RUN, &mut a).map_err(|e| anyhow!("BPF_PROG_TEST_RUN: {e}"))?;
    out.truncate(get32(&a, 12) as usize);
    Ok(Outcome { verdict: get32(&a, 4), frame: out, duration: Duration::from_nanos(get32(&a, 36) as u64) })
}

/// Mean kernel-measured ns per run over `runs` single runs. (Repeating inside the
/// kernel would run the program again on its own output, e.g. on the DNS answer it
/// just wrote, so every run gets a fresh copy of `frame`.)
pub fn mean_ns(prog: &OwnedFd, frame: &[u8], runs: u32) -> Result<f64> {
    let mut total = 0u128;
    for _ in 0..runs {
        total += run(prog, frame)?.duration.as_nanos();
    }
    Ok(total as f64 / runs as f64)
}

/// Internet checksum of `data` (0 when a packet's checksum field is right).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;

/// Opens a map pinned on bpffs (e.g. `<bpffs_dir>/maps-v<N>/LB_FLOWS` of a running PoP).
pub fn pinned_map(path: &Path) -> Result<OwnedFd> {
    pinned_program(path).map_err(|e| anyhow!("opening pinned map: {e}"))
}

/// Detaches the bpf_link pinned at `path` (BPF_LINK_DETACH), as `bpftool link detach`
/// would: the program leaves the interface while the pin and the controller stay.
pub fn detach_pinned_link(path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let link = pinned_program(path).map_err(|e| anyhow!("opening pinned link: {e}"))?;
    let mut a = [0u8; 128];
    put32(&mut a, 0, link.as_raw_fd() as u32);
    const BPF_LINK_DETACH: libc::c_long = 34;
    bpf(BPF_LINK_DETACH, &mut a).map_err(|e| anyhow!("detaching the link {}: {e}", path.display()))?;
    Ok(())
}

/// Writes `value` under `key` (BPF_ANY).
pub fn map_update(map: &OwnedFd, key: &[u8], value: &[u8]) -> Result<()> {
    use std::os::fd::AsRawFd as _;
    let mut a = [0u8; 128];
    put32(&mut a, 0, map.as_raw_fd() as u32);
    put64(&mut a, 8, key.as_ptr() as u64);
    put64(&mut a, 16, value.as_ptr() as u64);
    bpf(BPF_MAP_UPDATE_ELEM, &mut a).map_err(|e| anyhow!("BPF_MAP_UPDATE_ELEM: {e}"))?;
    Ok(())
}

/// The value under `key` (`value_len` bytes; for per-CPU maps, that of every CPU), if any.
pub fn map_lookup(map: &OwnedFd, key: &[u8], value_len: usize) -> Result<Option<Vec<u8>>> {
    use std::os::fd::AsRawFd as _;
    let mut value = vec![0u8; value_len];
    let mut a = [0u8; 128];
    put32(&mut a, 0, map.as_raw_fd() as u32);
    put64(&mut a, 8, key.as_ptr() as u64);
    put64(&mut a, 16, value.as_mut_ptr() as u64);
    match bpf(BPF_MAP_LOOKUP_ELEM, &mut a) {
        Ok(_) => Ok(Some(value)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(anyhow!("BPF_MAP_LOOKUP_ELEM: {e}")),
    }
}

const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// Every (key, value) of a map, as raw bytes (for per-CPU maps: every CPU's value), in
/// the kernel's iteration order. Sizes come from the map's own info.
pub fn map_dump(map: &OwnedFd) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    use std::os::fd::AsRawFd as _;
    // struct bpf_map_info: type, id, key_size, value_size, max_entries, map_flags, ...
    let mut info = [0u8; 96];
    let mut a = [0u8; 128];
    put32(&mut a, 0, map.as_raw_fd() as u32);
    put32(&mut a, 4, info.len() as u32);
    put64(&mut a, 8, info.as_mut_ptr() as u64);
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut a).map_err(|e| anyhow!("BPF_OBJ_GET_INFO_BY_FD: {e}"))?;
    let field = |off: usize| u32::from_ne_bytes(info[off..off + 4].try_into().unwrap()) as usize;
    let (map_type, key_size, value_size) = (field(0), field(8), field(12));
    // BPF_MAP_TYPE_PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH: one 8-byte-aligned value per CPU.
    let per_cpu = matches!(map_type, 5 | 6 | 10);
    let cpus = std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| s.trim().rsplit(['-', ',']).next().and_then(|n| n.parse::<usize>().ok()))
        .map_or(1, |n| n + 1);
    let value_len = if per_cpu { value_size.div_ceil(8) * 8 * cpus } else { value_size };
    let mut out = Vec::new();
    let mut key: Option<Vec<u8>> = None;
    loop {
        let mut next = vec![0u8; key_size];
        let mut a = [0u8; 128];
        put32(&mut a, 0, map.as_raw_fd() as u32);
        put64(&mut a, 8, key.as_ref().map_or(0, |k| k.as_ptr() as u64));
        put64(&mut a, 16, next.as_mut_ptr() as u64);
        match bpf(BPF_MAP_GET_NEXT_KEY, &mut a) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            Err(e) => return Err(anyhow!("BPF_MAP_GET_NEXT_KEY: {e}")),
        }
        if let Some(value) = map_lookup(map, &next, value_len)? {
            out.push((next.clone(), value));
        }
        key = Some(next);
    }
    Ok(out)
}
