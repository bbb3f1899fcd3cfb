//! `pop run`: attach the data path, keep the controller's single-instance lock, forward
//! eBPF log lines, and run until SIGINT/SIGTERM. Stopping the controller leaves the
//! data path attached and pinned; the next `pop run` takes it over.

use std::{
    fs::{self, File, OpenOptions},
    io::{Read as _, Seek as _, Write as _},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use log::{info, warn};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

use crate::{config::Config, loader};

/// An exclusive lock on `<run_dir>/pop.lock` held for the controller's lifetime, so
/// two controllers never fight over one set of pins and `detach` can tell if one runs.
pub struct RunLock {
    _file: File,
    pub path: PathBuf,
}

impl RunLock {
    pub fn acquire(run_dir: &Path) -> Result<RunLock> {
        fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
        let path = run_dir.join("pop.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            bail!(
                "a pop controller (pid {}) is already running with run_dir {}; stop it first",
                pid.trim(),
                run_dir.display()
            );
        }
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        Ok(RunLock { _file: file, path })
    }
}

pub async fn run(config: Config) -> Result<()> {
    let _lock = RunLock::acquire(&config.pop.run_dir)?;
    let mut datapath = loader::attach(&config)?;

    match aya_log::EbpfLogger::init(&mut datapath.ebpf) {
        Ok(logger) => {
            // SAFETY: the logger owns its ring buffer fd for its whole life and always
            // returns that same fd.
            let mut fd = unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) }
                .map_err(|e| anyhow::anyhow!("watching the eBPF log ring buffer: {e}"))?;
            tokio::spawn(async move {
                loop {
                    let Ok(mut guard) = fd.readable_mut().await else { break };
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
            });
        }
        Err(e) => warn!("eBPF log lines will not be shown: {e}"),
    }

    let names: Vec<&str> = config.interfaces.iter().map(|i| i.name.as_str()).collect();
    info!(
        "ready: pop {:?} serving on {} (pinned under {}); SIGINT/SIGTERM stops the controller, \
         the data path stays attached until `pop detach`",
        config.pop.name,
        names.join(", "),
        datapath.pins.root.display()
    );

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: controller stopping"),
        _ = int.recv() => info!("SIGINT: controller stopping"),
    }
    drop(datapath);
    info!("controller stopped; the XDP program stays attached (pinned)");
    Ok(())
}

/// `pop detach`: refuse while a controller runs, then unpin everything.
pub fn detach(config: &Config) -> Result<()> {
    let _lock = RunLock::acquire(&config.pop.run_dir)
        .context("cannot detach while the controller runs")?;
    let detached = loader::detach(&config.pop.bpffs_dir)?;
    if detached.is_empty() {
        println!("nothing attached under {}", config.pop.bpffs_dir.display());
    } else {
        println!("detached from {}; removed {}", detached.join(", "), config.pop.bpffs_dir.display());
    }
    Ok(())
}
