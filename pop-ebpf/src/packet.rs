//! Checked packet access: direct reads at offsets the verifier can bound, and copies
//! through bpf_xdp_load_bytes / bpf_xdp_store_bytes at offsets computed from packet
//! contents (which direct access cannot follow). Every handler's packet copies go
//! through here.

use core::mem::size_of;

use aya_ebpf::{
    helpers::{bpf_xdp_load_bytes, bpf_xdp_store_bytes},
    programs::XdpContext,
};

/// Returns a pointer to a `T` at `offset` bytes into the packet, if it fits.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

#[inline(always)]
pub fn be16_at(ctx: &XdpContext, offset: usize) -> Option<u16> {
    let p = ptr_at::<[u8; 2]>(ctx, offset)?;
    Some(u16::from_be_bytes(unsafe { *p }))
}

/// Reads a `T` (a byte array) at a variable packet offset. Not zeroed first: the
/// helper writes every byte or fails.
#[inline(always)]
pub fn load<T: Copy>(ctx: &XdpContext, offset: usize) -> Option<T> {
    let mut v = core::mem::MaybeUninit::<T>::uninit();
    let r = unsafe { bpf_xdp_load_bytes(ctx.ctx, offset as u32, v.as_mut_ptr() as *mut _, size_of::<T>() as u32) };
    // SAFETY: on success the helper wrote all size_of::<T>() bytes.
    if r == 0 { Some(unsafe { v.assume_init() }) } else { None }
}

/// Copies `len` packet bytes at `offset` to `to` (bpf_xdp_load_bytes, which checks the
/// range against the frame): 0 on success, as the helper.
#[inline(always)]
pub fn load_bytes(ctx: &XdpContext, offset: u32, to: *mut core::ffi::c_void, len: u32) -> i64 {
    // SAFETY: the helper writes at most `len` bytes to `to`; callers pass buffers that size.
    unsafe { bpf_xdp_load_bytes(ctx.ctx, offset, to, len) }
}

/// Writes `len` bytes from `from` into the packet at `offset` (bpf_xdp_store_bytes,
/// range-checked by the helper): 0 on success, as the helper.
#[inline(always)]
pub fn store_bytes(ctx: &XdpContext, offset: u32, from: *mut core::ffi::c_void, len: u32) -> i64 {
    // SAFETY: the helper reads `len` bytes from `from`; callers pass buffers that size.
    unsafe { bpf_xdp_store_bytes(ctx.ctx, offset, from, len) }
}
