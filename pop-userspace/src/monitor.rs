//! `[[monitor]]` peer checks: each target probed on its own schedule (DNS query with
//! its expected answer, HTTP GET with its expected status, TCP connect), its
//! availability and round trips kept for `pop status` and Prometheus. A PoP that
//! monitors its siblings' unicast addresses sees their uptime from where it stands.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::sync::watch;

use crate::{
    config::{Config, Monitor},
    health::{RttHistogram, timed_probe},
    status::MonitorStatus,
};

#[derive(Debug, Clone)]
struct Entry {
    target: SocketAddr,
    kind: &'static str,
    /// None until the first probe.
    up: Option<bool>,
    since: SystemTime,
    last_error: Option<String>,
    last_rtt: Option<Duration>,
    ok: u64,
    failed: u64,
    rtt: RttHistogram,
}

/// Every monitor's results, shared by the probe tasks, `pop status` and Prometheus.
#[derive(Default)]
pub struct MonitorBoard {
    inner: Mutex<BTreeMap<String, Entry>>,
}

fn kind_name(m: &Monitor) -> &'static str {
    match m.probe.kind {
        crate::config::ProbeKind::Tcp => "tcp",
        crate::config::ProbeKind::Http => "http",
        crate::config::ProbeKind::Dns => "dns",
    }
}

impl MonitorBoard {
    /// Makes the board match `config`: a monitor whose target and kind are unchanged
    /// keeps its history; new or changed ones start unprobed; removed ones go.
    pub fn sync(&self, config: &Config) {
        let mut m = self.inner.lock().unwrap();
        m.retain(|name, e| config.monitors.iter().any(|c| &c.name == name && c.target == e.target && kind_name(c) == e.kind));
        for c in &config.monitors {
            m.entry(c.name.clone()).or_insert_with(|| Entry {
                target: c.target,
                kind: kind_name(c),
                up: None,
                since: SystemTime::now(),
                last_error: None,
                last_rtt: None,
                ok: 0,
                failed: 0,
                rtt: RttHistogram::default(),
            });
        }
    }

    fn record(&self, name: &str, result: Result<Duration, String>) {
        let mut m = self.inner.lock().unwrap();
        let Some(e) = m.get_mut(name) else { return };
        let up = result.is_ok();
        if e.up != Some(up) {
            match (&result, e.up) {
                (Ok(_), Some(false)) => log::info!("monitor {name:?} ({}) answers again", e.target),
                (Err(err), _) => log::warn!("monitor {name:?} ({}) fails: {err}", e.target),
                _ => {}
            }
            e.up = Some(up);
            e.since = SystemTime::now();
        }
        match result {
            Ok(rtt) => {
                e.ok += 1;
                e.last_rtt = Some(rtt);
                e.last_error = None;
                e.rtt.observe(rtt);
            }
            Err(err) => {
                e.failed += 1;
                e.last_error = Some(err);
            }
        }
    }

    pub fn snapshot(&self) -> Vec<MonitorStatus> {
        let m = self.inner.lock().unwrap();
        m.iter()
            .map(|(name, e)| MonitorStatus {
                name: name.clone(),
                target: e.target,
                kind: e.kind.to_string(),
                up: e.up,
                since: e.since.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                probes_ok: e.ok,
                probes_failed: e.failed,
                last_rtt_ms: e.last_rtt.map(|d| d.as_secs_f64() * 1000.0),
                last_error: e.last_error.clone(),
            })
            .collect()
    }

    /// (name, target, histogram) of every monitor, for Prometheus.
    pub fn rtt_histograms(&self) -> Vec<(String, SocketAddr, RttHistogram)> {
        self.inner.lock().unwrap().iter().map(|(n, e)| (n.clone(), e.target, e.rtt.clone())).collect()
    }
}

/// The running monitor tasks; dropping this stops them.
pub struct Monitors {
    _stop: watch::Sender<bool>,
}

/// Syncs `board` with `config` and starts one probe task per `[[monitor]]`.
pub fn start(config: &Config, board: Arc<MonitorBoard>) -> Monitors {
    board.sync(config);
    let (stop, stopped) = watch::channel(false);
    for m in config.monitors.clone() {
        let (board, mut stopped) = (board.clone(), stopped.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(m.probe.interval_ms));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => return,
                }
                board.record(&m.name, timed_probe(&m.probe, m.target).await);
            }
        });
    }
    Monitors { _stop: stop }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let dir = std::env::temp_dir().join(format!("pop-monitor-test-{}-{}", std::process::id(), text.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pop.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path).unwrap()
    }

    const TWO: &str = "[[interface]]\nname = \"p0\"\n[[monitor]]\nname = \"fra1\"\ntarget = \"198.51.100.1:53\"\ntype = \"dns\"\nquery = \"example.com\"\n\
                       [[monitor]]\nname = \"ams1\"\ntarget = \"198.51.100.2:80\"\ntype = \"http\"\n";

    #[test]
    fn results_availability_and_a_reload_that_keeps_unchanged_targets() {
        let board = MonitorBoard::default();
        board.sync(&config(TWO));
        assert!(board.snapshot().iter().all(|s| s.up.is_none()), "unprobed until the first probe");
        board.record("fra1", Ok(Duration::from_millis(3)));
        board.record("fra1", Err("no answer within 1000 ms".into()));
        board.record("fra1", Ok(Duration::from_millis(5)));
        board.record("ams1", Err("http status 503, expected 200".into()));
        let s = board.snapshot();
        let fra1 = s.iter().find(|m| m.name == "fra1").unwrap();
        assert_eq!((fra1.up, fra1.probes_ok, fra1.probes_failed, fra1.last_error.as_deref()), (Some(true), 2, 1, None));
        let ams1 = s.iter().find(|m| m.name == "ams1").unwrap();
        assert_eq!((ams1.up, ams1.last_error.as_deref()), (Some(false), Some("http status 503, expected 200")));

        // ams1 moves to another address: its history starts over; fra1 keeps its own.
        board.sync(&config(&TWO.replace("198.51.100.2:80", "198.51.100.3:80")));
        let s = board.snapshot();
        assert_eq!(s.iter().find(|m| m.name == "fra1").unwrap().probes_ok, 2);
        assert_eq!(s.iter().find(|m| m.name == "ams1").unwrap().probes_failed, 0);
    }

    #[test]
    fn config_errors_name_the_line() {
        let dir = std::env::temp_dir().join(format!("pop-monitor-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pop.toml");
        for (text, want) in [
            (
                "[[interface]]\nname = \"p0\"\n[[monitor]]\nname = \"x\"\ntarget = \"198.51.100.1\"\ntype = \"tcp\"\n",
                ":5: monitor \"x\": target \"198.51.100.1\" is not address:port",
            ),
            (
                "[[interface]]\nname = \"p0\"\n[[monitor]]\nname = \"x\"\ntarget = \"198.51.100.1:53\"\ntype = \"dns\"\n",
                "a dns monitor needs `query`",
            ),
            (
                "[[interface]]\nname = \"p0\"\n[[monitor]]\nname = \"x\"\ntarget = \"198.51.100.1:80\"\ntype = \"http\"\nanswer = \"1.2.3.4\"\n",
                "`answer` is for dns monitors",
            ),
            (&format!("{TWO}[[monitor]]\nname = \"fra1\"\ntarget = \"198.51.100.9:53\"\ntype = \"tcp\"\n"), ":13: monitor \"fra1\" is defined twice"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = Config::load(&path).unwrap_err().to_string();
            assert!(err.contains(want), "{text}\n=> {err}");
        }
    }
}
