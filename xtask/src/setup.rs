//! `cargo xtask setup`: everything a fresh Debian 12 machine (as root) needs to build
//! and test pop. Idempotent: each step checks first and only acts when needed, so a
//! second run takes a few seconds.

use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// Debian packages the build, tests, demo and bench use, with why.
pub const APT_PACKAGES: &[(&str, &str)] = &[
    ("iproute2", "ip: namespaces, veth, addresses, routes"),
    ("util-linux", "nsenter: run lab processes inside a namespace"),
    ("procps", "sysctl inside lab namespaces"),
    ("ethtool", "turning off TX checksum offload on lab senders"),
    ("iputils-ping", "ping through the XDP interface"),
    ("curl", "HTTP client in tests and the demo"),
    ("python3", "small HTTP servers in the lab"),
    ("dnsutils", "dig: DNS client in tests and the demo"),
    ("knot-dnsutils", "kdig: DNS client in tests"),
    ("knot", "Knot DNS: the peer `cargo xtask bench` compares with"),
    ("ldnsutils", "ldns-keygen, ldns-signzone: signing the DNSSEC test zones"),
    ("dnsperf", "DNS load generator for `cargo xtask bench`"),
    ("nsd", "NSD: the second authoritative server `cargo xtask bench` compares with"),
    ("gnuplot-nox", "the chart `cargo xtask bench` draws"),
    ("netsniff-ng", "trafgen: the packet flood in `cargo xtask bench`"),
    ("wrk", "HTTP load generator in tests and `cargo xtask bench`"),
    ("nginx-light", "the HTTP backend `cargo xtask bench` balances to"),
    ("wget", "HTTP client in tests"),
    ("bird2", "BGP: the router and PoP speakers in the anycast tests and the demo"),
    ("frr", "FRR (zebra, bgpd): the other PoP-side BGP speaker the anycast tests run pop under"),
    ("hping3", "SYN flood in the HTTP responder test"),
    ("nftables", "nftables DNAT, the kernel baseline `cargo xtask bench` compares the LB with"),
    ("prometheus", "promtool: linting the metrics exposition and checking deploy/prometheus's alert rules in tests"),
];

/// Where bpf-linker finds nightly's LLVM (its rpath points here, so it must stay).
const LLVM_PREFIX: &str = "/opt/pop-llvm";
const BPF_LINKER_VERSION: &str = "0.13.0";
/// cargo-deb builds `cargo xtask deb` (and the packaging test).
const CARGO_DEB_VERSION: &str = "3.8.0";

fn step(name: &str, f: impl FnOnce() -> Result<String>) -> Result<()> {
    match f() {
        Ok(what) => {
            println!("[setup] {name}: {what}");
            Ok(())
        }
        Err(e) => bail!("[setup] {name} failed: {e:#}"),
    }
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn status(cmd: &mut Command) -> Result<()> {
    let s = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !s.success() {
        bail!("{cmd:?} failed ({s})");
    }
    Ok(())
}

pub fn setup() -> Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("setup needs root (apt-get, mounting bpffs); run it as root");
    }
    step("apt packages", apt)?;
    step("nightly rust-src", rust_src)?;
    step("bpf-linker", bpf_linker)?;
    step("cargo-deb", cargo_deb)?;
    step("bpffs", || {
        pop_lab::ensure_bpffs()?;
        Ok("mounted at /sys/fs/bpf".into())
    })?;
    Ok(())
}

fn apt() -> Result<String> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| {
            Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| !String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(true)
        })
        .collect();
    if missing.is_empty() {
        return Ok(format!("all {} present", APT_PACKAGES.len()));
    }
    println!("[setup] installing {}", missing.join(" "));
    status(Command::new("apt-get").args(["update", "-q"]))?;
    status(Command::new("apt-get").args(["install", "-y", "-q", "--no-install-recommends"]).args(&missing).env("DEBIAN_FRONTEND", "noninteractive"))?;
    Ok(format!("installed {}", missing.join(" ")))
}

fn rust_src() -> Result<String> {
    output(Command::new("rustup").args(["run", "nightly", "rustc", "--version"]))
        .context("the nightly toolchain is needed for the eBPF crate (`rustup toolchain install nightly`)")?;
    let installed = output(Command::new("rustup").args(["component", "list", "--installed", "--toolchain", "nightly"]))?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok("present".into());
    }
    status(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
    Ok("installed".into())
}

/// LLVM major version of the nightly rustc (bpf-linker must link the same major).
fn nightly_llvm_major() -> Result<String> {
    let v = output(Command::new("rustup").args(["run", "nightly", "rustc", "--version", "--verbose"]))?;
    let llvm = v.lines().find_map(|l| l.strip_prefix("LLVM version: ")).context("nightly rustc does not report its LLVM version")?;
    Ok(llvm.split('.').next().unwrap_or_default().to_string())
}

fn bpf_linker() -> Result<String> {
    let major = nightly_llvm_major()?;
    let sysroot = output(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))?;
    let libdir = Path::new(sysroot.trim()).join("lib");
    let lib = fs::read_dir(&libdir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with(&format!("libLLVM.so.{major}.")))
        .with_context(|| format!("no libLLVM.so.{major}.* in {}", libdir.display()))?;

    // Present, the right version, and loading nightly's current LLVM: nothing to do.
    let ok = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION))
        == Some(true);
    let linked = which("bpf-linker")
        .and_then(|p| output(Command::new("ldd").arg(p)).ok())
        .map(|l| l.contains(&lib) && !l.contains("not found"))
        .unwrap_or(false);
    if ok && linked {
        return Ok(format!("{BPF_LINKER_VERSION} with LLVM {major} present"));
    }

    // Build it against the LLVM shipped inside the nightly toolchain (Debian has no
    // LLVM {major}); see shared/env-notes.md. About 4 minutes on 2 cores.
    println!("[setup] building bpf-linker {BPF_LINKER_VERSION} against nightly's LLVM {major} (a few minutes)");
    let prefix_lib = Path::new(LLVM_PREFIX).join("lib");
    fs::create_dir_all(&prefix_lib)?;
    for name in [lib.as_str(), "libLLVM.so"] {
        let link = prefix_lib.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(libdir.join(&lib), &link)?;
    }
    status(
        Command::new("cargo")
            .args(["install", "--force", "bpf-linker", "--version", BPF_LINKER_VERSION, "--no-default-features"])
            .args(["--features", &format!("llvm-{major}")])
            .env("LLVM_PREFIX", LLVM_PREFIX),
    )?;
    Ok(format!("built {BPF_LINKER_VERSION} with LLVM {major}"))
}

fn cargo_deb() -> Result<String> {
    let have = Command::new("cargo").args(["deb", "--version"]).output().ok().filter(|o| o.status.success());
    if have.is_some_and(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_DEB_VERSION)) {
        return Ok(format!("{CARGO_DEB_VERSION} present"));
    }
    println!("[setup] installing cargo-deb {CARGO_DEB_VERSION} (a few minutes)");
    status(Command::new("cargo").args(["install", "--locked", "cargo-deb", "--version", CARGO_DEB_VERSION]))?;
    Ok(format!("installed {CARGO_DEB_VERSION}"))
}

fn which(bin: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(bin)).find(|p| p.is_file())
}
