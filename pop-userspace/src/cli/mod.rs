//! The `pop` command line: the definition (help text included) and dispatch. Each
//! subcommand is a thin call into the modules; those that render something have a
//! file here: [`stats`], [`top`], [`status`] (and the requests to the controller).

mod stats;
mod status;
mod top;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::{
    config::{Config, DEFAULT_CONFIG},
    controller::{self, control::Request},
};

const EXAMPLE: &str = "\
A small config (every section is optional except [[interface]]; unknown keys are errors):

  [pop]
  name = \"ams1\"                    # answers CH TXT id.server
  [[interface]]
  name = \"eth0\"                    # native XDP; xdp_mode = \"generic\" if the driver lacks it
  [[dns]]
  vips = [\"203.0.113.53\"]
  zones = [\"zones/example.com.zone\"]
  [[service]]
  name = \"web\"
  vips = [\"203.0.113.10\"]
  port = 80
  backends = [{ address = \"198.51.100.11\" }, { address = \"198.51.100.12\", weight = 2 }]
  [[http]]
  name = \"edge\"
  vips = [\"203.0.113.80\"]
  [http.default]
  status = 301
  location = \"https://www.example.com\"
  append_path = true
  [anycast]                         # announce VIPs (addresses on lo) only while healthy
  lease_s = 2                       # each a 2 s lease: a killed controller's routes lapse

The README documents every key, the counters, and how to set up backends.";

/// `pop -V`: the release and which XDP object this binary attaches (the data path
/// outlives the controller, so an operator needs to know which one is running).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (xdp ", env!("POP_XDP_SHORT"), ")");
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nxdp object: sha256:",
    env!("POP_XDP_SHA256"),
    "\n(`pop status` names the object and program id actually attached)"
);

/// pop: a Point-of-Presence edge data plane (XDP).
///
/// `pop run` loads the XDP program onto the interfaces in the config, pins it under
/// bpffs and keeps running as the controller. The data path outlives the controller:
/// restarting `pop run` takes the pinned program, links and counters over without
/// a gap; `pop detach` removes it for good.
#[derive(Parser, Debug)]
#[command(name = "pop", version = VERSION, long_version = LONG_VERSION, propagate_version = true, after_long_help = EXAMPLE)]
pub struct Cli {
    /// Configuration file (TOML).
    #[arg(short, long, global = true, default_value = DEFAULT_CONFIG, value_name = "FILE")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Attach the data path and run the controller until SIGINT/SIGTERM.
    Run,
    /// Validate the config, its zone files, and that its interfaces exist here; errors
    /// as file:line: message.
    Check,
    /// Show data-path counters from the pinned maps (works without the controller).
    Stats {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Seconds between the two samples used for per-second rates; 0 shows totals only.
        #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
        interval: f64,
        /// Show counters that are zero too.
        #[arg(long)]
        all: bool,
    },
    /// Show the running controller's view: services, and per backend its health state,
    /// RTT (p50/p99), last error and since when.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Live view of traffic to the VIPs: per-VIP rates and the busiest client prefixes
    /// (counted in the data path with bounded memory), each prefix with the p50 and p99
    /// of its clients' round trips measured in the path (HTTP answered in XDP: TCP
    /// timestamps; load-balanced TCP: SYN to ACK). Refreshes until interrupted.
    Top {
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Stop after this many refreshes (0 = until interrupted).
        #[arg(long, default_value_t = 0)]
        count: u32,
        /// Client prefixes to show.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Maintenance: withdraw every VIP now and keep them withdrawn, also across
    /// controller restarts, until `pop announce`.
    Withdraw,
    /// Leave maintenance: VIPs are announced again as soon as their health allows.
    Announce,
    /// Stop sending new flows to a backend; its existing flows stay (see `undrain`).
    Drain { service: String, backend: String },
    /// Let a drained backend take new flows again.
    Undrain { service: String, backend: String },
    /// Re-read the config and zones and swap them in atomically (same as SIGHUP to
    /// `pop run`). A broken zone is reported with file:line and nothing changes.
    Reload,
    /// On a backend: attach (or detach) the XDP program that strips pop's IPIP /
    /// IPv6-in-IPv6 outer header, so packets to the VIP held on `lo` go up the stack.
    /// The backend answers clients directly (direct server return).
    Decap {
        /// Interface the tunnelled packets arrive on.
        #[arg(long, value_name = "IFACE")]
        iface: String,
        /// Use generic (skb) XDP instead of native.
        #[arg(long)]
        generic: bool,
        /// Remove it instead.
        #[arg(long, conflicts_with = "stats")]
        detach: bool,
        /// Show its counters instead.
        #[arg(long)]
        stats: bool,
        /// Decapsulate only packets from this PoP address (repeat for each PoP); without
        /// it any source is accepted. Only inner destinations that are addresses of this
        /// host are ever decapsulated; run the command again after adding one.
        #[arg(long, value_name = "ADDR")]
        allow_source: Vec<std::net::IpAddr>,
        /// Where the link and counters are pinned.
        #[arg(long, default_value = "/sys/fs/bpf/pop-decap", value_name = "DIR")]
        bpffs_dir: PathBuf,
    },
    /// Remove the XDP program, its links and maps for good (refused while `pop run` runs).
    Detach,
    /// Print a completion script for SHELL (bash, zsh, fish, elvish, powershell), e.g.
    /// `pop completions bash > /etc/bash_completion.d/pop`.
    Completions { shell: clap_complete::Shell },
    /// Write man pages (pop.1 and pop-SUBCOMMAND.1) into DIR (used by the package build).
    #[command(hide = true)]
    Manpages { dir: PathBuf },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Records forwarded from the XDP program carry the target "pop"; their level is
    // already chosen by `bpf_log` when the program is loaded, so let them all through.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info,pop=trace,pop_userspace=info")).format_timestamp_millis().init();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pop: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: &std::path::Path) -> Result<Config> {
    Ok(Config::load(path)?)
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run => {
            let config = load_config(&cli.config)?;
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            rt.block_on(controller::run(config))?;
        }
        Command::Check => {
            let config = match Config::load(&cli.config) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            // The same validation `pop run` and `pop reload` do, so they accept what this does.
            if let Err(errors) = controller::validate(&config) {
                eprintln!("{errors}");
                return Ok(ExitCode::FAILURE);
            }
            println!("{}: ok ({} interface(s), {} DNS block(s))", cli.config.display(), config.interfaces.len(), config.dns.len());
        }
        Command::Stats { json, interval, all } => stats::run(&load_config(&cli.config)?, json, interval, all)?,
        Command::Decap { iface, generic, detach, stats, allow_source, bpffs_dir } => {
            if detach {
                crate::lb::decap::detach(&bpffs_dir, &iface)?;
            } else if stats {
                for (name, value) in crate::lb::decap::stats(&bpffs_dir, &iface)? {
                    println!("{name:<24} {value}");
                }
            } else {
                crate::lb::decap::attach(&bpffs_dir, &iface, generic, &allow_source)?;
            }
        }
        Command::Top { interval, count, limit } => top::run(&load_config(&cli.config)?, interval, count, limit)?,
        Command::Status { json } => status::show(&load_config(&cli.config)?, json)?,
        Command::Withdraw => status::request(&load_config(&cli.config)?, Request::Withdraw)?,
        Command::Announce => status::request(&load_config(&cli.config)?, Request::Announce)?,
        Command::Drain { service, backend } => status::request(&load_config(&cli.config)?, Request::Drain { service, backend })?,
        Command::Undrain { service, backend } => status::request(&load_config(&cli.config)?, Request::Undrain { service, backend })?,
        Command::Reload => {
            let config = load_config(&cli.config)?;
            controller::request_reload(&config)?;
        }
        Command::Completions { shell } => {
            crate::manual::completions(shell, &mut std::io::stdout())?;
        }
        Command::Manpages { dir } => {
            let written = crate::manual::man_pages(&dir)?;
            println!("wrote {written} man pages into {}", dir.display());
        }
        Command::Detach => {
            let config = load_config(&cli.config)?;
            controller::detach(&config)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_help_example_is_a_valid_config() {
        let toml: String = super::EXAMPLE.lines().filter_map(|l| l.strip_prefix("  ")).map(|l| format!("{l}\n")).collect();
        let c = crate::config::Config::parse(std::path::Path::new("/etc/pop/pop.toml"), &toml).unwrap();
        assert_eq!((c.dns.len(), c.services.len(), c.http.len()), (1, 1, 1));
        assert!(c.anycast.is_some());
    }
}
