//! Every map the XDP program uses, one purpose line each. Maps declared `pinned` live
//! under the controller's bpffs directory so counters and tables survive a restart.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use pop_common::{Counters, MAX_VIPS, VipKey, VipValue};

/// Per-CPU counter block (one entry): every packet path and drop reason, see `Counter`.
#[map(name = "COUNTERS")]
pub static COUNTERS: PerCpuArray<Counters> = PerCpuArray::pinned(1, 0);

/// (VIP address, port, protocol) -> what to do with it; filled by the controller.
#[map(name = "VIPS")]
pub static VIPS: HashMap<VipKey, VipValue> = HashMap::pinned(MAX_VIPS, 0);
