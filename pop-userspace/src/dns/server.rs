//! The DNS server: UDP and TCP on every configured address, answering with the
//! current [`Responder`] (swappable at runtime through `ArcSwap`, e.g. on zone reload).
//!
//! Sockets are bound with `IP_FREEBIND`/`IPV6_FREEBIND` so the server can bind an
//! anycast VIP before the address is configured on an interface.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::answer::{Responder, Transport};
use super::zone::{ZoneErrors, ZoneLimits, ZoneSet, load_zone_with};

/// Time a TCP connection gets to deliver a whole query, counted from its opening or the
/// end of the previous answer: trickling bytes or pipelining do not extend it.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Time to hand one answer to the kernel: a client that never reads is closed after it.
const TCP_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Concurrent TCP connections (all listeners of a block); further ones are closed at once.
const MAX_TCP_CONNECTIONS: usize = 512;
/// Concurrent TCP connections one client prefix (/24, /56) may hold: well below the
/// total, so one client (or one spoofing neighbourhood) cannot lock everyone out.
const MAX_TCP_PER_CLIENT: usize = 16;

/// Load every zone file and build a responder. All problems are collected (every bad
/// file, duplicate apexes); on error nothing is built, so the caller keeps serving
/// the previous responder.
pub fn load_responder(zone_paths: &[PathBuf], limits: &ZoneLimits, identity: &str) -> Result<Responder, ZoneErrors> {
    let mut zones = Vec::new();
    let mut errors = Vec::new();
    for path in zone_paths {
        // A secondary zone's stored transfer, or a zone file.
        let loaded = if path.extension().is_some_and(|e| e == "axfr") {
            super::secondary::load_stored(path, limits)
        } else {
            load_zone_with(path, None, limits)
        };
        match loaded {
            Ok(z) => zones.push(z),
            Err(e) => errors.extend(e.0),
        }
    }
    if !errors.is_empty() {
        return Err(ZoneErrors(errors));
    }
    let set = ZoneSet::new(zones)?;
    Ok(Responder::new(Arc::new(set), identity))
}

/// Sockets bound by [`bind_all`], ready for [`serve_bound`]; [`Listeners::watch`]
/// keeps an eye on them for health.
pub struct Listeners(Vec<(SocketAddr, Arc<UdpSocket>, Arc<TcpListener>)>, SocketWatch);

/// Whether a server's sockets are being served: a UDP socket holding a query, or a
/// TCP listener holding a connection in its accept queue, at two checks in a row with
/// nothing read or accepted between them, is stuck (the in-process responder may be
/// fine while the server that uses it is not). Also notes a server whose tasks have
/// all ended.
#[derive(Clone, Default)]
pub struct SocketWatch(Arc<WatchInner>);

enum Watched {
    Udp(Arc<UdpSocket>),
    Tcp(Arc<TcpListener>),
}

impl Watched {
    /// Whether a query (UDP) or a connection (TCP) waits to be taken.
    fn waiting(&self) -> bool {
        use std::os::fd::AsRawFd;
        match self {
            Watched::Udp(sock) => {
                let mut pending: libc::c_int = 0;
                // SAFETY: FIONREAD writes one int; the fd stays open while the Arc lives.
                unsafe { libc::ioctl(sock.as_raw_fd(), libc::FIONREAD, &mut pending) == 0 && pending > 0 }
            }
            Watched::Tcp(listener) => {
                // For a listener, Linux reports the accept queue's length as tcpi_unacked.
                let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
                let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
                // SAFETY: getsockopt writes at most `len` bytes into `info`.
                let rc = unsafe {
                    libc::getsockopt(listener.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, &mut info as *mut _ as *mut libc::c_void, &mut len)
                };
                rc == 0 && info.tcpi_unacked > 0
            }
        }
    }
}

#[derive(Default)]
struct WatchInner {
    /// Per socket: its address, the socket, and the queries read (UDP) or connections
    /// accepted (TCP) so far.
    sockets: Vec<(SocketAddr, Watched, AtomicU64)>,
    /// Per socket at the last check: something was waiting, and the count by then.
    last: Mutex<Vec<(bool, u64)>>,
    stopped: std::sync::atomic::AtomicBool,
}

impl SocketWatch {
    /// Watches `sockets`: UDP socket `i` is entry `2 * i`, its TCP listener `2 * i + 1`.
    fn new(sockets: &[(SocketAddr, Arc<UdpSocket>, Arc<TcpListener>)]) -> SocketWatch {
        let watched: Vec<_> = sockets
            .iter()
            .flat_map(|(a, u, t)| [(*a, Watched::Udp(u.clone()), AtomicU64::new(0)), (*a, Watched::Tcp(t.clone()), AtomicU64::new(0))])
            .collect();
        let n = watched.len();
        SocketWatch(Arc::new(WatchInner { sockets: watched, last: Mutex::new(vec![(false, 0); n]), stopped: Default::default() }))
    }

    /// A query read from UDP socket `i`.
    fn read(&self, i: usize) {
        self.0.sockets[2 * i].2.fetch_add(1, Relaxed);
    }

    /// A connection accepted on TCP listener `i`.
    fn accepted(&self, i: usize) {
        self.0.sockets[2 * i + 1].2.fetch_add(1, Relaxed);
    }

    /// Ok while every socket is served; else which is not, for `pop status`.
    pub fn check(&self) -> Result<(), String> {
        if self.0.stopped.load(Relaxed) {
            return Err("the DNS server stopped".into());
        }
        let mut last = self.0.last.lock().unwrap_or_else(|e| e.into_inner());
        let mut stuck = None;
        for (i, (addr, sock, taken)) in self.0.sockets.iter().enumerate() {
            let now = (sock.waiting(), taken.load(Relaxed));
            if now.0 && last[i].0 && last[i].1 == now.1 {
                stuck.get_or_insert(match sock {
                    Watched::Udp(_) => {
                        format!("the DNS server is not reading its UDP socket on {addr} (queries wait, none read since the last check)")
                    }
                    Watched::Tcp(_) => {
                        format!("the DNS server is not accepting TCP connections on {addr} (connections wait, none accepted since the last check)")
                    }
                });
            }
            last[i] = now;
        }
        stuck.map_or(Ok(()), Err)
    }
}

impl Listeners {
    /// The health watch of these sockets (and of the server serving them).
    pub fn watch(&self) -> SocketWatch {
        self.1.clone()
    }
}

/// Debug builds' `pop.fault_inject = "dns-stall"`: a UDP query for `stall.invalid.`
/// makes its server stop reading that socket, and one for `tcpstall.invalid.` makes the
/// TCP listeners stop accepting after their next connection, for the health tests.
pub static FAULT_STALL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static FAULT_TCP_STALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Binds UDP and TCP on every address (call inside the tokio runtime). A failure names
/// the address, and nothing stays bound.
pub fn bind_all(addrs: &[SocketAddr]) -> anyhow::Result<Listeners> {
    let mut sockets = Vec::new();
    for &addr in addrs {
        let udp = bind(addr, Type::DGRAM, Protocol::UDP)
            .and_then(|s| flag_unseen_by_xdp(&s, addr.is_ipv6()).map(|()| s))
            .with_context(|| format!("binding DNS UDP socket on {addr}"))?;
        let udp = UdpSocket::from_std(udp.into()).with_context(|| format!("DNS UDP socket on {addr}"))?;
        let tcp = bind(addr, Type::STREAM, Protocol::TCP)
            .and_then(|s| s.listen(1024).map(|()| s))
            .with_context(|| format!("binding DNS TCP socket on {addr}"))?;
        let tcp = TcpListener::from_std(tcp.into()).with_context(|| format!("DNS TCP socket on {addr}"))?;
        sockets.push((addr, Arc::new(udp), Arc::new(tcp)));
    }
    let watch = SocketWatch::new(&sockets);
    Ok(Listeners(sockets, watch))
}

/// Serve DNS on `addrs` (UDP and TCP each) until `shutdown` becomes true (or its sender
/// is dropped). All sockets are bound before anything is served; a bind failure names
/// the address.
pub async fn serve(responder: Arc<ArcSwap<Responder>>, addrs: Vec<SocketAddr>, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let listeners = bind_all(&addrs)?;
    serve_bound(responder, listeners, shutdown).await;
    Ok(())
}

/// Serves on sockets from [`bind_all`] until shutdown.
pub async fn serve_bound(responder: Arc<ArcSwap<Responder>>, listeners: Listeners, shutdown: watch::Receiver<bool>) {
    let Listeners(sockets, watch) = listeners;
    if sockets.is_empty() {
        // Nothing to serve; still behave like a server task and end on shutdown.
        let mut shutdown = shutdown;
        shutdown_requested(&mut shutdown).await;
        return;
    }
    let limit = TcpLimits::new(MAX_TCP_CONNECTIONS, MAX_TCP_PER_CLIENT);
    let mut tasks = JoinSet::new();
    for (i, (addr, udp, tcp)) in sockets.into_iter().enumerate() {
        log::info!("DNS serving on {addr} (UDP, TCP)");
        tasks.spawn(serve_udp(udp, responder.clone(), watch.clone(), i, shutdown.clone()));
        tasks.spawn(serve_tcp(tcp, responder.clone(), limit.clone(), watch.clone(), i, shutdown.clone()));
    }
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            log::error!("DNS server task failed: {e}");
        }
    }
    watch.0.stopped.store(true, Relaxed);
}

/// A non-blocking socket bound with SO_REUSEADDR and FREEBIND. IPv6 sockets are
/// v6-only so `[::]` and `0.0.0.0` can both be bound.
fn bind(addr: SocketAddr, ty: Type, proto: Protocol) -> std::io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
        sock.set_freebind_v6(true)?;
    } else {
        sock.set_freebind_v4(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    Ok(sock)
}

/// Resolves once shutdown is requested (true) or can no longer be signalled.
async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Asks the kernel to flag datagrams XDP could not rate limit (it passes them before
/// it knows they are DNS): reassembled from IP fragments (a control message with the
/// largest fragment's size, only on those) and, for IPv6, carrying extension headers.
fn flag_unseen_by_xdp(sock: &Socket, v6: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let options: &[(i32, i32)] = if v6 {
        &[
            (libc::IPPROTO_IPV6, libc::IPV6_RECVFRAGSIZE),
            (libc::IPPROTO_IPV6, libc::IPV6_RECVHOPOPTS),
            (libc::IPPROTO_IPV6, libc::IPV6_RECVDSTOPTS),
            (libc::IPPROTO_IPV6, libc::IPV6_RECVRTHDR),
        ]
    } else {
        &[(libc::IPPROTO_IP, libc::IP_RECVFRAGSIZE)]
    };
    let on: libc::c_int = 1;
    for &(level, name) in options {
        // SAFETY: a valid socket and an int option.
        let r = unsafe { libc::setsockopt(sock.as_raw_fd(), level, name, (&raw const on).cast(), size_of::<libc::c_int>() as u32) };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// One datagram into `buf`: its length, its sender, and, if XDP could not have rate
/// limited it, why.
fn recv_query(sock: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr, Option<&'static str>)> {
    use std::os::fd::AsRawFd as _;
    // Room for the control messages asked for (an int, or a short extension header).
    let mut control = [0u64; 64];
    // SAFETY: recvmsg writes at most the lengths given into buffers that outlive it; the
    // control messages are walked with the libc macros within msg_controllen.
    let ((len, unseen), from) = unsafe {
        socket2::SockAddr::try_init(|addr, addr_len| {
            let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = addr.cast();
            msg.msg_namelen = *addr_len;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = size_of_val(&control);
            let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, 0);
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            *addr_len = msg.msg_namelen;
            let mut unseen = None;
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                unseen = unseen.or(match ((*c).cmsg_level, (*c).cmsg_type) {
                    (libc::IPPROTO_IP, libc::IP_RECVFRAGSIZE) | (libc::IPPROTO_IPV6, libc::IPV6_RECVFRAGSIZE) => Some("it came as IP fragments"),
                    (libc::IPPROTO_IPV6, libc::IPV6_HOPOPTS | libc::IPV6_DSTOPTS | libc::IPV6_RTHDR) => Some("it carries IPv6 extension headers"),
                    _ => None,
                });
                c = libc::CMSG_NXTHDR(&msg, c);
            }
            if msg.msg_flags & libc::MSG_CTRUNC != 0 {
                unseen = unseen.or(Some("its IP options do not fit"));
            }
            Ok((n as usize, unseen))
        })?
    };
    let peer = from.as_socket().ok_or_else(|| std::io::Error::other("datagram from a non-IP address"))?;
    Ok((len, peer, unseen))
}

/// Rcodes counted one by one; the rest fall into the last slot.
pub const RCODES: [&str; 7] = ["noerror", "formerr", "servfail", "nxdomain", "notimp", "refused", "other"];

/// Answers the controller's server sent, by transport and rcode, and the datagrams it
/// refused because XDP could not rate limit them: for `pop_dns_responses_total` and
/// `pop_drops_total`. Process-wide, as the servers of every block share one controller.
pub struct ServerStats {
    pub udp: [AtomicU64; RCODES.len()],
    pub tcp: [AtomicU64; RCODES.len()],
    pub unseen_by_xdp: AtomicU64,
}

pub static STATS: ServerStats = ServerStats {
    udp: [const { AtomicU64::new(0) }; RCODES.len()],
    tcp: [const { AtomicU64::new(0) }; RCODES.len()],
    unseen_by_xdp: AtomicU64::new(0),
};

impl ServerStats {
    fn count(&self, transport: Transport, resp: &[u8]) {
        let rcode = resp.get(3).map_or(RCODES.len() - 1, |b| ((b & 0x0f) as usize).min(RCODES.len() - 1));
        let by = if matches!(transport, Transport::Tcp) { &self.tcp } else { &self.udp };
        by[rcode].fetch_add(1, Relaxed);
    }
}

async fn serve_udp(sock: Arc<UdpSocket>, responder: Arc<ArcSwap<Responder>>, watch: SocketWatch, index: usize, mut shutdown: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (len, peer, unseen_by_xdp) = tokio::select! {
            _ = shutdown_requested(&mut shutdown) => return,
            r = sock.async_io(Interest::READABLE, || recv_query(&sock, &mut buf)) => match r {
                Ok(v) => v,
                Err(e) => {
                    // e.g. ICMP errors surfacing on the socket: not fatal.
                    log::debug!("DNS UDP receive error: {e}");
                    continue;
                }
            },
        };
        watch.read(index);
        if cfg!(debug_assertions) && FAULT_STALL.load(Relaxed) && buf[..len].get(12..27) == Some(b"\x05stall\x07invalid\x00") {
            log::warn!("pop.fault_inject = \"dns-stall\": no longer reading the DNS UDP socket");
            std::future::pending::<()>().await;
        }
        if cfg!(debug_assertions) && FAULT_STALL.load(Relaxed) && buf[..len].get(12..30) == Some(b"\x08tcpstall\x07invalid\x00") {
            log::warn!("pop.fault_inject = \"dns-stall\": the DNS TCP listeners stop accepting after their next connection");
            FAULT_TCP_STALLED.store(true, Relaxed);
        }
        if let Some(why) = unseen_by_xdp {
            // Real queries are never fragmented nor carry extension headers; answering
            // them would bypass rate limiting.
            log::debug!("DNS UDP query from {peer} dropped: {why}, so XDP could not rate limit it");
            STATS.unseen_by_xdp.fetch_add(1, Relaxed);
            continue;
        }
        let answer = super::secondary::answer_notify(&buf[..len], peer.ip()).or_else(|| responder.load().respond(&buf[..len], Transport::Udp));
        let Some(resp) = answer else {
            continue;
        };
        STATS.count(Transport::Udp, &resp);
        if let Err(e) = sock.send_to(&resp, peer).await {
            log::debug!("DNS UDP send to {peer} failed: {e}");
        }
    }
}

/// TCP connection limits: a total, and a cap per client prefix below it.
#[derive(Clone)]
struct TcpLimits {
    total: Arc<Semaphore>,
    per_client: usize,
    clients: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// A connection's share of [`TcpLimits`], given back on drop.
struct TcpPermit {
    _total: tokio::sync::OwnedSemaphorePermit,
    client: IpAddr,
    clients: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl TcpLimits {
    fn new(total: usize, per_client: usize) -> TcpLimits {
        TcpLimits { total: Arc::new(Semaphore::new(total)), per_client, clients: Arc::default() }
    }

    /// A permit for a connection from `peer`, or why it is refused.
    fn admit(&self, peer: IpAddr) -> Result<TcpPermit, &'static str> {
        let client = client_prefix(peer);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let held = clients.entry(client).or_insert(0);
        if *held >= self.per_client {
            return Err("too many connections from its prefix");
        }
        let Ok(total) = self.total.clone().try_acquire_owned() else {
            if *held == 0 {
                clients.remove(&client);
            }
            return Err("too many connections");
        };
        *held += 1;
        Ok(TcpPermit { _total: total, client, clients: self.clients.clone() })
    }
}

impl Drop for TcpPermit {
    fn drop(&mut self) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = clients.get_mut(&self.client) {
            *held -= 1;
            if *held == 0 {
                clients.remove(&self.client);
            }
        }
    }
}

/// The prefix a client is counted under: /24 for IPv4 (and v4-mapped), /56 for IPv6,
/// as for UDP rate limiting.
fn client_prefix(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            IpAddr::from([o[0], o[1], o[2], 0])
        }
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[7..].fill(0);
            IpAddr::from(o)
        }
    }
}

async fn serve_tcp(
    listener: Arc<TcpListener>,
    responder: Arc<ArcSwap<Responder>>,
    limits: TcpLimits,
    watch: SocketWatch,
    index: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown_requested(&mut shutdown) => break,
            // Reap finished connections so the set does not grow.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    log::warn!("DNS TCP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        watch.accepted(index);
        if cfg!(debug_assertions) && FAULT_TCP_STALLED.load(Relaxed) {
            log::warn!("pop.fault_inject = \"dns-stall\": no longer accepting DNS TCP connections");
            let _held = &stream;
            std::future::pending::<()>().await;
        }
        let permit = match limits.admit(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                log::debug!("DNS TCP connection from {peer} refused: {why}");
                continue; // dropping the stream closes it
            }
        };
        let responder = responder.clone();
        let mut shutdown = shutdown.clone();
        conns.spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = shutdown_requested(&mut shutdown) => {}
                r = tcp_connection(stream, &responder) => {
                    if let Err(e) = r {
                        log::debug!("DNS TCP connection from {peer}: {e}");
                    }
                }
            }
        });
    }
    conns.shutdown().await;
}

/// Length-prefixed queries until EOF, an error, TCP_IDLE without a whole query, or an
/// answer the client does not take within TCP_WRITE_TIMEOUT.
async fn tcp_connection(mut stream: TcpStream, responder: &ArcSwap<Responder>) -> std::io::Result<()> {
    let mut buf = vec![0u8; 65535];
    loop {
        // One deadline for the whole query (length and message).
        let query = tokio::time::timeout(TCP_IDLE, async {
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await?;
            let len = u16::from_be_bytes(len) as usize;
            stream.read_exact(&mut buf[..len]).await.map(|_| len)
        });
        let len = match query.await {
            Err(_) => return Ok(()), // idle
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(r) => r?,
        };
        // Primaries may send NOTIFY over TCP (Knot does).
        let peer = stream.peer_addr()?.ip();
        let answer = super::secondary::answer_notify(&buf[..len], peer).or_else(|| responder.load().respond(&buf[..len], Transport::Tcp));
        let Some(resp) = answer else {
            continue;
        };
        STATS.count(Transport::Tcp, &resp);
        let mut framed = Vec::with_capacity(resp.len() + 2);
        framed.extend_from_slice(&(resp.len() as u16).to_be_bytes());
        framed.extend_from_slice(&resp);
        match tokio::time::timeout(TCP_WRITE_TIMEOUT, stream.write_all(&framed)).await {
            Err(_) => {
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "client does not read its answers"));
            }
            Ok(r) => r?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::zone::tests::write_zone;

    const ZONE: &str = "$ORIGIN srv.test.\n@ 60 IN SOA ns hm 1 1 1 1 1\n@ 60 IN NS ns\nns 60 IN A 192.0.2.53\n";

    #[test]
    fn load_responder_lists_every_error() {
        let good = write_zone("srv-good.zone", ZONE);
        let bad1 = write_zone("srv-bad1.zone", "$ORIGIN a.test.\n@ 60 IN SOA ns hm 1 1 1 1 1\n");
        let bad2 = write_zone("srv-bad2.zone", "$ORIGIN b.test.\n@ 60 IN SOA ns hm 1 1 1 1 1\nx 60 IN A 1.2.3\n");
        let e = load_responder(&[good.clone(), bad1.clone(), bad2.clone()], &ZoneLimits::default(), "pop1").unwrap_err();
        assert_eq!(e.0.len(), 2, "{e}");
        assert!(e.to_string().contains("srv-bad1.zone: no NS"), "{e}");
        assert!(e.to_string().contains("srv-bad2.zone:3:"), "{e}");
        let e = load_responder(&[good.clone(), good.clone()], &ZoneLimits::default(), "pop1").unwrap_err();
        assert!(e.to_string().contains("already loaded"), "{e}");
        assert!(load_responder(&[good], &ZoneLimits::default(), "pop1").is_ok());
    }

    #[tokio::test]
    async fn serves_udp_and_tcp() {
        let path = write_zone("srv-serve.zone", ZONE);
        let responder = Arc::new(ArcSwap::from_pointee(load_responder(&[path], &ZoneLimits::default(), "pop1").unwrap()));
        // Find a free port (same on UDP and TCP is likely; retry a few times).
        let mut port = 0;
        let (tx, rx) = watch::channel(false);
        let mut server = None;
        for _ in 0..5 {
            port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let addrs = vec![SocketAddr::from(([127, 0, 0, 1], port))];
            // Bind synchronously first to detect conflicts before spawning.
            if std::net::TcpListener::bind(addrs[0]).is_err() {
                continue;
            }
            server = Some(tokio::spawn(serve(responder.clone(), addrs, rx.clone())));
            break;
        }
        let server = server.expect("a free port");
        tokio::time::sleep(Duration::from_millis(100)).await;

        let query = b"\x12\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x02ns\x03srv\x04test\x00\x00\x01\x00\x01";
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        udp.send_to(query, ("127.0.0.1", port)).await.unwrap();
        let mut buf = [0u8; 512];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), udp.recv_from(&mut buf)).await.unwrap().unwrap();
        assert_eq!(&buf[..2], b"\x12\x34");
        assert_eq!(u16::from_be_bytes([buf[6], buf[7]]), 1, "one answer");
        assert!(n > query.len());

        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        for _ in 0..2 {
            // several queries on one connection
            tcp.write_all(&(query.len() as u16).to_be_bytes()).await.unwrap();
            tcp.write_all(query).await.unwrap();
            let mut len = [0u8; 2];
            tcp.read_exact(&mut len).await.unwrap();
            let mut resp = vec![0u8; u16::from_be_bytes(len) as usize];
            tcp.read_exact(&mut resp).await.unwrap();
            assert_eq!(resp, buf[..n].to_vec());
        }

        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
    }

    #[test]
    fn tcp_limits_cap_each_client_prefix_below_the_total() {
        let limits = TcpLimits::new(5, 2);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a1 = limits.admit(ip("192.0.2.1")).unwrap();
        // Same /24, another host: same client.
        let a2 = limits.admit(ip("192.0.2.200")).unwrap();
        assert!(limits.admit(ip("192.0.2.7")).is_err(), "third from 192.0.2.0/24");
        assert!(limits.admit(ip("::ffff:192.0.2.9")).is_err(), "v4-mapped is the same client");
        // Others are still served, up to the total.
        let b1 = limits.admit(ip("2001:db8:0:1::1")).unwrap();
        assert!(limits.admit(ip("2001:db8:0:1:ffff::1")).is_ok(), "a permit dropped at once is given back");
        let b2 = limits.admit(ip("2001:db8:0:100::1")).unwrap();
        let c1 = limits.admit(ip("198.51.100.1")).unwrap();
        assert_eq!(limits.admit(ip("203.0.113.1")).err(), Some("too many connections"));
        drop(a1);
        assert!(limits.admit(ip("192.0.2.3")).is_ok(), "a closed connection frees its client's share");
        drop((a2, b1, b2, c1));
        assert!(limits.clients.lock().unwrap().is_empty(), "no client left behind");
    }

    #[tokio::test]
    async fn bind_error_names_the_address() {
        let (_tx, rx) = watch::channel(false);
        // A UDP port held by a socket without SO_REUSEADDR cannot be bound again.
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let busy = taken.local_addr().unwrap();
        let empty = Responder::new(Arc::new(ZoneSet::default()), "x");
        let e = serve(Arc::new(ArcSwap::from_pointee(empty)), vec![busy], rx).await.unwrap_err();
        assert!(format!("{e:#}").contains(&busy.to_string()), "{e:#}");
    }
}
