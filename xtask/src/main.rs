//! Project tasks: `cargo xtask setup | build | test | demo`. Every task that needs the
//! toolchain or the lab runs `setup` first, so on a fresh machine one command suffices.

#[allow(clippy::useless_format)]
mod bench;
mod deb;
mod demo;
mod setup;

use std::process::{Command, ExitCode};

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "pop's set-up, build, test and demo entry points")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (apt packages, nightly rust-src,
    /// bpf-linker, bpffs). Idempotent.
    Setup,
    /// Set up, then build the `pop` binary (release) with its embedded XDP object.
    Build,
    /// Set up, build the release binary, and package it as a .deb (cargo-deb): binary,
    /// systemd unit, /etc/pop/pop.toml, man pages, completions, examples.
    Deb,
    /// Set up, then run every test: host unit tests and the namespace-lab integration tests.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, then fuzz the loaded XDP program with mutated frames for N seconds
    /// (CI runs the same test bounded to 45 s).
    Fuzz {
        #[arg(long, default_value_t = 300)]
        seconds: u64,
    },
    /// Set up, then run the demo PoP in a namespace lab and explain what it shows.
    Demo,
    /// Set up, then measure: XDP ns/packet per path and dnsperf against pop and Knot
    /// DNS; writes bench/results/latest.md.
    Bench {
        /// Only the per-path table: each path's ns/packet under a trafgen flood beside
        /// its floor program; written to bench/results/paths-<LABEL>.md.
        #[arg(long)]
        paths: bool,
        #[arg(long, default_value = "latest")]
        label: String,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn cargo(args: &[&str]) -> Result<()> {
    let status = Command::new(env!("CARGO")).args(args).status()?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The crate roots `cargo xtask test` holds to rustfmt.toml (rustfmt follows their
/// modules); every lab test file under tests/tests is added to them.
const FORMATTED: &[&str] = &[
    "pop-common/src/lib.rs",
    "pop-ebpf/src/main.rs",
    "pop-ebpf/src/decap.rs",
    "pop-ebpf/src/floor.rs",
    "pop-userspace/build.rs",
    "pop-userspace/src/main.rs",
    "pop-userspace/src/lib.rs",
    "xtask/src/main.rs",
    "tests/src/lib.rs",
];

/// Formatting and clippy's warnings fail the test run before any test runs.
fn lint() -> Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files: Vec<std::path::PathBuf> = FORMATTED.iter().map(|f| root.join(f)).collect();
    for entry in std::fs::read_dir(root.join("tests/tests"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    let status = Command::new("rustfmt")
        .args(["--check", "--edition", "2024"])
        .args(&files)
        .current_dir(root)
        .status()
        .map_err(|e| anyhow::anyhow!("running rustfmt (rustup component add rustfmt): {e}"))?;
    if !status.success() {
        bail!("rustfmt --check: files above are not formatted as rustfmt.toml says (run rustfmt on them)");
    }
    cargo(&["clippy", "-p", "pop-userspace", "-p", "xtask", "--all-targets", "--", "-D", "warnings"])?;
    // pop-common on the host (the BPF build cannot run clippy), and every lab test.
    cargo(&["clippy", "-p", "pop-common", "-p", "pop-lab", "--all-targets", "--", "-D", "warnings"])
}

/// Runs `cargo test`, echoing its output, and closes with one summary line over every
/// test binary ("N passed, N failed") so CI reads the whole run, not the last binary.
fn cargo_test(args: &[&str]) -> Result<()> {
    use std::io::{BufRead as _, BufReader};
    let mut child = Command::new(env!("CARGO")).args(args).stdout(std::process::Stdio::piped()).spawn()?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(what), Some(n)) = (words.next(), words.next()) else { continue };
                let n: u64 = n.parse().unwrap_or(0);
                match what {
                    "passed" => passed += n,
                    "failed" => failed += n,
                    "ignored" => ignored += n,
                    _ => {}
                }
            }
        }
    }
    let status = child.wait()?;
    println!("\ntests: {passed} passed, {failed} failed, {ignored} skipped");
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    Ok(())
}

fn run(task: Task) -> Result<()> {
    match task {
        Task::Setup => setup::setup(),
        Task::Build => {
            setup::setup()?;
            cargo(&["build", "--release", "-p", "pop-userspace"])?;
            println!("built target/release/pop");
            Ok(())
        }
        Task::Deb => {
            setup::setup()?;
            cargo(&["build", "--release", "-p", "pop-userspace"])?;
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
            let deb = deb::build(&root)?;
            println!("built {}", deb.display());
            Ok(())
        }
        Task::Test { args } => {
            setup::setup()?;
            let removed = pop_lab::sweep_stale()?;
            if !removed.is_empty() {
                println!("[test] removed stale lab state: {}", removed.join(", "));
            }
            lint()?;
            // The integration tests run the `pop` binary, so build it first.
            cargo(&["build", "-p", "pop-userspace"])?;
            let mut argv = vec!["test", "--workspace", "--no-fail-fast"];
            argv.extend(args.iter().map(String::as_str));
            cargo_test(&argv)
        }
        Task::Fuzz { seconds } => {
            setup::setup()?;
            cargo(&["build", "-p", "pop-userspace"])?;
            // SAFETY: single-threaded here; the test reads it in its own process.
            unsafe { std::env::set_var("POP_FUZZ_SECONDS", seconds.to_string()) };
            cargo(&["test", "-p", "pop-lab", "--test", "fuzz", "--", "--nocapture"])
        }
        Task::Bench { paths, label } => {
            setup::setup()?;
            if paths {
                // The XDP object is the same optimised build in either profile, and only
                // it is measured here: the quicker debug controller serves.
                cargo(&["build", "-p", "pop-userspace"])?;
                bench::run_paths(&label)
            } else {
                cargo(&["build", "--release", "-p", "pop-userspace"])?;
                bench::run()
            }
        }
        Task::Demo => {
            setup::setup()?;
            cargo(&["build", "--release", "-p", "pop-userspace"])?;
            demo::run()
        }
    }
}
