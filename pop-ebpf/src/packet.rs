//! Checked packet access: direct reads at offsets the verifier can bound, and copies
//! through bpf_xdp_load_bytes at offsets computed from packet contents (which direct
//! access cannot follow).

use core::mem::size_of;

use aya_ebpf::{helpers::bpf_xdp_load_bytes, programs::XdpContext};

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
