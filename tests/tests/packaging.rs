//! Installing pop the way operators install their other daemons: the examples pass
//! `pop check`, the systemd unit's capability set is enough to run the data path, and
//! the Debian package installs, checks, runs and removes without leaving anything.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use pop_lab::{Host, Lab};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A host with the interface the examples name (`eth0`, forwarding on, as a PoP that
/// balances needs) linked to a router.
fn pop_host(lab: &mut Lab) -> Result<Host> {
    let pop = lab.host("pop")?;
    let router = lab.host("router")?;
    lab.link(&pop, "eth0", &router, "r0")?;
    lab.addr(&pop, "eth0", "198.51.100.1/24")?;
    pop.sysctl("net.ipv4.conf.all.forwarding", "1")?;
    pop.sysctl("net.ipv4.conf.eth0.forwarding", "1")?;
    pop.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    Ok(pop)
}

#[test]
fn every_example_and_the_shipped_config_pass_pop_check() -> Result<()> {
    let mut lab = Lab::new()?;
    let pop = pop_host(&mut lab)?;
    let bin = pop_lab::pop_bin();
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("examples"))? {
        let config = entry?.path().join("pop.toml");
        if !config.is_file() {
            continue;
        }
        let out = pop.output(&[bin.to_str().unwrap(), "check", "-c", config.to_str().unwrap()])?;
        assert!(out.status.success(), "{}: {}", config.display(), String::from_utf8_lossy(&out.stderr));
        checked += 1;
    }
    assert_eq!(checked, 3, "examples: dns-edge, lb-pop, full-pop");
    let shipped = root().join("deploy/pop.toml");
    let out = pop.output(&[bin.to_str().unwrap(), "check", "-c", shipped.to_str().unwrap()])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// `CapabilityBoundingSet=` of deploy/pop.service, as setpriv(1) names them.
fn unit_capabilities() -> Result<Vec<String>> {
    let unit = std::fs::read_to_string(root().join("deploy/pop.service"))?;
    let line = unit.lines().find_map(|l| l.strip_prefix("CapabilityBoundingSet=")).context("no CapabilityBoundingSet")?;
    Ok(line.split_whitespace().map(|c| c.trim_start_matches("CAP_").to_lowercase()).collect())
}

/// Runs `pop run` as root with only `caps` in its bounding set (what systemd does with
/// CapabilityBoundingSet=), in `host`; returns whether it got ready and its log.
fn run_with_caps(lab: &mut Lab, host: &Host, name: &str, config: &Path, caps: &[String]) -> Result<(bool, String)> {
    let bin = pop_lab::pop_bin();
    let set = format!("-all,{}", caps.iter().map(|c| format!("+{c}")).collect::<Vec<_>>().join(","));
    let argv = ["setpriv", "--bounding-set", &set, "--", bin.to_str().unwrap(), "-c", config.to_str().unwrap(), "run"];
    let d = lab.spawn(host, name, &argv)?;
    let ready = d.wait_for_log("ready:", Duration::from_secs(30)).is_ok();
    let log = lab.stop_daemon(name).unwrap_or_default();
    Ok((ready, log))
}

/// The unit's capabilities run a PoP with DNS, a balanced service with health checks and
/// anycast; each one dropped breaks something (so the set is no larger than needed).
#[test]
fn the_units_capability_set_runs_the_data_path_and_each_capability_is_needed() -> Result<()> {
    let mut lab = Lab::new()?;
    let pop = pop_host(&mut lab)?;
    lab.addr(&pop, "eth0", "192.0.2.1/24")?;
    let zone = lab.write(
        "example.com.zone",
        "$ORIGIN example.com.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 60\n@ IN NS ns1\nns1 IN A 203.0.113.53\n",
    )?;
    let config = lab.pop_config(
        &pop,
        &format!(
            "[[interface]]\nname = \"eth0\"\n[[dns]]\nvips = [\"203.0.113.53\"]\nzones = [\"{}\"]\n\
             [[service]]\nname = \"web\"\nvips = [\"203.0.113.10\"]\nport = 80\n[[service.backends]]\naddress = \"192.0.2.9\"\n\
             [service.health]\ntype = \"tcp\"\ninterval_ms = 200\ntimeout_ms = 100\n[anycast]\ninterface = \"lo\"\n",
            zone.display()
        ),
    )?;
    let caps = unit_capabilities()?;
    let (ready, log) = run_with_caps(&mut lab, &pop, "pop-all", &config, &caps)?;
    assert!(ready, "pop did not start with the unit's capabilities {caps:?}:\n{log}");
    assert!(!log.contains("Operation not permitted") && !log.contains("Permission denied"), "{log}");
    for dropped in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != dropped).cloned().collect();
        let (ready, log) = run_with_caps(&mut lab, &pop, &format!("pop-no-{dropped}"), &config, &fewer)?;
        let hurt = !ready || log.contains("Operation not permitted") || log.contains("Permission denied");
        assert!(hurt, "pop runs without CAP_{}: drop it from the unit\n{log}", dropped.to_uppercase());
    }
    Ok(())
}

/// Removes the package however the test ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "pop"]).output();
    }
}

fn sh(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({}):\n{}{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// `cargo xtask deb`, then as an operator would: dpkg -i, pop check of the shipped config,
/// man pages, completions, the unit verified by systemd, pop run from the package (it
/// tells systemd it is ready), dpkg -r: no process, no pin, no XDP program left.
#[test]
fn the_debian_package_installs_runs_and_removes_cleanly() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = sh(Command::new(&cargo).current_dir(root()).args(["xtask", "deb"]))?;
    let deb = built.lines().find_map(|l| l.strip_prefix("built ")).filter(|p| p.ends_with(".deb")).context("no .deb built")?;
    let _installed = Installed;
    sh(Command::new("dpkg").args(["-i", deb]))?;

    let check = sh(Command::new("/usr/sbin/pop").args(["check", "-c", "/etc/pop/pop.toml"]))?;
    assert!(check.contains("ok"), "{check}");
    for page in ["pop", "pop-run", "pop-reload", "pop-decap"] {
        let path = sh(Command::new("man").args(["-w", page]))?;
        assert!(path.trim().ends_with(&format!("{page}.1.gz")), "man {page}: {path}");
    }
    let bash = std::fs::read_to_string("/usr/share/bash-completion/completions/pop")?;
    assert!(bash.contains("reload") && bash.contains("decap"), "bash completion");
    assert!(Path::new("/usr/share/zsh/vendor-completions/_pop").is_file() && Path::new("/usr/share/fish/vendor_completions.d/pop.fish").is_file());
    for example in ["dns-edge/pop.toml", "lb-pop/pop.toml", "full-pop/bird.conf", "full-pop/frr.conf", "backend/README.md"] {
        assert!(Path::new("/usr/share/doc/pop/examples").join(example).is_file(), "{example} not installed");
    }
    for shipped in ["prometheus/pop-alerts.yml", "grafana/pop-dashboard.json"] {
        assert!(Path::new("/usr/share/doc/pop/deploy").join(shipped).is_file(), "{shipped} not installed");
    }
    let unit = ["/lib/systemd/system/pop.service", "/usr/lib/systemd/system/pop.service"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .context("pop.service not installed")?;
    let verify = sh(Command::new("systemd-analyze").args(["verify", unit]))?;
    assert!(verify.trim().is_empty(), "systemd-analyze verify: {verify}");
    let version = sh(Command::new("/usr/sbin/pop").arg("--version"))?;
    assert!(version.contains("xdp object: sha256:"), "{version}");

    // The packaged controller in a namespace of its own (its lo is the shipped config's
    // interface), started as systemd would start it: READY=1 on the notify socket.
    let mut lab = Lab::new()?;
    let host = lab.host("pkg")?;
    let notify = lab.dir.join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&notify)?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    let d = lab.spawn(&host, "pop", &["env", &format!("NOTIFY_SOCKET={}", notify.display()), "/usr/sbin/pop", "run", "-c", "/etc/pop/pop.toml"])?;
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).with_context(|| format!("no READY=1 from the packaged pop:\n{}", d.log_text()))?;
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.starts_with("READY=1\n"), "{msg}");
    let attached = host.xdp_prog_id("lo")?.context("no XDP program on lo")?;
    // `pop status` names the program attached and the object it came from.
    let status = host.output(&["/usr/sbin/pop", "status", "--json", "-c", "/etc/pop/pop.toml"])?;
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout)?;
    assert_eq!(status["datapath"]["prog_id"].as_u64(), Some(attached as u64), "{status}");
    assert!(status["datapath"]["loaded_at"].as_u64().is_some(), "{status}");
    let digest = status["datapath"]["object_sha256"].as_str().unwrap_or_default();
    assert!(digest.len() == 64 && version.contains(digest), "status names {digest:?}, --version says {version}");
    let text = host.stdout(&["/usr/sbin/pop", "status", "-c", "/etc/pop/pop.toml"])?;
    assert!(text.contains(&format!("XDP program id {attached} (loaded ")), "{text}");
    assert!(Path::new("/sys/fs/bpf/pop").exists());

    // Removal stops the controller and detaches everything, while it runs.
    sh(Command::new("dpkg").args(["-r", "pop"]))?;
    let d = lab.daemon("pop").unwrap();
    pop_lab::wait_until(Duration::from_secs(10), "the packaged controller to exit", || d.child.try_wait().ok().flatten())?;
    assert!(d.log_text().contains("controller stopped"), "{}", d.log_text());
    assert!(!Path::new("/sys/fs/bpf/pop").exists(), "pins left under /sys/fs/bpf/pop");
    assert_eq!(host.xdp_prog_id("lo")?, None, "XDP program left on lo");
    assert!(!Path::new("/usr/sbin/pop").exists());
    Ok(())
}
