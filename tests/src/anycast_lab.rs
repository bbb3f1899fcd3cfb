//! The anycast world, shared by the anycast tests and the demo: a client behind a
//! router running BIRD, and two PoPs (A preferred, B backup) each running `pop` and
//! BIRD, announcing the same VIP, each with its own backend.
//!
//!   client 192.0.2.1 ── router (BIRD, AS 65000) ─┬─ pop-a 198.51.100.2 ── backend-a1 (, a2, ...)
//!                                                 └─ pop-b 198.51.100.10 ── backend-b1 (, b2, ...)
//!
//! Each backend hangs off its PoP on a /29 of its own (198.51.100.16 and up).
//!
//! The VIP 203.0.113.10 carries an HTTP service (port 80, to the PoP's backend) and DNS
//! (port 53, zones from tests/data, answered in XDP). A PoP announces it while its
//! backend passes health checks and its DNS server answers.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result};

use crate::{Host, Lab, wait_until};

pub const VIP: &str = "203.0.113.10";

/// The routing daemon on each PoP that exports the VIPs pop puts on lo to the router
/// (which always runs BIRD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    /// BIRD 2: `protocol direct` on lo.
    Bird,
    /// FRR (zebra and bgpd): `redistribute connected`, filtered to the VIP range.
    Frr,
}

pub struct AnycastLab {
    pub lab: Lab,
    pub client: Host,
    pub router: Host,
    pub pops: Vec<Host>,
    pub backends: Vec<Host>,
    pub configs: Vec<PathBuf>,
    /// The router's BIRD control socket (`birdc -s`).
    pub router_bird: PathBuf,
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data").join(name)
}

impl AnycastLab {
    /// The world with `per_pop` backends behind each PoP, BIRD on every PoP.
    pub fn new(per_pop: usize) -> Result<AnycastLab> {
        Self::with_speaker(per_pop, Speaker::Bird)
    }

    /// The world with `per_pop` backends behind each PoP and `speaker` on every PoP.
    pub fn with_speaker(per_pop: usize, speaker: Speaker) -> Result<AnycastLab> {
        Self::build(per_pop, speaker, false)
    }

    /// As [`AnycastLab::with_speaker`], with BFD between the router and each PoP: the
    /// PoPs' routing daemons run examples/full-pop's bird.conf or frr.conf as shipped,
    /// with the lab's addresses, and the router's BIRD runs BFD (100 ms x 3) toward them.
    pub fn with_bfd(per_pop: usize, speaker: Speaker) -> Result<AnycastLab> {
        Self::build(per_pop, speaker, true)
    }

    fn build(per_pop: usize, speaker: Speaker, bfd: bool) -> Result<AnycastLab> {
        let mut lab = Lab::new()?;
        let client = lab.host("client")?;
        let router = lab.host("router")?;
        lab.link(&client, "c0", &router, "rc")?;
        lab.addr(&client, "c0", "192.0.2.1/24")?;
        lab.addr(&router, "rc", "192.0.2.254/24")?;
        lab.route(&client, "default via 192.0.2.254")?;
        lab.tx_checksum_off(&client, "c0")?;
        router.sysctl("net.ipv4.ip_forward", "1")?;
        router.sysctl("net.ipv4.conf.all.rp_filter", "0")?;
        router.sysctl("net.ipv4.conf.default.rp_filter", "0")?;
        let script = data("backend.py");
        let mut pops = Vec::new();
        let mut backends = Vec::new();
        let mut configs = Vec::new();
        let mut router_bgp = String::new();
        for (i, name) in ["a", "b"].iter().enumerate() {
            let base = 8 * i as u8; // 198.51.100.0/29 and .8/29 uplinks
            let (r_ip, p_ip) = (format!("198.51.100.{}", base + 1), format!("198.51.100.{}", base + 2));
            let pop = lab.host(&format!("pop-{name}"))?;
            lab.link(&router, &format!("r{name}"), &pop, "up0")?;
            lab.addr(&router, &format!("r{name}"), &format!("{r_ip}/29"))?;
            lab.addr(&pop, "up0", &format!("{p_ip}/29"))?;
            // The PoP answers with XDP_TX toward the router: the router's end runs XDP.
            lab.xdp_pass(&router, &format!("r{name}"))?;
            lab.route(&pop, &format!("default via {r_ip}"))?;
            for key in ["net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"] {
                pop.sysctl(key, if key.ends_with("forward") { "1" } else { "0" })?;
            }
            for i in ["up0", "lo"] {
                pop.sysctl(&format!("net.ipv4.conf.{i}.forwarding"), "1")?;
            }
            let mut interfaces = "[[interface]]\nname = \"up0\"\n".to_string();
            let mut members = String::new();
            for j in 0..per_pop {
                let net = 16 + 8 * (per_pop * i + j) as u8;
                let (p_ip2, b_ip) = (format!("198.51.100.{}", net + 1), format!("198.51.100.{}", net + 2));
                let bname = format!("backend-{name}{}", j + 1);
                let backend = lab.host(&bname)?;
                let leg = format!("be{j}");
                lab.link(&pop, &leg, &backend, "e0")?;
                lab.addr(&pop, &leg, &format!("{p_ip2}/29"))?;
                lab.addr(&backend, "e0", &format!("{b_ip}/29"))?;
                lab.route(&backend, &format!("default via {p_ip2}"))?;
                pop.sysctl(&format!("net.ipv4.conf.{leg}.forwarding"), "1")?;
                // Here the backend's replies (from the VIP) return through the PoP, which
                // also holds the VIP on lo while announcing: let it forward packets from
                // an address it owns (in a real PoP backends reply via their own router).
                pop.sysctl(&format!("net.ipv4.conf.{leg}.accept_local"), "1")?;
                interfaces += &format!("[[interface]]\nname = \"{leg}\"\n");
                members += &format!("{{ address = \"{b_ip}\" }}, ");
                // Backend: the VIP on lo, pop decap on e0, a server naming itself.
                lab.addr(&backend, "lo", &format!("{VIP}/32"))?;
                backend.sysctl("net.ipv4.conf.all.rp_filter", "0")?;
                backend.sysctl("net.ipv4.conf.e0.rp_filter", "0")?;
                let decap = lab.bpffs_dir().join(format!("decap-{bname}"));
                let bin = crate::pop_bin();
                backend.run(&[bin.to_str().unwrap(), "decap", "--iface", "e0", "--bpffs-dir", decap.to_str().unwrap()])?;
                lab.spawn(&backend, &bname, &["python3", script.to_str().unwrap(), &bname])?.wait_for_log("ready", Duration::from_secs(10))?;
                backends.push(backend);
            }

            match (speaker, bfd) {
                (Speaker::Bird, false) => start_bird_speaker(&mut lab, &pop, name, &p_ip, &r_ip)?,
                (Speaker::Frr, false) => start_frr_speaker(&mut lab, &pop, name, &p_ip, &r_ip)?,
                (Speaker::Bird, true) => start_example_bird(&mut lab, &pop, name, &p_ip, &r_ip)?,
                (Speaker::Frr, true) => start_example_frr(&mut lab, &pop, name, &p_ip, &r_ip)?,
            }
            // The router prefers A (local preference), so B is the backup.
            router_bgp += &format!(
                "protocol bgp pop_{name} {{\n  local {r_ip} as 65000; neighbor {p_ip} as 65001;\n  hold time 6; connect retry time 1; error wait time 1, 5;{}\n\
                   ipv4 {{ import filter {{ bgp_local_pref = {}; accept; }}; export none; }};\n}}\n",
                if bfd { " bfd on;" } else { "" },
                if i == 0 { 200 } else { 100 }
            );

            // The PoP's name (CH TXT id.server) is its host name: pop-a, pop-b.
            let config = lab.pop_config_with(
                &pop,
                "metrics_listen = \"127.0.0.1:9188\"",
                &format!(
                    "{interfaces}\n\
                     [anycast]\ninterface = \"lo\"\nrise = 2\nfall = 2\nhold_ms = 1000\ncheck_ms = 200\n\n\
                     [[dns]]\nvips = [\"{VIP}\"]\nzones = [\"{}\"]\n\n\
                     [[service]]\nname = \"web\"\nvips = [\"{VIP}\"]\nport = 80\nmin_healthy = 1\n\
                     backends = [{members}]\n\
                     [service.health]\ntype = \"http\"\npath = \"/\"\ninterval_ms = 200\ntimeout_ms = 150\nrise = 2\nfall = 2\n",
                    data("example.com.zone").display()
                ),
            )?;
            lab.start_pop(&pop, &format!("pop-{name}"), &config)?;
            pops.push(pop);
            configs.push(config);
        }
        if bfd {
            router_bgp += "protocol bfd { interface \"r*\" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }\n";
        }
        let bird = lab.write(
            "bird-router.conf",
            &format!(
                "router id 192.0.2.254;\nprotocol device {{ scan time 1; }}\nprotocol kernel {{ ipv4 {{ import none; export all; }}; }}\n{router_bgp}"
            ),
        )?;
        let sock = lab.dir.join("bird-router.ctl");
        let pid = lab.dir.join("bird-router.pid");
        lab.spawn(&router, "bird-router", &["bird", "-f", "-c", bird.to_str().unwrap(), "-s", sock.to_str().unwrap(), "-P", pid.to_str().unwrap()])?;
        Ok(AnycastLab { lab, client, router, pops, backends, configs, router_bird: sock })
    }

    /// Whether the router's BIRD holds a route to the VIP learned from PoP `pop` ("a" or
    /// "b"), best or not: what the BGP peer itself knows, before any kernel table.
    pub fn peer_learned(&self, pop: &str) -> Result<bool> {
        peer_learned(&self.router, &self.router_bird, pop)
    }

    /// Waits until the router's BIRD has learned the VIP from both PoPs. A failover
    /// measured before B's session is up times B's BGP connect, not the failover.
    pub fn wait_both_learned(&self, timeout: Duration) -> Result<()> {
        wait_until(timeout, "the router's BIRD to learn A's and B's routes", || {
            (self.peer_learned("a").ok()? && self.peer_learned("b").ok()?).then_some(())
        })
    }

    /// Which PoP the router sends the VIP to right now ("a", "b" or None).
    pub fn route_to_vip(&self) -> Option<&'static str> {
        let out = self.router.stdout(&["ip", "-4", "route", "show", &format!("{VIP}/32")]).ok()?;
        if out.contains("via 198.51.100.2 ") {
            Some("a")
        } else if out.contains("via 198.51.100.10 ") {
            Some("b")
        } else {
            None
        }
    }

    /// Waits until the router's route to the VIP points at `pop` (or is gone for None).
    pub fn wait_route(&self, pop: Option<&'static str>, timeout: Duration) -> Result<Duration> {
        let started = std::time::Instant::now();
        wait_until(timeout, &format!("the router's route to the VIP to be {pop:?}"), || (self.route_to_vip() == pop).then_some(()))
            .with_context(|| format!("router routes: {}", self.router.stdout(&["ip", "route"]).unwrap_or_default()))?;
        Ok(started.elapsed())
    }

    /// Whether the router's BFD session toward PoP `pop` ("a" or "b") is up.
    pub fn router_bfd_up(&self, pop: &str) -> Result<bool> {
        let p_ip = if pop == "a" { "198.51.100.2" } else { "198.51.100.10" };
        let text = self.router.stdout(&["birdc", "-s", self.router_bird.to_str().unwrap(), "show", "bfd", "sessions"])?;
        Ok(text.lines().any(|l| l.split_whitespace().next() == Some(p_ip) && l.split_whitespace().nth(2) == Some("Up")))
    }

    /// The PoP answering DNS on the VIP (CH TXT id.server), as the client sees it.
    pub fn who_answers(&self) -> Result<String> {
        let out = self.client.stdout(&["dig", "+short", "+tries=1", "+time=1", &format!("@{VIP}"), "id.server", "TXT", "CH"])?;
        Ok(out.trim().trim_matches('"').to_string())
    }

    /// The Prometheus value of `pop_vip_announced` for the VIP on PoP `i`.
    pub fn announced_metric(&self, i: usize) -> Result<Option<u8>> {
        let text = self.pops[i].stdout(&["curl", "-sSf", "http://127.0.0.1:9188/metrics"])?;
        Ok(text.lines().find_map(|l| l.strip_prefix(&format!("pop_vip_announced{{vip=\"{VIP}\"}} "))).and_then(|v| v.trim().parse().ok()))
    }

    /// The backend serving HTTP on the VIP, as the client sees it.
    pub fn who_serves(&self) -> Result<String> {
        Ok(self.client.stdout(&["curl", "-sS", "--max-time", "2", &format!("http://{VIP}/")])?.trim().to_string())
    }
}

/// BIRD on PoP `name`: export /32s of 203.0.113.0/24 present on lo.
fn start_bird_speaker(lab: &mut Lab, pop: &Host, name: &str, p_ip: &str, r_ip: &str) -> Result<()> {
    let bird = lab.write(
        &format!("bird-{name}.conf"),
        &format!(
            "router id {p_ip};\nprotocol device {{ scan time 1; }}\nprotocol direct vip {{ ipv4; interface \"lo\"; }}\n\
             protocol bgp rtr {{\n  local {p_ip} as 65001; neighbor {r_ip} as 65000;\n  hold time 6; connect retry time 1; error wait time 1, 5;\n\
               ipv4 {{ import none; export where net ~ [ 203.0.113.0/24{{32,32}} ]; }};\n}}\n"
        ),
    )?;
    spawn_bird(lab, pop, name, &bird)
}

/// Starts BIRD on PoP `name` with config `conf`, its control socket bird-`name`.ctl.
fn spawn_bird(lab: &mut Lab, pop: &Host, name: &str, conf: &std::path::Path) -> Result<()> {
    let sock = lab.dir.join(format!("bird-{name}.ctl"));
    let pid = lab.dir.join(format!("bird-{name}.pid"));
    lab.spawn(
        pop,
        &format!("bird-{name}"),
        &["bird", "-f", "-c", conf.to_str().unwrap(), "-s", sock.to_str().unwrap(), "-P", pid.to_str().unwrap()],
    )?;
    Ok(())
}

/// examples/full-pop/`file` with the lab's addresses: the example's PoP (198.51.100.1)
/// becomes `p_ip`, its router (198.51.100.2) `r_ip`, its uplink eth0 up0.
fn example(file: &str, p_ip: &str, r_ip: &str) -> Result<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/full-pop").join(file);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    // Whole addresses only: 198.51.100.1 must not rewrite 198.51.100.10.
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("198.51.100.") {
        out += &rest[..at];
        let digits: String = rest[at + 11..].chars().take_while(|c| c.is_ascii_digit()).collect();
        out += match digits.as_str() {
            "1" => p_ip,
            "2" => r_ip,
            _ => anyhow::bail!("{}: unexpected address 198.51.100.{digits}", path.display()),
        };
        rest = &rest[at + 11 + digits.len()..];
    }
    out += rest;
    Ok(out.replace("\"eth0\"", "\"up0\""))
}

/// BIRD on PoP `name` running examples/full-pop/bird.conf (BFD included), with the
/// lab's addresses and its BGP timers (hold 6 s, retry 1 s) so sessions come up fast.
fn start_example_bird(lab: &mut Lab, pop: &Host, name: &str, p_ip: &str, r_ip: &str) -> Result<()> {
    let text = example("bird.conf", p_ip, r_ip)?;
    let neighbor = format!("neighbor {r_ip} as 65000;");
    anyhow::ensure!(text.contains(&neighbor), "bird.conf has no `{neighbor}`");
    let text = text.replace(&neighbor, &format!("{neighbor}\n    hold time 6; connect retry time 1; error wait time 1, 5;"));
    let bird = lab.write(&format!("bird-{name}.conf"), &text)?;
    spawn_bird(lab, pop, name, &bird)
}

/// FRR (zebra, bfdd, bgpd) on PoP `name` running examples/full-pop/frr.conf, with the
/// lab's addresses and BGP timers: the integrated file split at its `bfd` section into
/// bgpd's and bfdd's files, every socket in a directory of this PoP's.
fn start_example_frr(lab: &mut Lab, pop: &Host, name: &str, p_ip: &str, r_ip: &str) -> Result<()> {
    let text = example("frr.conf", p_ip, r_ip)?;
    let at = text.find("\nbfd\n").context("frr.conf has no bfd section")?;
    let (bgp, bfd) = (&text[..at + 1], &text[at + 1..]);
    let remote = format!(" neighbor {r_ip} remote-as 65000\n");
    anyhow::ensure!(bgp.contains(&remote), "frr.conf has no `{}`", remote.trim());
    let bgp = bgp.replace(&remote, &format!("{remote} neighbor {r_ip} timers 2 6\n neighbor {r_ip} timers connect 1\n"));
    let dir = lab.dir.join(format!("frr-{name}"));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("zebra.conf"), format!("hostname pop-{name}\n"))?;
    std::fs::write(dir.join("bgpd.conf"), bgp)?;
    std::fs::write(dir.join("bfdd.conf"), format!("hostname pop-{name}\n{bfd}"))?;
    crate::run(std::process::Command::new("chown").args(["-R", "frr:frr"]).arg(&dir))?;
    let d = dir.to_str().unwrap();
    let zserv = format!("{d}/zserv.api");
    for daemon in ["zebra", "bfdd", "bgpd"] {
        let (conf, pid) = (format!("{d}/{daemon}.conf"), format!("{d}/{daemon}.pid"));
        let bin = format!("/usr/lib/frr/{daemon}");
        let mut argv = vec![bin.as_str(), "-f", &conf, "-i", &pid, "-z", &zserv, "--vty_socket", d, "--log", "stdout"];
        let ctl = format!("{d}/bfdd.sock");
        if daemon == "bfdd" {
            argv.extend(["--bfdctl", ctl.as_str()]);
        }
        lab.spawn(pop, &format!("{daemon}-{name}"), &argv)?;
        // As watchfrr starts them: zebra, then its clients once its socket is up. bgpd
        // registers its BFD sessions once, at start; one sent before zebra listens is
        // lost, and the session never gets BFD.
        let ready = match daemon {
            "zebra" => zserv.clone(),
            "bfdd" => ctl.clone(),
            _ => continue,
        };
        wait_until(Duration::from_secs(10), &format!("{daemon} on pop-{name} to listen on {ready}"), || {
            std::path::Path::new(&ready).exists().then_some(())
        })?;
    }
    Ok(())
}

/// FRR on PoP `name`, as examples/full-pop/frr.conf without BFD: zebra learns lo's
/// addresses as connected routes, bgpd redistributes the /32s of 203.0.113.0/24. The
/// daemons drop to user frr, so their files live in a directory of frr's; the zebra
/// socket and vty sockets are there too, so PoPs do not share Debian's /run/frr.
fn start_frr_speaker(lab: &mut Lab, pop: &Host, name: &str, p_ip: &str, r_ip: &str) -> Result<()> {
    let dir = lab.dir.join(format!("frr-{name}"));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("zebra.conf"), format!("hostname pop-{name}\n"))?;
    std::fs::write(
        dir.join("bgpd.conf"),
        format!(
            "hostname pop-{name}\n\
             ip prefix-list VIPS seq 10 permit 203.0.113.0/24 ge 32 le 32\n\
             route-map EXPORT-VIPS permit 10\n match ip address prefix-list VIPS\n!\n\
             router bgp 65001\n bgp router-id {p_ip}\n no bgp ebgp-requires-policy\n\
              neighbor {r_ip} remote-as 65000\n neighbor {r_ip} timers 2 6\n neighbor {r_ip} timers connect 1\n\
              address-family ipv4 unicast\n  redistribute connected route-map EXPORT-VIPS\n\
               neighbor {r_ip} route-map EXPORT-VIPS out\n exit-address-family\n!\n"
        ),
    )?;
    crate::run(std::process::Command::new("chown").args(["-R", "frr:frr"]).arg(&dir))?;
    let d = dir.to_str().unwrap();
    let zserv = format!("{d}/zserv.api");
    for daemon in ["zebra", "bgpd"] {
        let (conf, pid) = (format!("{d}/{daemon}.conf"), format!("{d}/{daemon}.pid"));
        let bin = format!("/usr/lib/frr/{daemon}");
        lab.spawn(pop, &format!("{daemon}-{name}"), &[&bin, "-f", &conf, "-i", &pid, "-z", &zserv, "--vty_socket", d, "--log", "stdout"])?;
    }
    Ok(())
}

/// [`AnycastLab::peer_learned`] for a thread of its own (a clone of the router host).
pub fn peer_learned(router: &Host, bird_ctl: &std::path::Path, pop: &str) -> Result<bool> {
    let out = router.output(&["birdc", "-s", bird_ctl.to_str().unwrap(), "show", "route", "for", &format!("{VIP}/32"), "all"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    // No route at all from any PoP: birdc says so and exits non-zero.
    if text.contains("Network not found") {
        return Ok(false);
    }
    if !out.status.success() || !text.contains("BIRD") {
        anyhow::bail!("birdc failed ({}): {text}{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    // One line per path: `203.0.113.10/32 unicast [pop_a 10:01:02.003] * (200) [AS65001i]`.
    Ok(text.lines().any(|l| l.contains(&format!("[pop_{pop} "))))
}
