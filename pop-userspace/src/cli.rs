//! The `pop` command line. Each subcommand is a thin call into the modules.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};

use crate::{
    config::{Config, DEFAULT_CONFIG},
    controller, metrics,
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
    /// (counted in the data path with bounded memory). Refreshes until interrupted.
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
        Command::Stats { json, interval, all } => {
            let config = load_config(&cli.config)?;
            let map = metrics::open_counters(&config.pop.bpffs_dir)?;
            let first = metrics::read_totals(&map)?;
            let (now, before) = if interval > 0.0 {
                let d = Duration::from_secs_f64(interval);
                std::thread::sleep(d); // the measurement window for rates, not synchronisation
                (metrics::read_totals(&map)?, Some((&first, d)))
            } else {
                (first.clone(), None)
            };
            let rows = metrics::rows(&now, before);
            let services = metrics::service_rows(&config.pop.bpffs_dir, &config)?;
            let routes = metrics::http_route_rows(&config.pop.bpffs_dir, &config)?;
            if json {
                let out = serde_json::json!({
                    "pop": config.pop.name,
                    "interval_seconds": if interval > 0.0 { Some(interval) } else { None },
                    "counters": rows,
                    "services": services,
                    "http_routes": routes.iter().map(|(n, c)| serde_json::json!({"route": n, "answered": c})).collect::<Vec<_>>(),
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print!("{}", metrics::render_table(&rows, all));
                print!("{}", metrics::render_services(&services));
                if !routes.is_empty() {
                    println!("\n{:<50} {:>12}", "http route", "answered");
                    for (name, count) in &routes {
                        println!("{name:<50} {count:>12}");
                    }
                }
            }
        }
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
        Command::Top { interval, count, limit } => {
            let config = load_config(&cli.config)?;
            let dir = &config.pop.bpffs_dir;
            let vip_stats = crate::analysis::open_vip_stats(dir)?;
            let (mut vips, mut prefixes) = (crate::analysis::vip_packets(&vip_stats), crate::analysis::prefix_packets(dir)?);
            let backend_packets = |rows: Vec<metrics::ServiceRow>| -> std::collections::HashMap<String, u64> {
                rows.into_iter().flat_map(|s| s.backends.into_iter().map(move |b| (format!("{} {}", s.name, b.address), b.totals.packets))).collect()
            };
            let mut backends = backend_packets(metrics::service_rows(dir, &config)?);
            let mut n = 0;
            loop {
                std::thread::sleep(Duration::from_secs_f64(interval)); // the sampling window
                let (v2, p2) = (crate::analysis::vip_packets(&vip_stats), crate::analysis::prefix_packets(dir)?);
                println!("-- pop {} -- packets/s over {interval:.1} s", config.pop.name);
                println!("{:<40} {:>12}", "VIP", "packets/s");
                for (vip, r) in crate::analysis::rates(&vips, &v2, interval) {
                    println!("{:<40} {:>12.1}", vip.to_string(), r);
                }
                let b2 = backend_packets(metrics::service_rows(dir, &config)?);
                if !b2.is_empty() {
                    println!("{:<40} {:>12}", "service backend", "packets/s");
                    for (b, r) in crate::analysis::rates(&backends, &b2, interval) {
                        println!("{b:<40} {r:>12.1}");
                    }
                }
                println!("{:<40} {:>12}", "client prefix", "packets/s");
                for (p, r) in crate::analysis::rates(&prefixes, &p2, interval).into_iter().take(limit) {
                    println!("{p:<40} {r:>12.1}");
                }
                println!();
                (vips, prefixes, backends) = (v2, p2, b2);
                n += 1;
                if count != 0 && n >= count {
                    break;
                }
            }
        }
        Command::Status { json } => {
            let config = load_config(&cli.config)?;
            let v = crate::control::call(&config.pop.run_dir, &crate::control::Request::Status)?;
            let report: crate::status::StatusReport = serde_json::from_value(v).context("the controller's status report")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                print!("{}", report.render(now));
            }
        }
        Command::Withdraw | Command::Announce => {
            let config = load_config(&cli.config)?;
            let req = if matches!(cli.command, Command::Withdraw) { crate::control::Request::Withdraw } else { crate::control::Request::Announce };
            let v = crate::control::call(&config.pop.run_dir, &req)?;
            println!("{}", v.as_str().unwrap_or_default());
        }
        Command::Drain { service, backend } => {
            let config = load_config(&cli.config)?;
            let v = crate::control::call(&config.pop.run_dir, &crate::control::Request::Drain { service, backend })?;
            println!("{}", v.as_str().unwrap_or_default());
        }
        Command::Undrain { service, backend } => {
            let config = load_config(&cli.config)?;
            let v = crate::control::call(&config.pop.run_dir, &crate::control::Request::Undrain { service, backend })?;
            println!("{}", v.as_str().unwrap_or_default());
        }
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
