//! Userspace-only trait impls (feature `user`): aya and bytemuck may read and write
//! these types as plain bytes.

// SAFETY: all of these are repr(C) integers and arrays with no implicit padding.
unsafe impl aya::Pod for crate::Counters {}
unsafe impl aya::Pod for crate::VipKey {}
unsafe impl aya::Pod for crate::VipValue {}
unsafe impl aya::Pod for crate::VipTraffic {}
unsafe impl aya::Pod for crate::VipFilter {}
unsafe impl aya::Pod for crate::NameFilter {}
unsafe impl aya::Pod for crate::DnsKey {}
unsafe impl aya::Pod for crate::DnsAnswer {}
unsafe impl aya::Pod for crate::DnsBlock {}
unsafe impl aya::Pod for crate::DnsTailKey {}
unsafe impl aya::Pod for crate::LbService {}
unsafe impl aya::Pod for crate::HttpKey {}
unsafe impl aya::Pod for crate::HttpResponse {}
unsafe impl aya::Pod for crate::HttpSiteRoutes {}
unsafe impl aya::Pod for crate::LbBackend {}
unsafe impl aya::Pod for crate::FlowKey {}
unsafe impl aya::Pod for crate::FlowValue {}
unsafe impl aya::Pod for crate::LbStats {}
unsafe impl bytemuck::Zeroable for crate::Counters {}
unsafe impl bytemuck::Pod for crate::Counters {}
unsafe impl aya::Pod for crate::RttHist {}
