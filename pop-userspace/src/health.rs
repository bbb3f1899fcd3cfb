//! Health checks of load-balanced backends: one probe loop per backend (TCP connect,
//! HTTP request, or DNS query, to the backend's own address), rise/fall counting,
//! RTT percentiles over a window, last error and since-when. A state change wakes the
//! controller, which rebuilds the service's Maglev table at once.

use std::{
    collections::{HashMap, VecDeque},
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpStream, UdpSocket},
    sync::{mpsc, watch},
};

use crate::config::{Config, HealthCheck, ProbeKind, rcode_number};

/// RTT samples kept per backend for the percentiles.
const RTT_WINDOW: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Up,
    Down,
}

#[derive(Debug, Clone)]
struct Entry {
    checked: bool,
    state: State,
    since: SystemTime,
    last_error: Option<String>,
    rtts: VecDeque<Duration>,
    rtt_histogram: RttHistogram,
    ok_run: u32,
    fail_run: u32,
    drained: bool,
}

/// One backend as `pop status` shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BackendStatus {
    pub service: String,
    pub address: IpAddr,
    pub state: State,
    pub drained: bool,
    /// Seconds since the Unix epoch when `state` began.
    pub since: u64,
    pub health_checked: bool,
    pub last_error: Option<String>,
    pub rtt_p50_ms: Option<f64>,
    pub rtt_p99_ms: Option<f64>,
}

/// Upper bounds (seconds) of the probe round-trip histogram's buckets: from a backend in
/// the same rack to one across an ocean, and the probe timeouts above that.
pub const RTT_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// Successful probes' round-trip times since the backend was configured, as
/// Prometheus wants them: cumulative bucket counts, the count and the sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RttHistogram {
    /// `buckets[i]`: probes at or under `RTT_BUCKETS[i]`.
    pub buckets: [u64; RTT_BUCKETS.len()],
    pub count: u64,
    pub sum_seconds: f64,
}

impl RttHistogram {
    pub(crate) fn observe(&mut self, rtt: Duration) {
        let s = rtt.as_secs_f64();
        for (n, bound) in self.buckets.iter_mut().zip(RTT_BUCKETS) {
            if s <= bound {
                *n += 1;
            }
        }
        self.count += 1;
        self.sum_seconds += s;
    }
}

/// One backend's state as a controller leaves it for the next one (`<run_dir>/state.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SavedBackend {
    pub service: String,
    pub address: IpAddr,
    pub state: State,
    /// Seconds since the Unix epoch when `state` began.
    pub since: u64,
    pub last_error: Option<String>,
    pub drained: bool,
    /// Whether `state` came from health checks: an unchecked backend counts as up,
    /// which says nothing once the new config checks it.
    pub checked: bool,
}

/// Health of every configured backend, shared by the probe loops and the controller.
#[derive(Default)]
pub struct Board {
    inner: Mutex<HashMap<(String, IpAddr), Entry>>,
}

fn percentile(samples: &VecDeque<Duration>, p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    Some(v[i])
}

impl Board {
    /// Makes the board match `config`: new backends start down (up at once when their
    /// service has no health check); removed ones are forgotten; others keep their state.
    pub fn sync(&self, config: &Config) {
        let mut m = self.inner.lock().unwrap();
        let mut keep = std::collections::HashSet::new();
        for svc in &config.services {
            for b in &svc.backends {
                let key = (svc.name.clone(), b.address);
                keep.insert(key.clone());
                let checked = svc.health.is_some();
                let e = m.entry(key).or_insert_with(|| Entry {
                    checked,
                    state: if checked { State::Down } else { State::Up },
                    since: SystemTime::now(),
                    last_error: checked.then(|| "not probed yet".to_string()),
                    rtts: VecDeque::new(),
                    rtt_histogram: RttHistogram::default(),
                    ok_run: 0,
                    fail_run: 0,
                    drained: false,
                });
                if e.checked != checked {
                    e.checked = checked;
                    if !checked {
                        e.state = State::Up;
                        e.last_error = None;
                    }
                }
            }
        }
        m.retain(|k, _| keep.contains(k));
    }

    /// A copy of the board as [`Board::sync`] with `config` would leave it, for planning
    /// an apply without changing what the running config sees.
    pub fn preview(&self, config: &Config) -> Board {
        let copy = Board { inner: Mutex::new(self.inner.lock().unwrap().clone()) };
        copy.sync(config);
        copy
    }

    /// Whether the backend may take new flows' traffic at all (up).
    pub fn is_up(&self, service: &str, addr: IpAddr) -> bool {
        self.inner.lock().unwrap().get(&(service.to_string(), addr)).is_none_or(|e| e.state == State::Up)
    }

    pub fn is_drained(&self, service: &str, addr: IpAddr) -> bool {
        self.inner.lock().unwrap().get(&(service.to_string(), addr)).is_some_and(|e| e.drained)
    }

    /// `pop drain` / `pop undrain`.
    pub fn set_drain(&self, service: &str, addr: IpAddr, on: bool) -> Result<(), String> {
        let mut m = self.inner.lock().unwrap();
        let e = m.get_mut(&(service.to_string(), addr)).ok_or_else(|| format!("no backend {addr} in service {service:?}"))?;
        e.drained = on;
        Ok(())
    }

    /// What a restarted controller needs to carry on from this board.
    pub fn saved(&self) -> Vec<SavedBackend> {
        let m = self.inner.lock().unwrap();
        let mut v: Vec<SavedBackend> = m
            .iter()
            .map(|((service, address), e)| SavedBackend {
                service: service.clone(),
                address: *address,
                state: e.state,
                since: e.since.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                last_error: e.last_error.clone(),
                drained: e.drained,
                checked: e.checked,
            })
            .collect();
        v.sort_by(|a, b| (&a.service, a.address).cmp(&(&b.service, b.address)));
        v
    }

    /// Takes over what an earlier controller left for backends still configured (call
    /// after [`Board::sync`], before the probes start): drain always (an operator's
    /// decision stands until undone), health only when `health` (the state is recent
    /// enough to trust), so that backends do not all start down and flap the route.
    /// Probes then go on from there: `fall` failures take a restored-up backend down,
    /// `rise` successes bring a restored-down one up. Returns how many were restored.
    pub fn restore(&self, saved: &[SavedBackend], health: bool) -> usize {
        let mut m = self.inner.lock().unwrap();
        let mut restored = 0;
        for s in saved {
            let Some(e) = m.get_mut(&(s.service.clone(), s.address)) else { continue };
            e.drained = s.drained;
            if health && e.checked && s.checked {
                e.state = s.state;
                e.since = UNIX_EPOCH + Duration::from_secs(s.since);
                e.last_error = s.last_error.clone();
                e.ok_run = 0;
                e.fail_run = 0;
            }
            restored += 1;
        }
        restored
    }

    /// Records one probe; true if the backend's state changed.
    fn record(&self, service: &str, addr: IpAddr, result: Result<Duration, String>, check: &HealthCheck) -> bool {
        let mut m = self.inner.lock().unwrap();
        let Some(e) = m.get_mut(&(service.to_string(), addr)) else { return false };
        match result {
            Ok(rtt) => {
                e.rtts.push_back(rtt);
                e.rtt_histogram.observe(rtt);
                if e.rtts.len() > RTT_WINDOW {
                    e.rtts.pop_front();
                }
                e.ok_run += 1;
                e.fail_run = 0;
                if e.state == State::Down && e.ok_run >= check.rise {
                    e.state = State::Up;
                    e.since = SystemTime::now();
                    e.last_error = None;
                    log::info!("backend {addr} of {service:?} is up ({} successful probes)", e.ok_run);
                    return true;
                }
            }
            Err(err) => {
                e.fail_run += 1;
                e.ok_run = 0;
                e.last_error = Some(err.clone());
                if e.state == State::Up && e.fail_run >= check.fall {
                    e.state = State::Down;
                    e.since = SystemTime::now();
                    log::warn!("backend {addr} of {service:?} is down: {err}");
                    return true;
                }
            }
        }
        false
    }

    pub fn snapshot(&self) -> Vec<BackendStatus> {
        let m = self.inner.lock().unwrap();
        let mut v: Vec<BackendStatus> = m
            .iter()
            .map(|((svc, addr), e)| BackendStatus {
                service: svc.clone(),
                address: *addr,
                state: e.state,
                drained: e.drained,
                since: e.since.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                health_checked: e.checked,
                last_error: e.last_error.clone(),
                rtt_p50_ms: percentile(&e.rtts, 0.5),
                rtt_p99_ms: percentile(&e.rtts, 0.99),
            })
            .collect();
        v.sort_by(|a, b| (&a.service, a.address).cmp(&(&b.service, b.address)));
        v
    }

    /// Every backend's probe round-trip histogram, as (service, address, histogram).
    pub fn rtt_histograms(&self) -> Vec<(String, IpAddr, RttHistogram)> {
        let m = self.inner.lock().unwrap();
        let mut v: Vec<_> = m.iter().filter(|(_, e)| e.checked).map(|((svc, addr), e)| (svc.clone(), *addr, e.rtt_histogram.clone())).collect();
        v.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        v
    }

    /// Up backends of `service` (for the announce decision).
    pub fn up_count(&self, service: &str) -> usize {
        self.inner.lock().unwrap().iter().filter(|((s, _), e)| s == service && e.state == State::Up && !e.drained).count()
    }
}

/// The running probe loops; dropping this stops them.
pub struct Checks {
    _stop: watch::Sender<bool>,
}

/// Starts a probe loop for every backend of every service with a health check. Each
/// state change sends on `changed`.
pub fn start(config: &Config, board: Arc<Board>, changed: mpsc::UnboundedSender<()>) -> Checks {
    let (stop, stopped) = watch::channel(false);
    for svc in &config.services {
        let Some(check) = svc.health.clone() else { continue };
        for b in &svc.backends {
            let (board, changed, mut stopped, check) = (board.clone(), changed.clone(), stopped.clone(), check.clone());
            let service = svc.name.clone();
            let target = SocketAddr::new(b.address, check.port.unwrap_or(svc.port));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(check.interval_ms));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stopped.changed() => return,
                    }
                    if board.record(&service, target.ip(), timed_probe(&check, target).await, &check) {
                        let _ = changed.send(());
                    }
                }
            });
        }
    }
    Checks { _stop: stop }
}

/// One probe of `target` within `check.timeout_ms`: its round trip, or why it failed
/// (shared with [`crate::monitor`]).
pub(crate) async fn timed_probe(check: &HealthCheck, target: SocketAddr) -> Result<Duration, String> {
    let started = Instant::now();
    match tokio::time::timeout(Duration::from_millis(check.timeout_ms), probe(check, target)).await {
        Ok(Ok(())) => Ok(started.elapsed()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no answer within {} ms", check.timeout_ms)),
    }
}

async fn probe(check: &HealthCheck, target: SocketAddr) -> Result<(), String> {
    match check.kind {
        ProbeKind::Tcp => TcpStream::connect(target).await.map(|_| ()).map_err(|e| format!("tcp connect {target}: {e}")),
        ProbeKind::Http => {
            let mut s = TcpStream::connect(target).await.map_err(|e| format!("http connect {target}: {e}"))?;
            let host = check.host.clone().unwrap_or_else(|| target.ip().to_string());
            let req = format!("{} {} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: pop-health\r\n\r\n", check.method, check.path);
            s.write_all(req.as_bytes()).await.map_err(|e| format!("http send: {e}"))?;
            let mut buf = vec![0u8; 256];
            let n = s.read(&mut buf).await.map_err(|e| format!("http read: {e}"))?;
            let line = String::from_utf8_lossy(&buf[..n]);
            let status: u16 =
                line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("http: no status line from {target}"))?;
            if status == check.status { Ok(()) } else { Err(format!("http status {status}, expected {}", check.status)) }
        }
        ProbeKind::Dns => {
            use hickory_proto::{
                op::{Message, Query},
                rr::{Name, RecordType},
            };
            let name: Name = check.name.as_deref().unwrap_or(".").parse().map_err(|e| format!("dns name: {e}"))?;
            let qtype: RecordType = check.qtype.parse().map_err(|e| format!("dns qtype: {e:?}"))?;
            let mut msg = Message::query();
            msg.metadata.id = rand_id();
            msg.add_query(Query::query(name, qtype));
            let bytes = msg.to_vec().map_err(|e| format!("dns encode: {e}"))?;
            let bind: SocketAddr = if target.is_ipv6() { "[::]:0".parse().unwrap() } else { "0.0.0.0:0".parse().unwrap() };
            let sock = UdpSocket::bind(bind).await.map_err(|e| format!("dns socket: {e}"))?;
            sock.send_to(&bytes, target).await.map_err(|e| format!("dns send: {e}"))?;
            let mut buf = vec![0u8; 4096];
            loop {
                let (n, from) = sock.recv_from(&mut buf).await.map_err(|e| format!("dns recv: {e}"))?;
                if from != target || n < 12 || buf[..2] != bytes[..2] {
                    continue;
                }
                let want = rcode_number(&check.rcode).unwrap_or(0);
                let rcode = buf[3] & 0x0f;
                if rcode != want {
                    return Err(format!("dns rcode {rcode}, expected {}", check.rcode));
                }
                if u16::from_be_bytes([buf[6], buf[7]]) == 0 {
                    return Err("dns answer section empty".into());
                }
                if let Some(want) = &check.answer {
                    return expect_answer(&buf[..n], want);
                }
                return Ok(());
            }
        }
    }
}

/// Ok if an answer record's data reads `want` (names compared without the final dot).
fn expect_answer(response: &[u8], want: &str) -> Result<(), String> {
    let msg = hickory_proto::op::Message::from_vec(response).map_err(|e| format!("dns response unreadable: {e}"))?;
    let norm = |s: &str| s.trim_end_matches('.').to_ascii_lowercase();
    let got: Vec<String> = msg.answers.iter().map(|r| r.data.to_string()).collect();
    if got.iter().any(|g| norm(g) == norm(want)) { Ok(()) } else { Err(format!("dns answer {got:?}, expected {want:?}")) }
}

fn rand_id() -> u16 {
    (SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0) as u16) ^ 0x5a5a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_histogram_buckets_are_cumulative_in_seconds() {
        let mut h = RttHistogram::default();
        for ms in [0.3, 3.0, 3.0, 700.0, 9000.0] {
            h.observe(Duration::from_secs_f64(ms / 1000.0));
        }
        let at = |bound: f64| h.buckets[RTT_BUCKETS.iter().position(|&b| b == bound).unwrap()];
        assert_eq!((at(0.0005), at(0.005), at(0.5), at(1.0), at(2.5)), (1, 3, 3, 4, 4));
        assert_eq!(h.count, 5, "the +Inf bucket is the count");
        assert!((h.sum_seconds - 9.7063).abs() < 1e-9);
    }

    fn check(kind: ProbeKind) -> HealthCheck {
        HealthCheck {
            kind,
            interval_ms: 100,
            timeout_ms: 100,
            rise: 2,
            fall: 2,
            port: None,
            method: "GET".into(),
            path: "/healthz".into(),
            status: 200,
            host: None,
            name: Some("www.example.com".into()),
            qtype: "A".into(),
            rcode: "NOERROR".into(),
            answer: None,
        }
    }

    /// A UDP server answering every query with `rcode` and `answers` answer records.
    async fn dns_server(rcode: u8, answers: u16) -> SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
                let mut r = buf[..n].to_vec();
                r[2] |= 0x80;
                r[3] = rcode;
                r[6..8].copy_from_slice(&answers.to_be_bytes());
                let _ = sock.send_to(&r, peer).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn dns_probe_checks_rcode_and_a_non_empty_answer() {
        assert!(probe(&check(ProbeKind::Dns), dns_server(0, 1).await).await.is_ok());
        let e = probe(&check(ProbeKind::Dns), dns_server(3, 0).await).await.unwrap_err();
        assert!(e.contains("rcode 3"), "{e}");
        let e = probe(&check(ProbeKind::Dns), dns_server(0, 0).await).await.unwrap_err();
        assert!(e.contains("empty"), "{e}");
    }

    #[tokio::test]
    async fn http_and_tcp_probes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let status = if String::from_utf8_lossy(&buf[..n]).starts_with("GET /healthz ") { "200 OK" } else { "404 Not Found" };
                let _ = s.write_all(format!("HTTP/1.0 {status}\r\n\r\n").as_bytes()).await;
            }
        });
        assert!(probe(&check(ProbeKind::Tcp), addr).await.is_ok());
        assert!(probe(&check(ProbeKind::Http), addr).await.is_ok());
        let mut other = check(ProbeKind::Http);
        other.path = "/other".into();
        assert!(probe(&other, addr).await.unwrap_err().contains("status 404"));
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(probe(&check(ProbeKind::Tcp), closed).await.is_err());
    }

    #[test]
    fn rise_and_fall_move_the_state() {
        let board = Board::default();
        let cfg = crate::config::Config::parse(
            std::path::Path::new("pop.toml"),
            "[[interface]]\nname = \"e\"\n[[service]]\nname = \"web\"\nvips = [\"203.0.113.1\"]\nport = 80\n\
             backends = [{ address = \"198.51.100.1\" }]\n[service.health]\ntype = \"tcp\"\n",
        )
        .unwrap();
        board.sync(&cfg);
        let c = cfg.services[0].health.clone().unwrap();
        let b: IpAddr = "198.51.100.1".parse().unwrap();
        assert!(!board.is_up("web", b), "a checked backend starts down");
        assert!(!board.record("web", b, Ok(Duration::from_millis(1)), &c));
        assert!(board.record("web", b, Ok(Duration::from_millis(3)), &c), "up after rise = 2");
        assert!(board.is_up("web", b));
        assert!(!board.record("web", b, Err("refused".into()), &c));
        assert!(board.record("web", b, Err("refused".into()), &c), "down after fall = 2");
        let s = &board.snapshot()[0];
        assert_eq!((s.state, s.last_error.as_deref()), (State::Down, Some("refused")));
        assert_eq!(s.rtt_p50_ms, Some(3.0));
        assert!(board.set_drain("web", "192.0.2.9".parse().unwrap(), true).is_err());
    }

    fn two_backends() -> Config {
        crate::config::Config::parse(
            std::path::Path::new("pop.toml"),
            "[[interface]]\nname = \"e\"\n[[service]]\nname = \"web\"\nvips = [\"203.0.113.1\"]\nport = 80\n\
             backends = [{ address = \"198.51.100.1\" }, { address = \"198.51.100.2\" }]\n[service.health]\ntype = \"tcp\"\n",
        )
        .unwrap()
    }

    #[test]
    fn a_restored_board_carries_on_from_the_saved_state() {
        let cfg = two_backends();
        let c = cfg.services[0].health.clone().unwrap();
        let (b1, b2): (IpAddr, IpAddr) = ("198.51.100.1".parse().unwrap(), "198.51.100.2".parse().unwrap());
        let old = Board::default();
        old.sync(&cfg);
        old.record("web", b1, Ok(Duration::from_millis(1)), &c);
        old.record("web", b1, Ok(Duration::from_millis(1)), &c);
        old.set_drain("web", b2, true).unwrap();
        let mut saved = old.saved();
        assert_eq!(saved.iter().map(|s| (s.state, s.drained)).collect::<Vec<_>>(), [(State::Up, false), (State::Down, true)]);
        // A backend the new config no longer has is ignored.
        saved.push(SavedBackend { service: "gone".into(), address: b1, state: State::Up, since: 1, last_error: None, drained: true, checked: true });

        let new = Board::default();
        new.sync(&cfg);
        assert_eq!(new.restore(&saved, true), 2);
        assert!(new.is_up("web", b1), "restored up: no start from all down");
        assert!(!new.is_up("web", b2) && new.is_drained("web", b2));
        assert_eq!(new.up_count("web"), 1);
        assert_eq!(new.saved()[..], saved[..2]);
        // From there, probes decide as usual: fall = 2 failures take it down.
        assert!(!new.record("web", b1, Err("refused".into()), &c));
        assert!(new.record("web", b1, Err("refused".into()), &c));

        // Stale state: drain is kept, health is not (checked backends start down).
        let stale = Board::default();
        stale.sync(&cfg);
        assert_eq!(stale.restore(&saved, false), 2);
        assert!(!stale.is_up("web", b1));
        assert!(stale.is_drained("web", b2));

        // Up only because it was not checked before: no evidence for a checked one.
        let unchecked = Board::default();
        unchecked.sync(&cfg);
        let mut was_unchecked = saved.clone();
        was_unchecked[0].checked = false;
        unchecked.restore(&was_unchecked, true);
        assert!(!unchecked.is_up("web", b1));
    }
}
