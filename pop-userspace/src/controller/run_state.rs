//! What a running controller leaves in its run directory: the single-instance lock
//! (`pop.lock`, holding its pid), the status of the last start or reload (`status`),
//! which `pop reload` waits on, and the state a restarted controller starts from
//! (`state.json`: backends' health and drain, the VIPs it had announced).

use std::{
    fs::{self, File, OpenOptions},
    io::{Read as _, Seek as _, Write as _},
    net::IpAddr,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use log::warn;
use serde::{Deserialize, Serialize};

use crate::{config::Config, health::SavedBackend};

/// `<run_dir>/state.json`: rewritten every lease renewal and after every health, drain
/// or announce change, so that a controller killed at any moment leaves a recent one.
pub fn state_path(run_dir: &Path) -> PathBuf {
    run_dir.join("state.json")
}

/// What a restarted controller starts from instead of "every backend down, nothing
/// announced", which would withdraw every route and announce it again moments later.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedState {
    /// When it was written, in milliseconds since the Unix epoch.
    pub written_ms: u64,
    pub backends: Vec<SavedBackend>,
    /// The VIPs that were announced (on the anycast interface).
    pub announced: Vec<IpAddr>,
}

impl SavedState {
    pub fn new(backends: Vec<SavedBackend>, announced: Vec<IpAddr>) -> Self {
        let written_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        SavedState { written_ms, backends, announced }
    }

    /// How long ago it was written, as of `now`; None if in the future (the clock went
    /// back: its age is unknown).
    pub fn age(&self, now: SystemTime) -> Option<Duration> {
        now.duration_since(UNIX_EPOCH + Duration::from_millis(self.written_ms)).ok()
    }

    /// Whether its health verdicts are recent enough to start from (see [`max_state_age`]).
    pub fn is_fresh(&self, now: SystemTime, max_age: Duration) -> bool {
        self.age(now).is_some_and(|age| age <= max_age)
    }
}

/// How old saved health may be and still be trusted: three leases (three times the
/// default lease when leases are off or there is no `[anycast]`). Older means the PoP was
/// down for longer than a quick restart, and its backends must prove themselves again.
pub fn max_state_age(config: &Config) -> Duration {
    let lease = config.anycast.as_ref().map_or(0, |a| a.lease_s);
    let lease = if lease == 0 { crate::config::DEFAULT_LEASE_S } else { lease };
    Duration::from_secs(3 * u64::from(lease))
}

/// The saved state, if there is one that parses (a missing or torn file is no state).
pub fn read_state(run_dir: &Path) -> Option<SavedState> {
    let text = fs::read_to_string(state_path(run_dir)).ok()?;
    match serde_json::from_str(&text) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!("ignoring {}: {e}", state_path(run_dir).display());
            None
        }
    }
}

/// Writes the state atomically (temporary file, then rename).
pub fn write_state(run_dir: &Path, state: &SavedState) {
    let tmp = run_dir.join("state.json.tmp");
    let text = serde_json::to_string(state).unwrap_or_default();
    if fs::write(&tmp, text).and_then(|()| fs::rename(&tmp, state_path(run_dir))).is_err() {
        warn!("could not write {}", state_path(run_dir).display());
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::State;

    #[test]
    fn saved_state_round_trips_and_ages() {
        let dir = std::env::temp_dir().join(format!("pop-state-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(read_state(&dir), None);
        let backend = SavedBackend {
            service: "web".into(),
            address: "198.51.100.1".parse().unwrap(),
            state: State::Up,
            since: 5,
            last_error: None,
            drained: true,
            checked: true,
        };
        let state = SavedState::new(vec![backend], vec!["203.0.113.10".parse().unwrap()]);
        write_state(&dir, &state);
        assert_eq!(read_state(&dir).as_ref(), Some(&state));

        let written = UNIX_EPOCH + Duration::from_millis(state.written_ms);
        let max = Duration::from_secs(6);
        assert!(state.is_fresh(written + Duration::from_secs(6), max));
        assert!(!state.is_fresh(written + Duration::from_millis(6001), max), "older than the bound");
        assert!(!state.is_fresh(written - Duration::from_secs(1), max), "written in the future: age unknown");

        fs::write(state_path(&dir), "{\"written_ms\": 1, \"backends\": [").unwrap();
        assert_eq!(read_state(&dir), None, "a torn file is no state");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn state_ages_are_bounded_by_three_leases() {
        let parse = |extra: &str| Config::parse(Path::new("pop.toml"), &format!("[[interface]]\nname = \"e\"\n{extra}")).unwrap();
        assert_eq!(max_state_age(&parse("")), Duration::from_secs(6));
        assert_eq!(max_state_age(&parse("[anycast]\nlease_s = 10\n")), Duration::from_secs(30));
        assert_eq!(max_state_age(&parse("[anycast]\nlease_s = 0\n")), Duration::from_secs(6));
    }
}
