//! VIP addresses on an interface, through rtnetlink.
//!
//! Each call opens its own netlink connection and closes it before returning.
//! That costs one socket per call, which is nothing at the controller's tick
//! rate, and means no long-lived connection state can go stale or die.
//!
//! Postconditions are what the controller reconciles against:
//! after `add_address` returns `Ok`, the address is on the interface with the
//! lifetime asked for (adding again renews it);
//! after `del_address` returns `Ok`, it is not. Both are idempotent.

use std::net::IpAddr;

use anyhow::{Context, Result, bail};
use futures_util::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressMessage, CacheInfo};
use rtnetlink::Handle;

/// Linux's IFNAMSIZ, including the trailing NUL.
const IFNAMSIZ: usize = 16;

/// One rtnetlink connection, driven by a task on the current tokio runtime.
///
/// netlink-proto ends the connection task by itself once both the handle and
/// the unsolicited-message receiver are gone; aborting it on drop as well makes
/// "the socket is closed when the call returns" not hinge on that detail (a
/// leak here would be one socket per tick; the fd test below checks it).
struct Conn {
    handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Conn {
    fn open() -> Result<Self> {
        let (connection, handle, _unsolicited) = rtnetlink::new_connection().context("opening an rtnetlink socket")?;
        let task = tokio::spawn(connection);
        Ok(Self { handle, task })
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The errno of a kernel NACK, as a positive number (e.g. `libc::EEXIST`).
fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| c.get().abs()),
        _ => None,
    }
}

/// Host prefix length for a VIP: a VIP is one address, never a subnet.
fn host_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// The interface's own address in an address message.
///
/// For IPv4 IFA_LOCAL is the local address and IFA_ADDRESS the peer (they
/// differ only on point-to-point links); IPv6 sends only IFA_ADDRESS unless a
/// peer is set. So prefer IFA_LOCAL and fall back to IFA_ADDRESS, as `ip` does.
fn local_address(msg: &AddressMessage) -> Option<IpAddr> {
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(ip) => return Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    address
}

/// The index of the interface called `name`.
pub async fn interface_index(name: &str) -> Result<u32> {
    // The kernel would reject these too, but with a less helpful errno.
    if name.is_empty() || name.len() >= IFNAMSIZ || name.contains(['/', '\0']) {
        bail!("invalid network interface name {name:?}");
    }
    let conn = Conn::open()?;
    let mut links = conn.handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(link.header.index),
        Ok(None) => bail!("network interface {name:?} not found"),
        Err(e) if errno(&e) == Some(libc::ENODEV) => {
            bail!("network interface {name:?} not found")
        }
        Err(e) => Err(e).with_context(|| format!("looking up network interface {name:?}")),
    }
}

/// The id of the XDP program attached to interface `name`, if any; an error if the
/// interface does not exist.
pub async fn xdp_prog_id(name: &str) -> Result<Option<u32>> {
    use netlink_packet_route::link::{LinkAttribute, LinkXdp};
    let conn = Conn::open()?;
    let mut links = conn.handle.link().get().match_name(name.to_string()).execute();
    let link = match links.try_next().await {
        Ok(Some(link)) => link,
        Ok(None) => bail!("network interface {name:?} not found"),
        Err(e) if errno(&e) == Some(libc::ENODEV) => bail!("network interface {name:?} not found"),
        Err(e) => return Err(e).with_context(|| format!("looking up network interface {name:?}")),
    };
    Ok(link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Xdp(x) => x.iter().find_map(|x| match x {
            LinkXdp::ProgId(id) if *id != 0 => Some(*id),
            _ => None,
        }),
        _ => None,
    }))
}

/// Address messages on interface `ifindex`, as the kernel reports them.
async fn address_messages(conn: &Conn, ifindex: u32) -> Result<Vec<AddressMessage>> {
    // A dump of every address, filtered by index on our side (rtnetlink's
    // filter): the kernel's own per-index filtering needs strict checking.
    let msgs: Vec<AddressMessage> = conn
        .handle
        .address()
        .get()
        .set_link_index_filter(ifindex)
        .execute()
        .try_collect()
        .await
        .with_context(|| format!("listing addresses of interface index {ifindex}"))?;
    if msgs.is_empty() {
        // An unknown index would otherwise look like an interface without
        // addresses; say so instead of letting the caller act on a wrong index.
        ensure_link_exists(conn, ifindex).await?;
    }
    Ok(msgs)
}

async fn ensure_link_exists(conn: &Conn, ifindex: u32) -> Result<()> {
    let mut links = conn.handle.link().get().match_index(ifindex).execute();
    match links.try_next().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => bail!("no network interface with index {ifindex}"),
        Err(e) if errno(&e) == Some(libc::ENODEV) => {
            bail!("no network interface with index {ifindex}")
        }
        Err(e) => Err(e).with_context(|| format!("looking up interface index {ifindex}")),
    }
}

/// The addresses on interface `ifindex`, each with its prefix length.
pub async fn addresses(ifindex: u32) -> Result<Vec<(IpAddr, u8)>> {
    let conn = Conn::open()?;
    let msgs = address_messages(&conn, ifindex).await?;
    Ok(msgs.iter().filter_map(|m| local_address(m).map(|ip| (ip, m.header.prefix_len))).collect())
}

/// How long the kernel keeps an address pop put on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Until removed (`valid_lft forever`).
    Forever,
    /// A lease: the kernel removes the address by itself this many seconds after the
    /// last add or renewal (`valid_lft`/`preferred_lft`), so an announcement cannot
    /// outlive the controller that keeps renewing it.
    Secs(u32),
}

impl Lifetime {
    /// The kernel's value for IFA_CACHEINFO's lifetimes (INFINITY_LIFE_TIME is all ones).
    fn kernel_secs(self) -> u32 {
        match self {
            Lifetime::Forever => u32::MAX,
            Lifetime::Secs(s) => s.max(1),
        }
    }
}

/// Put `addr` on interface `ifindex` as a /32 or /128 with `lifetime`, or renew the
/// lifetime of the /32 or /128 already there (NLM_F_REPLACE resets valid_lft and
/// preferred_lft, so calling this again before the lease runs out keeps the address).
///
/// Present at another prefix length is success and left alone: the interface owns the
/// address either way (an operator's subnet address, not pop's to lease), and adding a
/// second entry for it would only leave a duplicate for `del_address` to clean up.
pub async fn add_address(ifindex: u32, addr: IpAddr, lifetime: Lifetime) -> Result<()> {
    let conn = Conn::open()?;
    let prefix = host_prefix(addr);
    let entries = address_messages(&conn, ifindex).await?;
    if entries.iter().any(|m| local_address(m) == Some(addr) && m.header.prefix_len != prefix) {
        log::debug!("{addr} already on interface index {ifindex} at another prefix length");
        return Ok(());
    }
    let mut req = conn.handle.address().add(ifindex, addr, prefix).replace();
    let mut lifetimes = CacheInfo::default();
    lifetimes.ifa_valid = lifetime.kernel_secs();
    lifetimes.ifa_preferred = lifetime.kernel_secs();
    req.message_mut().attributes.push(AddressAttribute::CacheInfo(lifetimes));
    req.execute().await.with_context(|| format!("adding {addr}/{prefix} to interface index {ifindex}"))
}

/// The valid lifetime left of `addr` on interface `ifindex`, in seconds (u32::MAX:
/// forever), or None if it is not there.
pub async fn valid_lifetime(ifindex: u32, addr: IpAddr) -> Result<Option<u32>> {
    let conn = Conn::open()?;
    let msgs = address_messages(&conn, ifindex).await?;
    let Some(m) = msgs.iter().find(|m| local_address(m) == Some(addr)) else { return Ok(None) };
    Ok(Some(
        m.attributes
            .iter()
            .find_map(|a| match a {
                AddressAttribute::CacheInfo(c) => Some(c.ifa_valid),
                _ => None,
            })
            .unwrap_or(u32::MAX),
    ))
}

/// Remove `addr` from interface `ifindex`.
///
/// Removes every entry of the address, whatever its prefix length, so that
/// afterwards the host no longer owns it. Absent is success.
pub async fn del_address(ifindex: u32, addr: IpAddr) -> Result<()> {
    let conn = Conn::open()?;
    let entries: Vec<AddressMessage> = address_messages(&conn, ifindex).await?.into_iter().filter(|m| local_address(m) == Some(addr)).collect();
    for entry in entries {
        let prefix = entry.header.prefix_len;
        // Send only what identifies the entry (family, prefix, index and the
        // addresses), not the dump's cache info and flags.
        let mut req = AddressMessage::default();
        req.header.family = entry.header.family;
        req.header.prefix_len = prefix;
        req.header.index = entry.header.index;
        req.attributes = entry.attributes.into_iter().filter(|a| matches!(a, AddressAttribute::Local(_) | AddressAttribute::Address(_))).collect();
        match conn.handle.address().del(req).execute().await {
            Ok(()) => {}
            // Someone removed it between our dump and our request.
            Err(e) if errno(&e) == Some(libc::EADDRNOTAVAIL) => {}
            Err(e) => {
                return Err(e).with_context(|| format!("removing {addr}/{prefix} from interface index {ifindex}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));
    const V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10));

    /// Run `f` on a thread of its own inside a fresh network namespace, on a
    /// current-thread runtime of its own, so that every socket it opens (and
    /// so every change it makes) is in that namespace and never the host's.
    /// Returns false, having run nothing, when not root.
    fn in_fresh_netns<F, Fut>(f: F) -> bool
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("note: skipping netlink test: needs root to create a network namespace");
            return false;
        }
        std::thread::spawn(move || {
            // A network namespace belongs to the thread (task) that unshares
            // it; this thread is ours alone and ends with the test.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                panic!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
            }
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
            rt.block_on(f());
        })
        .join()
        .expect("netns test thread panicked");
        true
    }

    async fn lo_up() -> u32 {
        let lo = interface_index("lo").await.expect("lo index");
        let conn = Conn::open().unwrap();
        conn.handle.link().set(rtnetlink::LinkUnspec::new_with_index(lo).up().build()).execute().await.expect("bringing lo up");
        lo
    }

    fn count(list: &[(IpAddr, u8)], addr: IpAddr) -> usize {
        list.iter().filter(|(a, _)| *a == addr).count()
    }

    #[test]
    fn vip_add_list_delete_in_netns() {
        in_fresh_netns(|| async {
            let lo = lo_up().await;

            let before = addresses(lo).await.unwrap();
            assert_eq!(count(&before, V4), 0, "fresh namespace: {before:?}");
            assert_eq!(count(&before, V6), 0, "fresh namespace: {before:?}");

            add_address(lo, V4, Lifetime::Forever).await.unwrap();
            add_address(lo, V6, Lifetime::Forever).await.unwrap();
            let list = addresses(lo).await.unwrap();
            assert!(list.contains(&(V4, 32)), "{list:?}");
            assert!(list.contains(&(V6, 128)), "{list:?}");

            // Idempotent: no error, no duplicate entry.
            add_address(lo, V4, Lifetime::Forever).await.unwrap();
            add_address(lo, V6, Lifetime::Forever).await.unwrap();
            let list = addresses(lo).await.unwrap();
            assert_eq!(count(&list, V4), 1, "{list:?}");
            assert_eq!(count(&list, V6), 1, "{list:?}");

            del_address(lo, V4).await.unwrap();
            del_address(lo, V6).await.unwrap();
            let list = addresses(lo).await.unwrap();
            assert_eq!(count(&list, V4), 0, "{list:?}");
            assert_eq!(count(&list, V6), 0, "{list:?}");
            // lo's own addresses are untouched.
            assert!(list.contains(&(IpAddr::V4(Ipv4Addr::LOCALHOST), 8)), "{list:?}");

            // Idempotent: deleting an absent address is fine.
            del_address(lo, V4).await.unwrap();
            del_address(lo, V6).await.unwrap();
        });
    }

    #[test]
    fn existing_address_at_another_prefix_counts_as_present() {
        in_fresh_netns(|| async {
            let lo = lo_up().await;
            let addr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
            let conn = Conn::open().unwrap();
            conn.handle.address().add(lo, addr, 24).execute().await.unwrap();

            add_address(lo, addr, Lifetime::Secs(5)).await.unwrap();
            let list = addresses(lo).await.unwrap();
            assert_eq!(count(&list, addr), 1, "{list:?}");
            assert!(list.contains(&(addr, 24)), "{list:?}");
            assert_eq!(valid_lifetime(lo, addr).await.unwrap(), Some(u32::MAX), "the operator's address keeps its lifetime");

            del_address(lo, addr).await.unwrap();
            assert_eq!(count(&addresses(lo).await.unwrap(), addr), 0);
        });
    }

    #[test]
    fn a_lease_is_renewed_by_adding_again_and_lapses_without_renewal() {
        in_fresh_netns(|| async {
            let lo = lo_up().await;
            add_address(lo, V4, Lifetime::Secs(60)).await.unwrap();
            add_address(lo, V6, Lifetime::Secs(60)).await.unwrap();
            for vip in [V4, V6] {
                let left = valid_lifetime(lo, vip).await.unwrap().expect("leased address present");
                assert!((50..=60).contains(&left), "{vip}: {left} s left of a 60 s lease");
                // Renewing replaces the lifetime (no second entry): longer now.
                add_address(lo, vip, Lifetime::Secs(600)).await.unwrap();
                let left = valid_lifetime(lo, vip).await.unwrap().unwrap();
                assert!((590..=600).contains(&left), "{vip}: {left} s left after renewing for 600 s");
                add_address(lo, vip, Lifetime::Forever).await.unwrap();
                assert_eq!(valid_lifetime(lo, vip).await.unwrap(), Some(u32::MAX));
                assert_eq!(count(&addresses(lo).await.unwrap(), vip), 1);
            }

            // A 1 s lease nobody renews: the kernel removes the address by itself
            // (its lifetime check runs at most ~1 s late).
            add_address(lo, V4, Lifetime::Secs(1)).await.unwrap();
            add_address(lo, V6, Lifetime::Secs(1)).await.unwrap();
            let added = std::time::Instant::now();
            loop {
                let list = addresses(lo).await.unwrap();
                if count(&list, V4) == 0 && count(&list, V6) == 0 {
                    break;
                }
                assert!(added.elapsed() < std::time::Duration::from_secs(4), "a 1 s lease still there after 4 s: {list:?}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            assert!(added.elapsed() >= std::time::Duration::from_millis(900), "lapsed early: {:?}", added.elapsed());
        });
    }

    #[test]
    fn errors_name_the_interface() {
        in_fresh_netns(|| async {
            let err = interface_index("nosuchif0").await.unwrap_err();
            assert!(format!("{err:#}").contains("\"nosuchif0\" not found"), "{err:#}");
            let err = interface_index("a-name-far-too-long").await.unwrap_err();
            assert!(format!("{err:#}").contains("a-name-far-too-long"), "{err:#}");

            // No interface has index 4242 in a fresh namespace (only lo, 1).
            let err = addresses(4242).await.unwrap_err();
            assert!(format!("{err:#}").contains("index 4242"), "{err:#}");
            let err = add_address(4242, V4, Lifetime::Forever).await.unwrap_err();
            assert!(format!("{err:#}").contains("index 4242"), "{err:#}");
            let err = del_address(4242, V6).await.unwrap_err();
            assert!(format!("{err:#}").contains("index 4242"), "{err:#}");
        });
    }

    #[test]
    fn connections_are_closed_after_each_call() {
        in_fresh_netns(|| async {
            let lo = lo_up().await;
            let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
            let _ = addresses(lo).await.unwrap();
            // Let aborted connection tasks be dropped before counting.
            tokio::task::yield_now().await;
            let before = fds();
            for _ in 0..50 {
                addresses(lo).await.unwrap();
                add_address(lo, V4, Lifetime::Forever).await.unwrap();
                del_address(lo, V4).await.unwrap();
            }
            tokio::task::yield_now().await;
            let after = fds();
            // Other tests' threads open files too, so allow some slack; a
            // leak here would be 150 sockets.
            assert!(after < before + 20, "fds grew from {before} to {after}");
        });
    }
}
