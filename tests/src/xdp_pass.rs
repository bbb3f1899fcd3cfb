//! A two-instruction XDP_PASS program attached with raw bpf(2) calls, for lab peers
//! that must receive frames sent by XDP_TX or redirect (a veth needs XDP on the
//! receiving side for that). Raw syscalls keep the lab free of an eBPF toolchain.

use std::{ffi::CString, fs::File, os::fd::AsRawFd as _, path::Path};

use anyhow::{Result, anyhow, bail};

use crate::testrun::{bpf, put32, put64};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_FLAGS_DRV_MODE: u32 = 4;

/// Attaches XDP_PASS (native mode) to `iface` inside the namespace at `netns_path` and
/// pins the link at `pin`, so it lives until the pin or the interface goes away.
pub fn attach(netns_path: &str, iface: &str, pin: &Path) -> Result<()> {
    let netns = File::open(netns_path)?;
    let iface = iface.to_string();
    let netns_path = netns_path.to_string();
    let pin = CString::new(pin.to_str().ok_or_else(|| anyhow!("bad pin path"))?)?;
    // setns(2) changes only this thread's namespace, so do it on a thread of its own.
    std::thread::spawn(move || -> Result<()> {
        if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns {netns_path}: {}", std::io::Error::last_os_error());
        }
        let c_iface = CString::new(iface.clone())?;
        let ifindex = unsafe { libc::if_nametoindex(c_iface.as_ptr()) };
        if ifindex == 0 {
            bail!("no interface {iface} in {netns_path}");
        }
        // r0 = XDP_PASS (2); exit
        let insns: [u64; 2] = [u64::from_le_bytes([0xb7, 0, 0, 0, 2, 0, 0, 0]), u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0])];
        let license = CString::new("GPL")?;
        let mut a = [0u8; 128];
        put32(&mut a, 0, BPF_PROG_TYPE_XDP);
        put32(&mut a, 4, insns.len() as u32);
        put64(&mut a, 8, insns.as_ptr() as u64);
        put64(&mut a, 16, license.as_ptr() as u64);
        a[48..57].copy_from_slice(b"lab_pass\0");
        put32(&mut a, 68, BPF_XDP);
        let prog = bpf(BPF_PROG_LOAD, &mut a).map_err(|e| anyhow!("loading XDP_PASS: {e}"))?;
        let mut a = [0u8; 128];
        put32(&mut a, 0, prog as u32);
        put32(&mut a, 4, ifindex);
        put32(&mut a, 8, BPF_XDP);
        put32(&mut a, 12, XDP_FLAGS_DRV_MODE);
        let link = bpf(BPF_LINK_CREATE, &mut a);
        unsafe { libc::close(prog) };
        let link = link.map_err(|e| anyhow!("attaching XDP_PASS to {iface}: {e}"))?;
        let mut a = [0u8; 128];
        put64(&mut a, 0, pin.as_ptr() as u64);
        put32(&mut a, 8, link as u32);
        let pinned = bpf(BPF_OBJ_PIN, &mut a);
        unsafe { libc::close(link) };
        pinned.map_err(|e| anyhow!("pinning the XDP_PASS link: {e}"))?;
        Ok(())
    })
    .join()
    .map_err(|_| anyhow!("xdp_pass thread panicked"))?
}
