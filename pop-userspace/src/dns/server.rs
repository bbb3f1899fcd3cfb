//! The DNS server: UDP and TCP on every configured address, answering with the
//! current [`Responder`] (swappable at runtime through `ArcSwap`, e.g. on zone reload).
//!
//! Sockets are bound with `IP_FREEBIND`/`IPV6_FREEBIND` so the server can bind an
//! anycast VIP before the address is configured on an interface.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::answer::{Responder, Transport};
use super::zone::{ZoneErrors, ZoneLimits, ZoneSet, load_zone_with};

/// Idle time allowed between (and within) queries on a TCP connection.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Concurrent TCP connections (all listeners together); further ones are closed at once.
const MAX_TCP_CONNECTIONS: usize = 512;

/// Load every zone file and build a responder. All problems are collected (every bad
/// file, duplicate apexes); on error nothing is built, so the caller keeps serving
/// the previous responder.
pub fn load_responder(zone_paths: &[PathBuf], limits: &ZoneLimits, identity: &str) -> Result<Responder, ZoneErrors> {
    let mut zones = Vec::new();
    let mut errors = Vec::new();
    for path in zone_paths {
        match load_zone_with(path, None, limits) {
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

/// Sockets bound by [`bind_all`], ready for [`serve_bound`].
pub struct Listeners(Vec<(SocketAddr, UdpSocket, TcpListener)>);

/// Binds UDP and TCP on every address (call inside the tokio runtime). A failure names
/// the address, and nothing stays bound.
pub fn bind_all(addrs: &[SocketAddr]) -> anyhow::Result<Listeners> {
    let mut sockets = Vec::new();
    for &addr in addrs {
        let udp = bind(addr, Type::DGRAM, Protocol::UDP)
            .with_context(|| format!("binding DNS UDP socket on {addr}"))?;
        let udp =
            UdpSocket::from_std(udp.into()).with_context(|| format!("DNS UDP socket on {addr}"))?;
        let tcp = bind(addr, Type::STREAM, Protocol::TCP)
            .and_then(|s| s.listen(1024).map(|()| s))
            .with_context(|| format!("binding DNS TCP socket on {addr}"))?;
        let tcp = TcpListener::from_std(tcp.into())
            .with_context(|| format!("DNS TCP socket on {addr}"))?;
        sockets.push((addr, udp, tcp));
    }
    Ok(Listeners(sockets))
}

/// Serve DNS on `addrs` (UDP and TCP each) until `shutdown` becomes true (or its sender
/// is dropped). All sockets are bound before anything is served; a bind failure names
/// the address.
pub async fn serve(
    responder: Arc<ArcSwap<Responder>>,
    addrs: Vec<SocketAddr>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listeners = bind_all(&addrs)?;
    serve_bound(responder, listeners, shutdown).await;
    Ok(())
}

/// Serves on sockets from [`bind_all`] until shutdown.
pub async fn serve_bound(
    responder: Arc<ArcSwap<Responder>>,
    listeners: Listeners,
    shutdown: watch::Receiver<bool>,
) {
    let sockets = listeners.0;
    if sockets.is_empty() {
        // Nothing to serve; still behave like a server task and end on shutdown.
        let mut shutdown = shutdown;
        shutdown_requested(&mut shutdown).await;
        return;
    }
    let limit = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    let mut tasks = JoinSet::new();
    for (addr, udp, tcp) in sockets {
        log::info!("DNS serving on {addr} (UDP, TCP)");
        tasks.spawn(serve_udp(udp, responder.clone(), shutdown.clone()));
        tasks.spawn(serve_tcp(
            tcp,
            responder.clone(),
            limit.clone(),
            shutdown.clone(),
        ));
    }
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            log::error!("DNS server task failed: {e}");
        }
    }
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

async fn serve_udp(
    sock: UdpSocket,
    responder: Arc<ArcSwap<Responder>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (len, peer) = tokio::select! {
            _ = shutdown_requested(&mut shutdown) => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(e) => {
                    // e.g. ICMP errors surfacing on the socket: not fatal.
                    log::debug!("DNS UDP receive error: {e}");
                    continue;
                }
            },
        };
        let Some(resp) = responder.load().respond(&buf[..len], Transport::Udp) else {
            continue;
        };
        if let Err(e) = sock.send_to(&resp, peer).await {
            log::debug!("DNS UDP send to {peer} failed: {e}");
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    responder: Arc<ArcSwap<Responder>>,
    limit: Arc<Semaphore>,
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
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            log::debug!("DNS TCP connection from {peer} refused: too many connections");
            continue; // dropping the stream closes it
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

/// Length-prefixed queries until EOF, an error, or TCP_IDLE without a full query.
async fn tcp_connection(
    mut stream: TcpStream,
    responder: &ArcSwap<Responder>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 65535];
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Err(_) => return Ok(()), // idle
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(r) => {
                r?;
            }
        }
        let len = u16::from_be_bytes(len) as usize;
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut buf[..len])).await {
            Err(_) => return Ok(()),
            Ok(r) => {
                r?;
            }
        }
        let Some(resp) = responder.load().respond(&buf[..len], Transport::Tcp) else {
            continue;
        };
        let mut framed = Vec::with_capacity(resp.len() + 2);
        framed.extend_from_slice(&(resp.len() as u16).to_be_bytes());
        framed.extend_from_slice(&resp);
        stream.write_all(&framed).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::zone::tests::write_zone;

    const ZONE: &str =
        "$ORIGIN srv.test.\n@ 60 IN SOA ns hm 1 1 1 1 1\n@ 60 IN NS ns\nns 60 IN A 192.0.2.53\n";

    #[test]
    fn load_responder_lists_every_error() {
        let good = write_zone("srv-good.zone", ZONE);
        let bad1 = write_zone(
            "srv-bad1.zone",
            "$ORIGIN a.test.\n@ 60 IN SOA ns hm 1 1 1 1 1\n",
        );
        let bad2 = write_zone(
            "srv-bad2.zone",
            "$ORIGIN b.test.\n@ 60 IN SOA ns hm 1 1 1 1 1\nx 60 IN A 1.2.3\n",
        );
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
        let responder = Arc::new(ArcSwap::from_pointee(
            load_responder(&[path], &ZoneLimits::default(), "pop1").unwrap(),
        ));
        // Find a free port (same on UDP and TCP is likely; retry a few times).
        let mut port = 0;
        let (tx, rx) = watch::channel(false);
        let mut server = None;
        for _ in 0..5 {
            port = std::net::UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
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
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), udp.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..2], b"\x12\x34");
        assert_eq!(u16::from_be_bytes([buf[6], buf[7]]), 1, "one answer");
        assert!(n > query.len());

        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        for _ in 0..2 {
            // several queries on one connection
            tcp.write_all(&(query.len() as u16).to_be_bytes())
                .await
                .unwrap();
            tcp.write_all(query).await.unwrap();
            let mut len = [0u8; 2];
            tcp.read_exact(&mut len).await.unwrap();
            let mut resp = vec![0u8; u16::from_be_bytes(len) as usize];
            tcp.read_exact(&mut resp).await.unwrap();
            assert_eq!(resp, buf[..n].to_vec());
        }

        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn bind_error_names_the_address() {
        let (_tx, rx) = watch::channel(false);
        // A UDP port held by a socket without SO_REUSEADDR cannot be bound again.
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let busy = taken.local_addr().unwrap();
        let empty = Responder::new(Arc::new(ZoneSet::default()), "x");
        let e = serve(Arc::new(ArcSwap::from_pointee(empty)), vec![busy], rx)
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains(&busy.to_string()), "{e:#}");
    }
}
