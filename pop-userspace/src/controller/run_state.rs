//! What a running controller leaves in its run directory: the single-instance lock
//! (`pop.lock`, holding its pid) and the status of the last start or reload
//! (`status`), which `pop reload` waits on.

use std::{
    fs::{self, File, OpenOptions},
    io::{Read as _, Seek as _, Write as _},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use log::warn;

/// `<run_dir>/status`: `<sequence> ok` or `<sequence> error` and the errors, rewritten
/// after start-up (sequence 0) and after every reload, so `pop reload` can report.
pub fn status_path(run_dir: &Path) -> PathBuf {
    run_dir.join("status")
}

/// The sequence number and text of the last status, if any.
pub fn read_status(run_dir: &Path) -> Option<(u64, String)> {
    let text = fs::read_to_string(status_path(run_dir)).ok()?;
    let (seq, rest) = text.split_once(' ')?;
    Some((seq.parse().ok()?, rest.to_string()))
}

pub fn write_status(run_dir: &Path, seq: u64, result: &Result<()>) {
    let text = match result {
        Ok(()) => format!("{seq} ok\n"),
        Err(e) => format!("{seq} error\n{e:#}\n"),
    };
    let tmp = run_dir.join("status.tmp");
    if fs::write(&tmp, text).and_then(|()| fs::rename(&tmp, status_path(run_dir))).is_err() {
        warn!("could not write {}", status_path(run_dir).display());
    }
}

/// An exclusive lock on `<run_dir>/pop.lock` held for the controller's lifetime, so
/// two controllers never fight over one set of pins and `detach` can tell if one runs.
pub struct RunLock {
    _file: File,
    pub path: PathBuf,
}

impl RunLock {
    /// The pid of the controller holding the lock in `run_dir`, if one runs.
    pub fn holder(run_dir: &Path) -> Option<i32> {
        let path = run_dir.join("pop.lock");
        let mut file = File::open(&path).ok()?;
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
            return None;
        }
        let mut pid = String::new();
        file.read_to_string(&mut pid).ok()?;
        pid.trim().parse().ok()
    }

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
            bail!("a pop controller (pid {}) is already running with run_dir {}; stop it first", pid.trim(), run_dir.display());
        }
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        Ok(RunLock { _file: file, path })
    }
}
