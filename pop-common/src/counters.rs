//! The per-CPU counter block: one slot per packet path and drop reason.

/// Slots in the per-CPU counter block. Larger than the counters in use so that new
/// counters can be added without changing the map's value size.
pub const COUNTER_SLOTS: usize = 96;

/// One per-CPU block of counters; index with [`Counter`].
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Counters {
    pub slots: [u64; COUNTER_SLOTS],
}

macro_rules! counters {
    ($($variant:ident = $name:literal : $help:literal,)*) => {
        /// Index of each data-path counter in [`Counters::slots`].
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Counter { $($variant,)* }

        impl Counter {
            /// Every counter, in slot order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];
            /// Stable dotted name: `group.what` (used by `pop stats` and Prometheus).
            pub const fn name(self) -> &'static str {
                match self { $(Counter::$variant => $name,)* }
            }
            /// One line an operator can read.
            pub const fn help(self) -> &'static str {
                match self { $(Counter::$variant => $help,)* }
            }
        }
    };
}

counters! {
    RxPackets = "rx.packets": "frames seen by the XDP program",
    RxBytes = "rx.bytes": "bytes of frames seen by the XDP program",
    ActionPass = "action.pass": "frames handed to the kernel stack (XDP_PASS)",
    ActionTx = "action.tx": "frames sent back out of the receiving interface (XDP_TX)",
    ActionRedirect = "action.redirect": "frames redirected to another interface",
    ActionDrop = "action.drop": "frames dropped (XDP_DROP); see drop.*",
    ActionAborted = "action.aborted": "frames aborted by a program error (XDP_ABORTED)",
    L3Ipv4 = "l3.ipv4": "IPv4 packets",
    L3Ipv6 = "l3.ipv6": "IPv6 packets",
    L3Other = "l3.other": "frames that are not IP (ARP, LLDP, ...)",
    L4Tcp = "l4.tcp": "TCP segments",
    L4Udp = "l4.udp": "UDP datagrams",
    L4Icmp = "l4.icmp": "ICMP (IPv4) messages",
    L4Icmpv6 = "l4.icmpv6": "ICMPv6 messages",
    L4Other = "l4.other": "IP packets of another protocol or behind IPv6 extension headers",
    VlanTagged = "vlan.tagged": "frames carrying one or two VLAN tags",
    PassNotIp = "pass.not_ip": "passed: not IPv4/IPv6",
    PassNotVip = "pass.not_vip": "passed: not addressed to a configured VIP and port",
    PassMalformed = "pass.malformed": "passed: headers truncated or invalid, left for the kernel to judge",
    PassFragment = "pass.fragment": "passed: IP fragment, the kernel reassembles it",
    PassVipKernel = "pass.vip_kernel": "passed: VIP traffic served by the kernel stack (the controller's own servers)",
    PassVipNoHandler = "pass.vip_no_handler": "passed: VIP entry whose handler is not in this program",
    PassVlanDepth = "pass.vlan_too_deep": "passed: more than two VLAN tags",
    LbPackets = "lb.packets": "packets to a load-balanced service VIP",
    LbForwardedTx = "lb.forwarded_tx": "encapsulated to a backend and sent back out the receiving interface",
    LbForwardedRedirect = "lb.forwarded_redirect": "encapsulated to a backend and redirected to another interface",
    LbFlowHit = "lb.flow_hit": "packets of a flow found in the connection table",
    LbNewFlow = "lb.new_flow": "flows given a backend by the Maglev table and entered in the connection table",
    LbRehashed = "lb.rehashed": "flows whose backend was removed, down, or its id given to another service, moved to a live backend",
    LbDropNoBackend = "drop.lb_no_backend": "dropped: the service has no live backend",
    LbDropNoRoute = "drop.lb_no_route": "dropped: no route to the backend (fib lookup failed)",
    LbPassNoNeigh = "drop.lb_no_neighbour": "dropped: backend's next hop not resolved yet (ARP/ND); the controller primes it",
    LbDropNoRoom = "drop.lb_encap": "dropped: the frame could not grow for the tunnel header",
    LbTooBig = "lb.icmp_too_big": "answered ICMP fragmentation-needed / packet-too-big: too large once encapsulated",
    LbDropMalformed = "drop.lb_malformed": "dropped: IP length says more than the frame holds",
    LbDropFamily = "drop.lb_family": "dropped: VIP and backend address families differ",
    LbIcmpErrorForwarded = "lb.icmp_error_forwarded": "ICMP errors about a backend's packets to a client (e.g. fragmentation needed), tunnelled to the backend owning the flow",
    VipDropIcmpError = "drop.vip_icmp_error": "dropped: ICMP error toward a VIP that quotes no packet of a load-balanced service or of the kernel's own VIP servers",
    VipPassIcmp = "pass.vip_icmp": "passed: ICMP echo request or IPv6 neighbour discovery to a VIP, for the kernel",
    VipDropUnhandled = "drop.vip_unhandled": "dropped: to a VIP address on a port or protocol no handler takes (the host's own services stay unreachable there)",
    VipDropFragment = "drop.vip_fragment": "dropped: IP fragment to a VIP address (no handler takes fragments; pop.pass_unhandled_vips lets them through)",
    VipPassUnhandled = "pass.vip_unhandled_allowed": "passed: to a VIP on a port or protocol no handler takes, allowed by pop.pass_unhandled_vips",
    HttpSegments = "http.segments": "TCP segments to an HTTP VIP seen by XDP",
    HttpSynAnswered = "http.syn_answered": "SYNs answered with a SYN-ACK carrying a SYN cookie",
    HttpResponses = "http.responses": "requests answered in one segment with the response and FIN",
    HttpBadRequest = "http.bad_request": "answered 400: not GET/HEAD HTTP/1.x, two Hosts, or request line and Host not in the first segment",
    HttpFinAcked = "http.fin_acked": "client FINs before any request (verified) answered with our FIN",
    HttpFinClosed = "http.fin_closed": "client FINs after the answer (verified by the cookie) acknowledged, closing the connection",
    HttpDropBareAck = "drop.http_bare_ack": "dropped: a bare ACK (handshake completion, ACK of our response)",
    HttpDropRst = "drop.http_rst": "dropped: RST to an HTTP VIP",
    HttpDropCookie = "drop.http_bad_cookie": "dropped: segment failing the SYN cookie (forged, or its window expired)",
    HttpDropMalformed = "drop.http_malformed": "dropped: TCP header invalid, or flags no client sends (SYN with ACK/FIN/URG, no ACK)",
    HttpDropNoRoom = "drop.http_no_room": "dropped: the frame could not be resized for the answer",
    HttpDropIpOptions = "drop.http_ip_options": "dropped: IPv4 header with options (never reflected into a reply)",
    HttpDropSmallMss = "drop.http_small_mss": "dropped: SYN with an MSS below 536, too small for one-segment answers",
    DnsQueries = "dns.queries": "UDP datagrams to a DNS VIP seen by XDP",
    DnsAnsweredNoerror = "dns.xdp.noerror": "answered in XDP: NOERROR (answers and NODATA)",
    DnsAnsweredNxdomain = "dns.xdp.nxdomain": "answered in XDP: NXDOMAIN",
    DnsAnsweredOther = "dns.xdp.other_rcode": "answered in XDP: another rcode",
    DnsTruncated = "dns.xdp.truncated": "answered in XDP with TC=1: larger than the client's limit",
    DnsRrlDropped = "dns.rrl.dropped": "dropped by response rate limiting",
    DnsRrlSlipped = "dns.rrl.slipped": "rate limited, answered TC=1 so the client retries over TCP",
    DnsRrlDroppedPassed = "dns.rrl.dropped_passed": "dropped by response rate limiting: a query XDP would have passed to the server",
    DnsDropResponse = "drop.dns_response": "dropped: a DNS response (QR=1) sent to a VIP",
    DnsDropRunt = "drop.dns_runt": "dropped: UDP payload shorter than a DNS header",
    DnsPassDisabled = "dns.pass.fast_path_off": "passed to the server: fast path disabled for this block",
    DnsPassOpcode = "dns.pass.opcode": "passed to the server: opcode is not QUERY, or a zone transfer (AXFR/IXFR)",
    DnsPassCounts = "dns.pass.sections": "passed to the server: not exactly one question, or answer/authority records present",
    DnsPassName = "dns.pass.qname": "passed to the server: question name malformed, compressed or too long",
    DnsPassEdns = "dns.pass.edns": "passed to the server: EDNS version, NSID or a malformed OPT",
    DnsPassTrailing = "dns.pass.trailing": "passed to the server: bytes after the question or an additional record that is not OPT",
    DnsPassUnknown = "dns.pass.not_in_table": "passed to the server: name not in the fast-path table (wildcards, delegations, other zones)",
    DnsPassTableSays = "dns.pass.delegated": "passed to the server: name under a delegation or in a zone with wildcards",
    DnsPassNoRoom = "dns.pass.no_room": "passed to the server: the frame could not be resized for the answer",
    DnsDropTailGone = "drop.dns_tail_gone": "dropped: a reload deleted the answer's bytes between lookup and copy (the client retries)",
    DnsPassIpLength = "dns.pass.ip_length": "passed to the server: the IP header's length disagrees with the UDP length",
    DnsPassIpOptions = "dns.pass.ip_options": "passed to the server: IPv4 options (a reply must not echo them; the kernel's does not)",
    // New counters go last: a slot's meaning never moves under pinned counters.
    HttpDropLater = "drop.http_later_segment": "dropped: the rest of a request already answered from its first segment",
    RttMeasured = "rtt.measured": "client round trips measured in the path (HTTP: SYN-ACK to request; LB: SYN to the handshake's ACK)",
    RttUnrecorded = "rtt.unrecorded": "round trips measured but not recorded: the per-VIP histogram table is full",
    DnsPassSigned = "dns.pass.signed": "passed to the server: DO=1 to a signed zone without a signed answer in the table (denials), or a signed zone's answer over the client's size",
    LbUntracked = "lb.untracked": "packets of new flows given a backend by the Maglev table but not entered in the connection table: over pop.flow_table_rate new flows a second on this CPU (a SYN flood)",
    DnsUnknownName = "dns.unknown_name": "queries whose name the name filter shows has no answers: no table lookup for it (answered from the zone's denial, or passed); a random-subdomain flood",
}

impl Counters {
    pub const ZERO: Counters = Counters { slots: [0; COUNTER_SLOTS] };
}
