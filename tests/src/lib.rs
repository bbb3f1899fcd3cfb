//! The namespace lab: hosts are network namespaces, links are veth pairs, and every
//! process (clients, servers, BGP daemons, `pop` itself) runs inside one of them.
//! Shared by the integration tests, `cargo xtask demo` and `cargo xtask bench`.
//!
//! - Names are unique per lab (`pl<pid>-<seq>-<host>`), so tests run in parallel.
//! - Dropping a [`Lab`] (also while a test panics) stops its processes, deletes its
//!   namespaces (which removes their veths and XDP attachments) and its bpffs pins.
//! - [`sweep_stale`] removes what a killed run left behind: only names with the lab's
//!   own prefix whose creating process is gone.
//! - Commands enter a namespace with `nsenter --net`, which keeps the mount namespace:
//!   `ip netns exec` would remount /sys and hide bpffs from `pop`.
//! - Waiting is always polling with a deadline ([`wait_until`]); never fixed sleeps.

pub mod anycast_lab;
pub mod frames;
pub mod testrun;
mod xdp_pass;

use std::{
    fmt, fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};

const PREFIX: &str = "pl";
const NETNS_DIR: &str = "/run/netns";
const BPFFS: &str = "/sys/fs/bpf";
static SEQ: AtomicU32 = AtomicU32::new(0);

/// Polls `f` until it returns `Some`, or fails after `timeout` naming `what`.
pub fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// The `pop` binary under test: `$POP_BIN`, else next to the running test binary.
pub fn pop_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("POP_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    for dir in exe.ancestors().skip(1) {
        let candidate = dir.join("pop");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("cannot find the pop binary near {}; run `cargo build -p pop-userspace` or set POP_BIN", exe.display());
}

/// (map name, bytes the kernel charges for it) of every map pinned in `dir`, by name.
pub fn pinned_map_memory(dir: &Path) -> Result<Vec<(String, u64)>> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    let mut out = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(dir)?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = std::ffi::CString::new(e.path().to_string_lossy().as_bytes())?;
        let mut attr = [0u8; 128];
        attr[..8].copy_from_slice(&(path.as_ptr() as u64).to_ne_bytes());
        let fd = unsafe {
            libc::syscall(libc::SYS_bpf, 7 /* BPF_OBJ_GET */, attr.as_mut_ptr(), 128u32)
        };
        if fd < 0 {
            continue;
        }
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))?;
        let bytes = info.lines().find_map(|l| l.strip_prefix("memlock:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        out.push((e.file_name().to_string_lossy().into_owned(), bytes));
    }
    Ok(out)
}

/// Address of name `n<i>` in [`big_zone_text`]: unique per name, inside 2001:db8::/32.
pub fn big_zone_address(i: usize) -> std::net::Ipv6Addr {
    std::net::Ipv6Addr::new(0x2001, 0xdb8, (i >> 16) as u16, 0, 0, 0, 0, i as u16)
}

/// Zone `big.example.` with `names` names `n0`..`n<names-1>`, one AAAA each (plus SOA,
/// NS and the name server's A): the scale test's and the bench's large zone.
pub fn big_zone_text(names: usize) -> String {
    use std::fmt::Write as _;
    let mut z = String::with_capacity(names * 40 + 256);
    z.push_str("$ORIGIN big.example.\n$TTL 3600\n@ SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ NS ns1\nns1 A 192.0.2.53\n");
    for i in 0..names {
        writeln!(z, "n{i} AAAA {}", big_zone_address(i)).unwrap();
    }
    z
}

/// (VmHWM, VmRSS) of process `pid` in KiB: its peak and current resident memory.
pub fn process_memory_kib(pid: u32) -> Result<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

/// Makes sure bpffs is mounted at /sys/fs/bpf.
pub fn ensure_bpffs() -> Result<()> {
    let mounts = fs::read_to_string("/proc/self/mounts")?;
    if mounts.lines().any(|l| l.split(' ').nth(1) == Some(BPFFS) && l.split(' ').nth(2) == Some("bpf")) {
        return Ok(());
    }
    run(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))?;
    Ok(())
}

/// Removes namespaces and bpffs directories left by lab processes that no longer run.
pub fn sweep_stale() -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let dead = |name: &str| -> bool {
        let Some(rest) = name.strip_prefix(PREFIX) else { return false };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { return false };
        !Path::new(&format!("/proc/{pid}")).exists()
    };
    if let Ok(dir) = fs::read_dir(NETNS_DIR) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if dead(&name) {
                kill_netns_processes(&name);
                let _ = Command::new("ip").args(["netns", "del", &name]).status();
                removed.push(name);
            }
        }
    }
    if let Ok(dir) = fs::read_dir(BPFFS) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if dead(&name) {
                let _ = fs::remove_dir_all(e.path());
                removed.push(format!("{BPFFS}/{name}"));
            }
        }
    }
    if let Ok(dir) = fs::read_dir(std::env::temp_dir()) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if dead(&name) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(removed)
}

fn kill_netns_processes(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// Runs a command to completion; fails with its output if it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({}):\n{}{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(out)
}

/// A host: one network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// The short name given by the test ("client", "pop").
    pub name: String,
    /// The namespace's name under /run/netns.
    pub netns: String,
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl Host {
    /// A `Command` for `program` inside this host's network namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={NETNS_DIR}/{}", self.netns)).arg("--").arg(program);
        c
    }

    /// Runs `argv` here; fails with its output on a non-zero exit.
    pub fn run(&self, argv: &[&str]) -> Result<Output> {
        run(self.command(argv[0]).args(&argv[1..]))
    }

    /// Runs `argv` here and returns its stdout as text.
    pub fn stdout(&self, argv: &[&str]) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.run(argv)?.stdout).into_owned())
    }

    /// Runs a shell command line here.
    pub fn sh(&self, script: &str) -> Result<String> {
        self.stdout(&["sh", "-c", script])
    }

    /// Runs `argv` here and returns its output whatever the exit status.
    pub fn output(&self, argv: &[&str]) -> Result<Output> {
        let mut c = self.command(argv[0]);
        c.args(&argv[1..]).stdin(Stdio::null());
        c.output().with_context(|| format!("spawning {argv:?} in {}", self.name))
    }

    /// Runs `f` on a thread that has entered this host's network namespace (sockets it
    /// opens live there), and returns its result.
    pub fn in_netns<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        use std::os::fd::AsRawFd as _;
        let ns = fs::File::open(format!("{NETNS_DIR}/{}", self.netns))?;
        std::thread::spawn(move || {
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(anyhow!("setns: {}", std::io::Error::last_os_error()));
            }
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow!("thread in {} panicked", self.name))?
    }

    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.run(&["sysctl", "-qw", &format!("{key}={value}")]).map(|_| ())
    }

    /// The id of the XDP program attached to `iface`, if any.
    pub fn xdp_prog_id(&self, iface: &str) -> Result<Option<u32>> {
        let out = self.stdout(&["ip", "-d", "-j", "link", "show", "dev", iface])?;
        let v: serde_json::Value = serde_json::from_str(&out)?;
        Ok(v[0]["xdp"]["prog"]["id"].as_u64().map(|id| id as u32))
    }

    /// A counter of the kernel's SNMP MIB here (`/proc/net/snmp`), e.g. ("Icmp", "OutEchos").
    pub fn snmp(&self, group: &str, field: &str) -> Result<u64> {
        let text = self.stdout(&["cat", "/proc/net/snmp"])?;
        let mut lines = text.lines().filter(|l| l.starts_with(&format!("{group}:")));
        let (names, values) = (lines.next(), lines.next());
        let (Some(names), Some(values)) = (names, values) else { bail!("no {group} in /proc/net/snmp") };
        let i = names.split_whitespace().position(|n| n == field).ok_or_else(|| anyhow!("no {group}:{field} in /proc/net/snmp"))?;
        Ok(values.split_whitespace().nth(i).unwrap_or("0").parse()?)
    }
}

/// A process started in a host; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Daemon {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Everything the process wrote to stdout and stderr so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` and waits (with a deadline) for the process to exit.
    pub fn stop_with(&mut self, signal: i32, timeout: Duration) -> Result<std::process::ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let child = &mut self.child;
        match wait_until(timeout, "process exit", || child.try_wait().ok().flatten()) {
            Ok(s) => Ok(s),
            Err(_) => {
                let _ = child.kill();
                let s = child.wait()?;
                bail!("{} ignored signal {signal} for {timeout:?}; killed ({s})", self.name)
            }
        }
    }

    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        self.stop_with(libc::SIGTERM, Duration::from_secs(5))
    }

    /// Waits until the log contains `needle`; fails early if the process exits.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log_text().contains(needle) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited ({status}) before logging {needle:?}:\n{}", self.name, self.log_text());
            }
            if Instant::now() >= deadline {
                bail!("{} did not log {needle:?} within {timeout:?}:\n{}", self.name, self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A set of hosts and links that exists until dropped.
pub struct Lab {
    /// Unique prefix of every name this lab creates.
    pub id: String,
    /// Scratch directory for configs and logs (removed on drop).
    pub dir: PathBuf,
    hosts: Vec<Host>,
    daemons: Vec<Daemon>,
}

impl Lab {
    /// A new, empty lab. Sweeps stale labs and mounts bpffs first.
    pub fn new() -> Result<Lab> {
        if unsafe { libc::geteuid() } != 0 {
            bail!("the namespace lab needs root (network namespaces, XDP)");
        }
        ensure_bpffs()?;
        sweep_stale()?;
        let id = format!("{PREFIX}{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let dir = std::env::temp_dir().join(&id);
        fs::create_dir_all(&dir)?;
        Ok(Lab { id, dir, hosts: Vec::new(), daemons: Vec::new() })
    }

    /// Creates a host (a namespace with `lo` up and IPv6 router solicitations off so the
    /// links carry only the traffic a test sends, besides neighbour discovery).
    pub fn host(&mut self, name: &str) -> Result<Host> {
        let host = Host { name: name.into(), netns: format!("{}-{name}", self.id) };
        run(Command::new("ip").args(["netns", "add", &host.netns]))?;
        self.hosts.push(host.clone());
        host.run(&["ip", "link", "set", "lo", "up"])?;
        host.sysctl("net.ipv6.conf.default.router_solicitations", "0")?;
        host.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
        Ok(host)
    }

    /// A veth pair: `a_if` in `a`, `b_if` in `b`, both up.
    pub fn link(&mut self, a: &Host, a_if: &str, b: &Host, b_if: &str) -> Result<()> {
        run(Command::new("ip").args(["link", "add", "name", a_if, "netns", &a.netns, "type", "veth", "peer", "name", b_if, "netns", &b.netns]))?;
        a.run(&["ip", "link", "set", a_if, "up"])?;
        b.run(&["ip", "link", "set", b_if, "up"])?;
        Ok(())
    }

    /// The most common world: hosts "client" and "pop" joined by c0 <-> p0, with
    /// 192.0.2.1/24 and 2001:db8::1/64 on the client, 192.0.2.2/24 and 2001:db8::2/64
    /// on the PoP. The client's c0 is ready for what the PoP's XDP sends back: XDP_PASS
    /// attached (veth only receives XDP_TX frames with NAPI on the peer) and TX checksum
    /// offload off (so the XDP program sees final checksums).
    pub fn client_and_pop(&mut self) -> Result<(Host, Host)> {
        let client = self.host("client")?;
        let pop = self.host("pop")?;
        self.link(&client, "c0", &pop, "p0")?;
        self.addr(&client, "c0", "192.0.2.1/24")?;
        self.addr(&pop, "p0", "192.0.2.2/24")?;
        self.addr(&client, "c0", "2001:db8::1/64")?;
        self.addr(&pop, "p0", "2001:db8::2/64")?;
        self.tx_checksum_off(&client, "c0")?;
        self.xdp_pass(&client, "c0")?;
        Ok((client, pop))
    }

    /// Adds an address (`192.0.2.1/24`, `2001:db8::1/64`) to `iface` on `host`.
    pub fn addr(&self, host: &Host, iface: &str, cidr: &str) -> Result<()> {
        let fam = if cidr.contains(':') { "-6" } else { "-4" };
        host.run(&["ip", fam, "addr", "add", cidr, "dev", iface, "nodad"]).map(|_| ())
    }

    /// Adds a route (`ip route add <spec>`).
    pub fn route(&self, host: &Host, spec: &str) -> Result<()> {
        let mut argv = vec!["ip", "route", "add"];
        argv.extend(spec.split_whitespace());
        host.run(&argv).map(|_| ())
    }

    /// Turns off TX checksum offload on `iface`: frames from local sockets then carry a
    /// final L4 checksum, which an XDP program on the other end reads and rewrites.
    pub fn tx_checksum_off(&self, host: &Host, iface: &str) -> Result<()> {
        host.run(&["ethtool", "-K", iface, "tx", "off"]).map(|_| ())
    }

    /// Attaches a trivial XDP_PASS program to `iface`: a veth only receives frames a peer
    /// sends with XDP_TX or redirect if it runs XDP itself (NAPI).
    pub fn xdp_pass(&self, host: &Host, iface: &str) -> Result<()> {
        xdp_pass::attach(&format!("{NETNS_DIR}/{}", host.netns), iface, &self.bpffs_dir().join(format!("pass-{}-{iface}", host.name)))
    }

    /// This lab's bpffs directory (everything under it is removed on drop).
    pub fn bpffs_dir(&self) -> PathBuf {
        let d = Path::new(BPFFS).join(&self.id);
        let _ = fs::create_dir_all(&d);
        d
    }

    /// Where the PoP on `host` (configured by [`Lab::pop_config`]) pins its maps.
    pub fn pop_maps_dir(&self, host_name: &str) -> PathBuf {
        self.bpffs_dir().join(host_name).join(format!("maps-v{}", pop_common::MAP_LAYOUT_VERSION))
    }

    /// Writes a file into the lab's scratch directory and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> Result<PathBuf> {
        let p = self.dir.join(name);
        fs::File::create(&p)?.write_all(contents.as_bytes())?;
        Ok(p)
    }

    /// Starts `argv` in `host`, its output going to `<lab dir>/<name>.log`.
    pub fn spawn(&mut self, host: &Host, name: &str, argv: &[&str]) -> Result<&mut Daemon> {
        let log = self.dir.join(format!("{name}.log"));
        let out = fs::File::create(&log)?;
        let child = host
            .command(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {argv:?} in {host}"))?;
        self.daemons.push(Daemon { name: name.into(), child, log });
        Ok(self.daemons.last_mut().unwrap())
    }

    /// The daemon started under `name`.
    pub fn daemon(&mut self, name: &str) -> Option<&mut Daemon> {
        self.daemons.iter_mut().find(|d| d.name == name)
    }

    /// The pid of daemon `name`.
    pub fn daemon_pid(&self, name: &str) -> Option<u32> {
        self.daemons.iter().find(|d| d.name == name).map(|d| d.child.id())
    }

    /// The log of daemon `name` so far.
    pub fn daemon_log(&self, name: &str) -> Option<String> {
        self.daemons.iter().find(|d| d.name == name).map(|d| d.log_text())
    }

    /// Stops and forgets the daemon `name`; returns its log.
    pub fn stop_daemon(&mut self, name: &str) -> Result<String> {
        let i = self.daemons.iter().position(|d| d.name == name).ok_or_else(|| anyhow!("no daemon {name}"))?;
        let mut d = self.daemons.remove(i);
        d.stop()?;
        Ok(d.log_text())
    }

    /// A `pop` config for `host` whose pins and run dir belong to this lab; `body` adds
    /// `[[interface]]` and the rest. Returns the config's path.
    pub fn pop_config(&self, host: &Host, body: &str) -> Result<PathBuf> {
        self.pop_config_with(host, "", body)
    }

    /// As [`Lab::pop_config`], with extra `[pop]` keys (`pop_extra`, one per line).
    pub fn pop_config_with(&self, host: &Host, pop_extra: &str, body: &str) -> Result<PathBuf> {
        let text = format!(
            "[pop]\nname = \"{}\"\nbpffs_dir = \"{}\"\nrun_dir = \"{}\"\n{pop_extra}\n{body}",
            host.name,
            self.bpffs_dir().join(&host.name).display(),
            self.dir.join(format!("{}-run", host.name)).display()
        );
        self.write(&format!("{}.toml", host.name), &text)
    }

    /// Starts `pop run -c config` in `host` under the daemon name `name` and waits until
    /// it reports ready.
    pub fn start_pop(&mut self, host: &Host, name: &str, config: &Path) -> Result<&mut Daemon> {
        self.start_pop_within(host, name, config, Duration::from_secs(30))
    }

    /// As [`Lab::start_pop`], allowing `timeout` to get ready (large zones).
    pub fn start_pop_within(&mut self, host: &Host, name: &str, config: &Path, timeout: Duration) -> Result<&mut Daemon> {
        let bin = pop_bin();
        let argv = [bin.to_str().unwrap(), "-c", config.to_str().unwrap(), "run"];
        let d = self.spawn(host, name, &argv)?;
        d.wait_for_log("ready:", timeout)?;
        Ok(d)
    }

    /// Runs a `pop` subcommand in `host` (e.g. `["stats", "--json"]`) and returns its output.
    pub fn pop(&self, host: &Host, config: &Path, args: &[&str]) -> Result<Output> {
        let bin = pop_bin();
        let mut argv = vec![bin.to_str().unwrap(), "-c", config.to_str().unwrap()];
        argv.extend_from_slice(args);
        host.output(&argv)
    }

    /// `pop stats --json --interval 0` as a map from counter name to total.
    pub fn pop_counters(&self, host: &Host, config: &Path) -> Result<std::collections::BTreeMap<String, u64>> {
        let out = self.pop(host, config, &["stats", "--json", "--interval", "0"])?;
        if !out.status.success() {
            bail!("pop stats failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let mut m = std::collections::BTreeMap::new();
        for row in v["counters"].as_array().ok_or_else(|| anyhow!("no counters in pop stats"))? {
            m.insert(row["name"].as_str().unwrap_or_default().to_string(), row["total"].as_u64().unwrap_or(0));
        }
        Ok(m)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Daemons first (they may hold pins), then namespaces (their veths and XDP
        // attachments go with them), then pins and scratch files.
        for mut d in self.daemons.drain(..) {
            let _ = d.stop();
        }
        for h in self.hosts.drain(..) {
            kill_netns_processes(&h.netns);
            let _ = Command::new("ip").args(["netns", "del", &h.netns]).status();
        }
        let _ = fs::remove_dir_all(Path::new(BPFFS).join(&self.id));
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Sends each query to `server` from inside `host` and collects the responses (None on
/// timeout).
pub fn udp_exchange(host: &Host, server: &str, queries: Vec<Vec<u8>>) -> Result<Vec<Option<Vec<u8>>>> {
    let server = std::net::SocketAddr::new(server.parse()?, 53);
    host.in_netns(move || -> Result<Vec<Option<Vec<u8>>>> {
        let bind = if server.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
        let sock = std::net::UdpSocket::bind(bind)?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut out = Vec::new();
        let mut buf = [0u8; 65535];
        for q in queries {
            sock.send_to(&q, server)?;
            loop {
                match sock.recv_from(&mut buf) {
                    Ok((n, _)) if n >= 2 && buf[..2] == q[..2] => {
                        out.push(Some(buf[..n].to_vec()));
                        break;
                    }
                    Ok(_) => continue, // a late answer to an earlier query
                    Err(_) => {
                        out.push(None);
                        break;
                    }
                }
            }
        }
        Ok(out)
    })?
}

/// What `promtool check metrics` says about an exposition (empty when it is clean).
pub fn promtool_check_metrics(text: &str) -> Result<String> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child.stdin.take().unwrap().write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok(if out.status.success() && said.trim().is_empty() { String::new() } else { format!("{said}(exit {})", out.status) })
}
