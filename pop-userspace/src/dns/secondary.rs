//! Secondary zones (`[[dns.secondary]]`): received from their primaries by AXFR
//! (RFC 5936) and then by IXFR (RFC 1995, see [`super::ixfr`]; AXFR when a primary
//! has no differences or they do not apply), kept under `pop.state_dir` exactly as received (so a restart serves them
//! before the first refresh), refreshed when a primary's NOTIFY arrives (RFC 1996, from
//! the primaries only) and on the zone's SOA refresh and retry timers (RFC 1034 4.3.5),
//! and no longer served once the SOA expire time passes without reaching a primary.
//!
//! A changed zone is applied through the controller's ordinary transactional reload:
//! the stored copy is a zone source like a file, so it is parsed, checked, compiled and
//! flipped all or nothing.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Name, RData, Record, RecordType},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpStream, UdpSocket},
    sync::{mpsc, watch},
};

use super::ixfr;
use super::tsig::{TsigKey, Verifier};
use super::zone::{Zone, ZoneErrors, ZoneLimits, zone_from_transfer};
use crate::config::{Config, Secondary};

/// A transfer or SOA query that takes longer than this has failed.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);
/// SOA timers are clamped to these bounds: a zone's refresh of 0 must not spin, and
/// one of a week must not leave a PoP without NOTIFY stale for a week.
const MIN_TIMER: Duration = Duration::from_secs(1);
const MAX_TIMER: Duration = Duration::from_secs(24 * 3600);

/// The SOA fields a secondary runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoaTimers {
    pub serial: u32,
    pub refresh: Duration,
    pub retry: Duration,
    pub expire: Duration,
}

impl SoaTimers {
    fn of(record: &Record) -> Option<SoaTimers> {
        let RData::SOA(soa) = &record.data else { return None };
        let secs = |s: i32| Duration::from_secs(s.max(0) as u64).clamp(MIN_TIMER, MAX_TIMER);
        Some(SoaTimers { serial: soa.serial, refresh: secs(soa.refresh), retry: secs(soa.retry), expire: secs(soa.expire) })
    }
}

/// Whether serial `a` is newer than `b` (RFC 1982 arithmetic).
pub fn serial_newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

fn zone_name(zone: &str) -> Result<Name> {
    Name::from_ascii(zone).map_err(|e| anyhow!("zone {zone:?}: {e}"))
}

/// The SOA serial `primary` has for `zone` (one UDP query, signed with `tsig` if set).
pub async fn primary_serial(zone: &str, primary: SocketAddr, tsig: Option<&TsigKey>) -> Result<u32> {
    let mut q = Message::query();
    q.metadata.recursion_desired = false;
    q.add_query(Query::query(zone_name(zone)?, RecordType::SOA));
    let (bytes, request_mac) = signed(q.to_vec()?, tsig)?;
    let bind: SocketAddr = if primary.is_ipv6() { "[::]:0".parse()? } else { "0.0.0.0:0".parse()? };
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(primary).await?;
    sock.send(&bytes).await?;
    let mut buf = vec![0u8; 4096];
    let deadline = Instant::now() + TRANSFER_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, sock.recv(&mut buf)).await.map_err(|_| anyhow!("no SOA answer from {primary}"))??;
        let Ok(m) = Message::from_vec(&buf[..n]) else { continue };
        if m.metadata.id != q.metadata.id {
            continue;
        }
        if let Some(key) = tsig {
            Verifier::new(key, request_mac.clone()).check(&buf[..n]).with_context(|| format!("{primary}'s SOA answer"))?;
        }
        ensure!(m.metadata.response_code == ResponseCode::NoError, "{primary} answered the SOA query with {}", m.metadata.response_code);
        return m.answers.iter().find_map(SoaTimers::of).map(|t| t.serial).ok_or_else(|| anyhow!("{primary} sent no SOA for {zone}"));
    }
}

/// One AXFR of `zone` from `primary`: the response messages as received, at most
/// `max_bytes` of them, checked to open and close with the zone's SOA (and, with
/// `tsig`, every signed message verified in its chain).
pub async fn axfr(zone: &str, primary: SocketAddr, max_bytes: u64, tsig: Option<&TsigKey>) -> Result<Vec<Vec<u8>>> {
    let apex = zone_name(zone)?;
    let mut q = Message::query();
    q.add_query(Query::query(apex.clone(), RecordType::AXFR));
    let (messages, _) = transfer(&q, primary, max_bytes, tsig, |records| {
        let soas = records.iter().filter(|r| r.record_type() == RecordType::SOA && r.name == apex).count();
        ensure!(
            records.first().is_none_or(|r| r.record_type() == RecordType::SOA && r.name == apex),
            "the transfer does not start with the SOA of {zone}"
        );
        Ok(soas >= 2)
    })
    .await?;
    Ok(messages)
}

/// One IXFR (RFC 1995) of `zone` from `primary`, asking for the differences from the
/// stored copy whose SOA is `ours`: what the primary answered, and its messages as
/// received (the whole zone when it answered in AXFR form).
pub async fn ixfr(zone: &str, primary: SocketAddr, ours: &Record, max_bytes: u64, tsig: Option<&TsigKey>) -> Result<(ixfr::Answer, Vec<Vec<u8>>)> {
    let apex = zone_name(zone)?;
    let serial = SoaTimers::of(ours).ok_or_else(|| anyhow!("the stored copy of {zone} does not start with its SOA"))?.serial;
    let mut q = Message::query();
    q.add_query(Query::query(apex.clone(), RecordType::IXFR));
    q.add_authority(ours.clone());
    let (messages, records) = transfer(&q, primary, max_bytes, tsig, |records| ixfr::complete(records, &apex, serial)).await?;
    Ok((ixfr::parse(records, &apex, serial)?, messages))
}

/// Sends `q` to `primary` over TCP (signed with `tsig` if set) and reads answer
/// messages until `complete` says the records so far are the whole answer: the
/// messages as received and their answer records. At most `max_bytes` are read, and
/// with `tsig` every signed message is verified in its chain.
async fn transfer(
    q: &Message,
    primary: SocketAddr,
    max_bytes: u64,
    tsig: Option<&TsigKey>,
    mut complete: impl FnMut(&[Record]) -> Result<bool>,
) -> Result<(Vec<Vec<u8>>, Vec<Record>)> {
    let (bytes, request_mac) = signed(q.to_vec()?, tsig)?;
    let mut verifier = tsig.map(|k| Verifier::new(k, request_mac));
    let work = async {
        let mut s = TcpStream::connect(primary).await.with_context(|| format!("connecting to {primary}"))?;
        s.write_all(&(bytes.len() as u16).to_be_bytes()).await?;
        s.write_all(&bytes).await?;
        let (mut messages, mut records, mut total) = (Vec::new(), Vec::new(), 0u64);
        loop {
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await.context("the primary closed the transfer before its closing SOA")?;
            let len = u16::from_be_bytes(len) as usize;
            total += len as u64 + 2;
            ensure!(total <= max_bytes, "the transfer is over the zone's limit of {max_bytes} bytes (dns.zone_max_bytes)");
            let mut msg = vec![0u8; len];
            s.read_exact(&mut msg).await?;
            if let Some(v) = verifier.as_mut() {
                v.check(&msg).context("the transfer's TSIG")?;
            }
            let m = Message::from_vec(&msg).context("an unreadable transfer message")?;
            ensure!(m.metadata.id == q.metadata.id, "a transfer message for another query");
            if m.metadata.response_code != ResponseCode::NoError {
                bail!("{primary} refused the transfer: {}", m.metadata.response_code);
            }
            records.extend(m.answers);
            messages.push(msg);
            if complete(&records)? {
                return Ok::<_, anyhow::Error>((messages, records));
            }
        }
    };
    tokio::time::timeout(TRANSFER_TIMEOUT, work).await.map_err(|_| anyhow!("the transfer from {primary} took over {TRANSFER_TIMEOUT:?}"))?
}

/// `msg` signed with `tsig` (and the request MAC the answer chains from), or as is.
fn signed(msg: Vec<u8>, tsig: Option<&TsigKey>) -> Result<(Vec<u8>, Vec<u8>)> {
    match tsig {
        Some(k) => k.sign(&msg),
        None => Ok((msg, Vec::new())),
    }
}

/// Writes the messages of a transfer to `path` (each with its 2-byte length, as on the
/// wire), through a temporary file and a rename: a crash leaves the old copy or the new.
pub fn store(path: &Path, messages: &[Vec<u8>]) -> Result<()> {
    use std::io::Write as _;
    let dir = path.parent().ok_or_else(|| anyhow!("{} has no directory", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("axfr.tmp");
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    for m in messages {
        f.write_all(&(m.len() as u16).to_be_bytes())?;
        f.write_all(m)?;
    }
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// The SOA timers of a transfer: its first message's first record.
fn first_soa(first_message: &[u8]) -> Result<SoaTimers> {
    let m = Message::from_vec(first_message).context("an unreadable transfer message")?;
    m.answers.first().and_then(SoaTimers::of).ok_or_else(|| anyhow!("the transfer does not start with an SOA"))
}

/// The SOA timers of a stored transfer, from its first message only: the refresh task
/// needs them every cycle and must not decode the whole zone for them.
fn stored_timers(path: &Path) -> Result<SoaTimers> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut len = [0u8; 2];
    f.read_exact(&mut len).with_context(|| format!("{} is cut short", path.display()))?;
    let mut first = vec![0u8; u16::from_be_bytes(len) as usize];
    f.read_exact(&mut first).with_context(|| format!("{} is cut short", path.display()))?;
    first_soa(&first).with_context(|| path.display().to_string())
}

/// The records of a stored transfer (the closing SOA dropped) and its SOA timers.
pub(super) fn read_stored(path: &Path, max_bytes: u64) -> Result<(Name, Vec<Record>, SoaTimers)> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(meta.len() <= max_bytes, "{} is over the zone's limit of {max_bytes} bytes", path.display());
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        ensure!(at + 2 <= bytes.len(), "{} is cut short", path.display());
        let len = u16::from_be_bytes([bytes[at], bytes[at + 1]]) as usize;
        let msg = bytes.get(at + 2..at + 2 + len).ok_or_else(|| anyhow!("{} is cut short", path.display()))?;
        records.extend(Message::from_vec(msg).with_context(|| format!("{}: an unreadable message", path.display()))?.answers);
        at += 2 + len;
    }
    let first = records.first().ok_or_else(|| anyhow!("{} holds no records", path.display()))?;
    let timers = SoaTimers::of(first).ok_or_else(|| anyhow!("{} does not start with an SOA", path.display()))?;
    let apex = first.name.clone();
    // The closing SOA repeats the opening one.
    if records.len() > 1 && records.last().is_some_and(|r| r.record_type() == RecordType::SOA && r.name == apex) {
        records.pop();
    }
    Ok((apex, records, timers))
}

/// A stored transfer as a zone to serve, checked like a zone file.
pub fn load_stored(path: &Path, limits: &ZoneLimits) -> Result<Zone, ZoneErrors> {
    let fail = |e: anyhow::Error| ZoneErrors(vec![crate::dns::zone::ZoneError { file: path.to_path_buf(), line: None, message: format!("{e:#}") }]);
    let (apex, records, _) = read_stored(path, limits.max_bytes).map_err(fail)?;
    zone_from_transfer(path, &apex, records)
}

/// Every zone source of `config`'s block `i`: its files, then the stored copies of its
/// secondaries that have been transferred (one not transferred yet is not served; a
/// catalog zone never is, its members are).
pub fn zone_sources(config: &Config, i: usize) -> Vec<PathBuf> {
    let block = &config.dns[i];
    let stored = block.secondaries.iter().filter(|s| !s.catalog).map(|s| s.file(&config.pop.state_dir)).filter(|f| f.exists());
    block.zones.iter().cloned().chain(stored).collect()
}

/// After an apply: deletes the stored copies (current and expired) of zones `config`
/// no longer has (a catalog member removed at the primary, a secondary removed from
/// the config), so none is served stale if it comes back and none piles up on disk.
/// Nothing is deleted while a catalog has no readable copy: its members are unknown
/// then. Transfers in flight (`.tmp`) are left alone. The paths deleted.
pub fn purge_stale(config: &Config) -> Vec<PathBuf> {
    let dir = config.pop.state_dir.join("secondary");
    let mut kept = std::collections::HashSet::new();
    for block in &config.dns {
        for s in &block.secondaries {
            let file = s.file(&config.pop.state_dir);
            if s.catalog && read_stored(&file, block.zone_limits.max_bytes).is_err() {
                return Vec::new();
            }
            kept.insert(file.file_name().unwrap_or_default().to_os_string());
        }
    }
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut deleted = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let text = name.to_string_lossy();
        let current = text.strip_suffix(".expired").unwrap_or(&text);
        if !current.ends_with("axfr") || kept.contains(std::ffi::OsStr::new(current)) {
            continue;
        }
        if std::fs::remove_file(entry.path()).is_ok() {
            deleted.push(entry.path());
        }
    }
    deleted
}

/// Transfers every secondary that has no stored copy yet, before the first apply (so a
/// new PoP answers its zones from the start); one that fails is retried by its task.
pub async fn first_transfers(config: &Config) {
    for block in &config.dns {
        for s in &block.secondaries {
            let file = s.file(&config.pop.state_dir);
            if file.exists() {
                continue;
            }
            match transfer_from_any(s, &file, block.zone_limits.max_bytes).await {
                Ok(serial) => log::info!("secondary {}: transferred serial {serial}", s.zone),
                Err(e) => log::warn!("secondary {}: not served until a transfer succeeds: {e:#}", s.zone),
            }
        }
    }
}

/// AXFR from the first primary that answers; stores it; its serial.
async fn transfer_from_any(s: &Secondary, file: &Path, max_bytes: u64) -> Result<u32> {
    let mut errors = Vec::new();
    for &p in &s.primaries {
        match axfr(&s.zone, p, max_bytes, s.tsig.as_ref()).await {
            Ok(messages) => {
                store(file, &messages)?;
                return Ok(first_soa(&messages[0])?.serial);
            }
            Err(e) => errors.push(format!("{p}: {e:#}")),
        }
    }
    bail!("{}", errors.join("; "))
}

/// Who may NOTIFY one secondary zone, and how to wake its task.
struct NotifyPolicy {
    primaries: Vec<IpAddr>,
    /// With a key, a NOTIFY must be signed with it, and is answered signed.
    tsig: Option<TsigKey>,
    wake: mpsc::UnboundedSender<()>,
}

/// The NOTIFY policy of each secondary zone, by zone name.
type NotifyTable = HashMap<String, NotifyPolicy>;

/// The running secondaries' NOTIFY table, read by the DNS server (which has no handle
/// on the controller's tasks).
static NOTIFY: Mutex<Option<NotifyTable>> = Mutex::new(None);

/// The server's answer to a NOTIFY (opcode 4) from `peer`, or None if `msg` is not one.
/// From a primary of a secondary zone (signed with the zone's TSIG key when it has
/// one): NOERROR, signed likewise, and that zone is checked at once. A bad or missing
/// signature: NOTAUTH (RFC 8945 5.2). Any other sender or zone: REFUSED (RFC 1996
/// section 3.10). Neither wakes anything.
pub fn answer_notify(msg: &[u8], peer: IpAddr) -> Option<Vec<u8>> {
    if msg.len() < 12 || (msg[2] >> 3) & 0x0f != 4 || msg[2] & 0x80 != 0 {
        return None;
    }
    let q = Message::from_vec(msg).ok()?;
    let zone = q.queries.first().map(|q| q.name.to_lowercase().to_string())?;
    let zone = if zone.ends_with('.') { zone } else { zone + "." };
    let table = NOTIFY.lock().unwrap();
    let policy = table.as_ref().and_then(|t| t.get(&zone)).filter(|p| p.primaries.contains(&peer));
    let (rcode, sign) = match policy {
        None => {
            log::debug!("NOTIFY for {zone} from {peer} refused: not a primary of a secondary zone here");
            (ResponseCode::Refused, None)
        }
        Some(p) => match p.tsig.as_ref().map(|k| k.verify_request(msg).map(|mac| (k.clone(), mac))).transpose() {
            Err(e) => {
                log::warn!("NOTIFY for {zone} from {peer} refused: {e:#}");
                (ResponseCode::NotAuth, None)
            }
            Ok(signed) => {
                log::info!(
                    "NOTIFY for {zone} from {peer}{}: checking the primary",
                    signed.as_ref().map(|(k, _)| format!(" (TSIG {} verified)", k.name)).unwrap_or_default()
                );
                let _ = p.wake.send(());
                (ResponseCode::NoError, signed)
            }
        },
    };
    drop(table);
    let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Notify);
    r.metadata.authoritative = true;
    r.metadata.response_code = rcode;
    r.queries = q.queries;
    let bytes = r.to_vec().ok()?;
    match sign {
        Some((key, mac)) => key.sign_response(&mac, &bytes).ok(),
        None => Some(bytes),
    }
}

/// A secondary zone's stored copy as Prometheus shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneState {
    pub serial: u32,
    /// When it stops being served unless a primary confirms it first.
    pub expires_at: SystemTime,
}

/// Every configured secondary zone and its stored copy (None: nothing stored).
static STATES: Mutex<Option<std::collections::BTreeMap<String, Option<ZoneState>>>> = Mutex::new(None);

/// The secondary zones of the running config, with their stored copies.
pub fn states() -> Vec<(String, Option<ZoneState>)> {
    STATES.lock().unwrap().as_ref().map(|m| m.iter().map(|(z, s)| (z.clone(), *s)).collect()).unwrap_or_default()
}

/// The running secondary tasks, one per zone; dropping this stops them.
#[derive(Default)]
pub struct Secondaries {
    running: HashMap<String, Running>,
}

/// One zone's refresh task: what it was started with, its NOTIFY wake-up, and its stop
/// (dropping the sender ends the task).
struct Running {
    settings: TaskSettings,
    wake: mpsc::UnboundedSender<()>,
    _stop: watch::Sender<bool>,
}

/// What a refresh task depends on; a reload that changes none of it keeps the task,
/// with its timers, instead of asking every primary again.
#[derive(Clone, PartialEq, Eq)]
struct TaskSettings {
    zone: String,
    primaries: Vec<SocketAddr>,
    tsig: Option<TsigKey>,
    file: PathBuf,
    max_bytes: u64,
}

/// How [`Secondaries::update`] changed the running tasks, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TaskChanges {
    pub started: usize,
    pub stopped: usize,
    pub kept: usize,
}

impl Secondaries {
    /// Brings the refresh tasks in line with `config`'s secondary zones: a zone whose
    /// primaries, key, file and size limit are unchanged keeps its task (a reload of a
    /// PoP with ten thousand catalog members does not query ten thousand SOAs); a new
    /// or changed zone gets a task of its own, and a zone gone has its task stopped.
    /// Each task sends its zone's name on `changed` after storing a new transfer or
    /// after the zone expired: the controller then reloads.
    pub fn update(&mut self, config: &Config, changed: &mpsc::UnboundedSender<String>) -> TaskChanges {
        let mut wanted: HashMap<String, (Secondary, TaskSettings)> = HashMap::new();
        for block in &config.dns {
            for s in &block.secondaries {
                let settings = TaskSettings {
                    zone: s.zone.clone(),
                    primaries: s.primaries.clone(),
                    tsig: s.tsig.clone(),
                    file: s.file(&config.pop.state_dir),
                    max_bytes: block.zone_limits.max_bytes,
                };
                wanted.insert(s.zone.clone(), (s.clone(), settings));
            }
        }
        let mut changes = TaskChanges::default();
        let before = self.running.len();
        self.running.retain(|zone, r| wanted.get(zone).is_some_and(|(_, w)| *w == r.settings));
        changes.stopped = before - self.running.len();
        changes.kept = self.running.len();
        let mut new_tasks = Vec::new();
        for (zone, (secondary, settings)) in wanted {
            if self.running.contains_key(&zone) {
                continue;
            }
            let (wake, wake_rx) = mpsc::unbounded_channel();
            let (stop, stopped) = watch::channel(false);
            let task = Task { secondary, file: settings.file.clone(), max_bytes: settings.max_bytes, changed: changed.clone() };
            self.running.insert(zone, Running { settings, wake, _stop: stop });
            new_tasks.push((task, wake_rx, stopped));
        }
        changes.started = new_tasks.len();
        let table: NotifyTable = self
            .running
            .iter()
            .map(|(zone, r)| {
                let policy = NotifyPolicy {
                    primaries: r.settings.primaries.iter().map(|p| p.ip()).collect(),
                    tsig: r.settings.tsig.clone(),
                    wake: r.wake.clone(),
                };
                (zone.clone(), policy)
            })
            .collect();
        *NOTIFY.lock().unwrap() = Some(table);
        // What is stored is what is served from the first apply on: published before any
        // task asks its primaries, so a scrape (or a reload) never shows a served zone as 0.
        let zones = self.running.iter().map(|(zone, r)| (zone.clone(), zone_state(stored_state(&r.settings.file))));
        *STATES.lock().unwrap() = Some(zones.collect());
        for (task, wake_rx, stopped) in new_tasks {
            tokio::spawn(task.run(wake_rx, stopped));
        }
        changes
    }
}

/// Starts one refresh task per secondary zone of `config` (see [`Secondaries::update`]).
pub fn start(config: &Config, changed: mpsc::UnboundedSender<String>) -> Secondaries {
    let mut s = Secondaries::default();
    s.update(config, &changed);
    s
}

/// A stored copy's SOA timers and when a primary last confirmed it (the file's
/// modification time), if there is one.
fn stored_state(file: &Path) -> Option<(SoaTimers, SystemTime)> {
    let timers = stored_timers(file).ok()?;
    let confirmed = std::fs::metadata(file).and_then(|m| m.modified()).ok()?;
    Some((timers, confirmed))
}

fn zone_state(stored: Option<(SoaTimers, SystemTime)>) -> Option<ZoneState> {
    stored.map(|(t, confirmed)| ZoneState { serial: t.serial, expires_at: confirmed + t.expire })
}

struct Task {
    secondary: Secondary,
    file: PathBuf,
    max_bytes: u64,
    changed: mpsc::UnboundedSender<String>,
}

impl Task {
    fn stored(&self) -> Option<(SoaTimers, SystemTime)> {
        stored_state(&self.file)
    }

    async fn run(self, mut wake: mpsc::UnboundedReceiver<()>, mut stopped: watch::Receiver<bool>) {
        let zone = &self.secondary.zone;
        loop {
            let stored = self.stored();
            let wait = match self.check(stored).await {
                Ok(timers) => timers.refresh,
                Err(e) => {
                    let (retry, expired) = match stored {
                        Some((t, confirmed)) => (t.retry, confirmed.elapsed().unwrap_or_default() > t.expire),
                        None => (Duration::from_secs(5), false),
                    };
                    log::warn!("secondary {zone}: no primary reached ({e:#}); retrying in {retry:?}");
                    if expired {
                        log::error!("secondary {zone}: expired (no primary reached within the SOA expire time): no longer served");
                        let _ = std::fs::rename(&self.file, self.file.with_extension("axfr.expired"));
                        let _ = self.changed.send(zone.clone());
                    }
                    retry
                }
            };
            self.publish(self.stored());
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                Some(()) = wake.recv() => {}
                _ = stopped.changed() => return,
            }
        }
    }

    /// Brings the stored copy up to `primary`'s by IXFR: the differences applied to it,
    /// or the whole zone when the primary answers in AXFR form. How, for the log; an
    /// error (the primary refused, the differences do not apply) means: do an AXFR.
    async fn incremental(&self, primary: SocketAddr) -> Result<String> {
        let zone = &self.secondary.zone;
        let (_, records, _) = read_stored(&self.file, self.max_bytes)?;
        let (answer, messages) = ixfr(zone, primary, &records[0], self.max_bytes, self.secondary.tsig.as_ref()).await?;
        match answer {
            ixfr::Answer::UpToDate => bail!("the primary's IXFR answer says the stored copy is current, its SOA answer said otherwise"),
            ixfr::Answer::Whole => {
                store(&self.file, &messages)?;
                Ok("IXFR (answered with the whole zone)".into())
            }
            ixfr::Answer::Changes { soa, changes } => {
                let (deleted, added) = changes.iter().fold((0, 0), |(d, a), c| (d + c.deleted.len(), a + c.added.len()));
                let zone = ixfr::apply(records, *soa, &changes)?;
                store(&self.file, &ixfr::to_messages(&zone)?)?;
                Ok(format!("IXFR ({} change(s): {deleted} record(s) deleted, {added} added)", changes.len()))
            }
        }
    }

    /// Records the stored copy's serial and expiry for Prometheus.
    fn publish(&self, stored: Option<(SoaTimers, SystemTime)>) {
        if let Some(states) = STATES.lock().unwrap().as_mut() {
            states.insert(self.secondary.zone.clone(), zone_state(stored));
        }
    }

    /// Asks the primaries for their serial; transfers when it is newer than the stored
    /// one (or nothing is stored). The timers now in force.
    async fn check(&self, stored: Option<(SoaTimers, SystemTime)>) -> Result<SoaTimers> {
        let zone = &self.secondary.zone;
        let mut errors = Vec::new();
        for &p in &self.secondary.primaries {
            let serial = match primary_serial(zone, p, self.secondary.tsig.as_ref()).await {
                Ok(s) => s,
                Err(e) => {
                    errors.push(format!("{p}: {e:#}"));
                    continue;
                }
            };
            if let Some((t, _)) = stored.filter(|(t, _)| !serial_newer(serial, t.serial)) {
                // Up to date: the primary confirmed the data, which restarts expiry.
                if let Ok(f) = std::fs::File::options().append(true).open(&self.file) {
                    let _ = f.set_modified(SystemTime::now());
                }
                return Ok(t);
            }
            let how = match stored {
                Some(_) => self.incremental(p).await,
                None => Err(anyhow!("nothing stored")),
            };
            let how = match how {
                Ok(how) => Ok(how),
                Err(e) => {
                    if stored.is_some() {
                        log::info!("secondary {zone}: no IXFR from {p} ({e:#}): transferring the whole zone");
                    }
                    axfr(zone, p, self.max_bytes, self.secondary.tsig.as_ref()).await.and_then(|m| store(&self.file, &m)).map(|()| "AXFR".to_string())
                }
            };
            match how {
                Ok(how) => {
                    let (t, _) = self.stored().ok_or_else(|| anyhow!("the stored transfer of {zone} is unreadable"))?;
                    log::info!("secondary {zone}: transferred serial {} from {p} by {how}", t.serial);
                    let _ = self.changed.send(zone.clone());
                    return Ok(t);
                }
                Err(e) => errors.push(format!("{p}: {e:#}")),
            }
        }
        bail!("{}", errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NOTIFY and STATES are process-wide: tests that set them take turns.
    static GLOBALS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn serials_compare_in_rfc_1982_arithmetic() {
        assert!(serial_newer(2, 1));
        assert!(!serial_newer(1, 1));
        assert!(!serial_newer(1, 2));
        assert!(serial_newer(1, u32::MAX), "wraps");
        assert!(!serial_newer(0x8000_0001, 1), "half the space away is not newer");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_stored_copy_is_published_before_any_primary_is_asked() {
        let _turn = GLOBALS.lock().unwrap_or_else(|e| e.into_inner());
        let dir = std::env::temp_dir().join(format!("pop-secondary-publish-{}", std::process::id()));
        let text = format!(
            "[pop]\nstate_dir = \"{}\"\n[[interface]]\nname = \"e\"\n[[dns]]\nvips = [\"203.0.113.53\"]\n\
             [[dns.secondary]]\nzone = \"example.net\"\nprimaries = [\"192.0.2.1\"]\n",
            dir.display()
        );
        let config = crate::config::Config::parse(Path::new("pop.toml"), &text).unwrap();
        let file = config.dns[0].secondaries[0].file(&config.pop.state_dir);
        let mut axfr = Message::new(1, MessageType::Response, OpCode::Query);
        let soa = hickory_proto::rr::rdata::SOA::new(Name::root(), Name::root(), 7, 3600, 600, 86400, 300);
        axfr.add_answer(Record::from_rdata(Name::from_ascii("example.net.").unwrap(), 300, hickory_proto::rr::RData::SOA(soa)));
        store(&file, &[axfr.to_vec().unwrap()]).unwrap();
        let (tx, _rx) = mpsc::unbounded_channel();
        // On a current-thread runtime no spawned task runs before this function yields:
        // what states() shows here came from start() itself.
        let _running = start(&config, tx);
        let states = states();
        assert_eq!(states.len(), 1);
        assert_eq!((states[0].0.as_str(), states[0].1.map(|s| s.serial)), ("example.net.", Some(7)), "a reload shows the stored copy at once");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_reload_keeps_the_refresh_tasks_of_unchanged_zones() {
        let _turn = GLOBALS.lock().unwrap_or_else(|e| e.into_inner());
        let config = |zones: &[(&str, &str)]| {
            let mut text = "[[interface]]\nname = \"e\"\n[[dns]]\nvips = [\"203.0.113.53\"]\n".to_string();
            for (zone, primary) in zones {
                text += &format!("[[dns.secondary]]\nzone = \"{zone}\"\nprimaries = [\"{primary}\"]\n");
            }
            crate::config::Config::parse(Path::new("pop.toml"), &text).unwrap()
        };
        let (tx, _rx) = mpsc::unbounded_channel();
        // No task runs: on a current-thread runtime nothing spawned runs before a yield.
        let mut s = Secondaries::default();
        let a = config(&[("a.example", "192.0.2.1"), ("b.example", "192.0.2.1"), ("c.example", "192.0.2.1")]);
        assert_eq!(s.update(&a, &tx), TaskChanges { started: 3, stopped: 0, kept: 0 });
        assert_eq!(s.update(&a, &tx), TaskChanges { started: 0, stopped: 0, kept: 3 }, "the same config restarts nothing");
        // b gets another primary, c goes, d comes: a keeps its task.
        let b = config(&[("a.example", "192.0.2.1"), ("b.example", "192.0.2.2"), ("d.example", "192.0.2.1")]);
        assert_eq!(s.update(&b, &tx), TaskChanges { started: 2, stopped: 2, kept: 1 });
        let notify = NOTIFY.lock().unwrap();
        let zones: std::collections::BTreeSet<&str> = notify.as_ref().unwrap().keys().map(|z| z.as_str()).collect();
        assert_eq!(zones, ["a.example.", "b.example.", "d.example."].into(), "NOTIFY follows the running zones");
        assert_eq!(notify.as_ref().unwrap()["b.example."].primaries, vec!["192.0.2.2".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn stored_copies_of_zones_no_longer_configured_are_purged_unless_a_catalog_is_unread() {
        let dir = std::env::temp_dir().join(format!("pop-secondary-purge-{}", std::process::id()));
        let stored = dir.join("secondary");
        std::fs::create_dir_all(&stored).unwrap();
        let names = ["example.net.axfr", "gone.org.axfr", "gone.org.axfr.expired", "in-flight.org.axfr.tmp", "notes.txt"];
        for n in names {
            std::fs::write(stored.join(n), b"x").unwrap();
        }
        let parse = |extra: &str| {
            let text = format!(
                "[pop]\nstate_dir = \"{}\"\n[[interface]]\nname = \"e\"\n[[dns]]\nvips = [\"203.0.113.53\"]\n\
                 [[dns.secondary]]\nzone = \"example.net\"\nprimaries = [\"192.0.2.1\"]\n{extra}",
                dir.display()
            );
            crate::config::Config::parse(Path::new("pop.toml"), &text).unwrap()
        };
        let left = || {
            let mut v: Vec<String> = std::fs::read_dir(&stored).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            v.sort();
            v
        };
        // A catalog without a readable copy: its members are unknown, nothing goes.
        let with_catalog = parse("[[dns.secondary]]\nzone = \"catalog.example\"\nprimaries = [\"192.0.2.1\"]\ncatalog = true\n");
        assert!(purge_stale(&with_catalog).is_empty());
        assert_eq!(left().len(), names.len());
        // Otherwise: the copies of gone.org go, the configured zone, a transfer in flight
        // and other files stay.
        let deleted = purge_stale(&parse(""));
        assert_eq!(deleted.len(), 2, "{deleted:?}");
        assert_eq!(left(), ["example.net.axfr", "in-flight.org.axfr.tmp", "notes.txt"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn notify_is_answered_only_for_a_secondary_zone_and_from_its_primaries() {
        let _turn = GLOBALS.lock().unwrap_or_else(|e| e.into_inner());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let policy = NotifyPolicy { primaries: vec!["192.0.2.1".parse().unwrap()], tsig: None, wake: tx };
        *NOTIFY.lock().unwrap() = Some([("example.net.".to_string(), policy)].into());
        let mut n = Message::new(7, MessageType::Query, OpCode::Notify);
        n.add_query(Query::query(Name::from_ascii("Example.NET.").unwrap(), RecordType::SOA));
        let bytes = n.to_vec().unwrap();
        let ok = Message::from_vec(&answer_notify(&bytes, "192.0.2.1".parse().unwrap()).unwrap()).unwrap();
        assert_eq!((ok.metadata.id, ok.metadata.op_code, ok.metadata.response_code), (7, OpCode::Notify, ResponseCode::NoError));
        assert!(rx.try_recv().is_ok(), "the zone's task is woken");
        let no = Message::from_vec(&answer_notify(&bytes, "198.51.100.9".parse().unwrap()).unwrap()).unwrap();
        assert_eq!(no.metadata.response_code, ResponseCode::Refused);
        assert!(rx.try_recv().is_err(), "a stranger's NOTIFY wakes nothing");
        assert!(answer_notify(&Message::query().to_vec().unwrap(), "192.0.2.1".parse().unwrap()).is_none(), "a query is not a NOTIFY");
        *NOTIFY.lock().unwrap() = None;
    }
}
