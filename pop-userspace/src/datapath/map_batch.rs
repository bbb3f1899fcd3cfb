//! BPF map batch operations (BPF_MAP_{LOOKUP,UPDATE,DELETE}_BATCH, Linux 5.6+): one
//! syscall per few thousand entries instead of one per entry. aya 0.14 has no wrapper;
//! a million-name zone is millions of entries, where per-entry syscalls cost seconds.

use std::{
    io,
    mem::size_of,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{Pod, maps::MapData};

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// Entries per syscall.
pub const CHUNK: usize = 4096;

/// `union bpf_attr`'s `batch` member.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Runs one batch command; returns how many entries the kernel processed and its error.
fn batch(cmd: libc::c_long, attr: &mut BatchAttr) -> (usize, io::Result<()>) {
    // SAFETY: attr is a valid bpf_attr prefix; its pointers reference live buffers sized
    // for `count` entries, as every caller below guarantees.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut BatchAttr, size_of::<BatchAttr>() as u32) };
    let result = if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) };
    (attr.count as usize, result)
}

fn fd(map: &MapData) -> u32 {
    map.fd().as_fd().as_raw_fd() as u32
}

/// Writes `keys[i] -> values[i]`. On failure returns how many were written (the first
/// ones) with the kernel's error (E2BIG: the map is full).
pub fn update<K: Pod, V: Pod>(map: &MapData, keys: &[K], values: &[V]) -> Result<(), (usize, io::Error)> {
    assert_eq!(keys.len(), values.len());
    let mut done = 0;
    for (k, v) in keys.chunks(CHUNK).zip(values.chunks(CHUNK)) {
        let mut attr = BatchAttr { keys: k.as_ptr() as u64, values: v.as_ptr() as u64, count: k.len() as u32, map_fd: fd(map), ..Default::default() };
        let (n, r) = batch(BPF_MAP_UPDATE_BATCH, &mut attr);
        if let Err(e) = r {
            return Err((done + n, e));
        }
        done += k.len();
    }
    Ok(())
}

/// Deletes `keys` (all present; a missing key is an error).
pub fn delete<K: Pod>(map: &MapData, keys: &[K]) -> io::Result<()> {
    for k in keys.chunks(CHUNK) {
        let mut attr = BatchAttr { keys: k.as_ptr() as u64, count: k.len() as u32, map_fd: fd(map), ..Default::default() };
        batch(BPF_MAP_DELETE_BATCH, &mut attr).1?;
    }
    Ok(())
}

/// Every key of a hash map for which `keep` is true, read a chunk at a time.
pub fn keys_where<K: Pod, V: Pod>(map: &MapData, keep: impl Fn(&K) -> bool) -> io::Result<Vec<K>> {
    let mut out = Vec::new();
    // SAFETY: Pod types are plain data for which all-zero bytes are a valid value.
    let mut keys: Vec<K> = vec![unsafe { std::mem::zeroed() }; CHUNK];
    let mut values: Vec<V> = vec![unsafe { std::mem::zeroed() }; CHUNK];
    // The hash map's batch cursor is a bucket index.
    let mut cursor = 0u32;
    let mut first = true;
    loop {
        let mut next = 0u32;
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { &cursor as *const u32 as u64 },
            out_batch: &mut next as *mut u32 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: fd(map),
            ..Default::default()
        };
        let (n, r) = batch(BPF_MAP_LOOKUP_BATCH, &mut attr);
        out.extend(keys[..n.min(CHUNK)].iter().filter(|k| keep(k)).copied());
        match r {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Err(e) => return Err(e),
        }
        cursor = next;
        first = false;
    }
}
