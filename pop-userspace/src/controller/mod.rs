//! `pop run`: attach the data path, keep the controller's single-instance lock, forward
//! eBPF log lines, and run until SIGINT/SIGTERM. Stopping the controller leaves the
//! data path attached and pinned; the next `pop run` takes it over.

use std::fs;

use anyhow::{Context as _, Result, bail};
use log::{info, warn};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

pub mod apply;
pub mod control;
pub mod gate;
mod metrics_listener;
pub mod run_state;

use apply::Live;
use metrics_listener::serve_metrics;
use run_state::{RunLock, read_status, write_status};

use crate::{
    config::Config,
    datapath::{loader, vip::VipTable},
    dns::{
        runtime::{self, DnsRuntime, DnsStage},
        table::DnsMaps,
    },
    lb::runtime::LbRuntime,
};

/// Everything `pop check`, `pop run` and `pop reload` refuse, in one place so that what
/// `check` accepts the others accept (the config itself is validated when loaded): the
/// host (interfaces exist, forwarding where services need it), the zones, and the DNS
/// tables compiled and fitting `pop.dns_table_size` on their own. Only what depends on
/// the live data path stays for apply time (a reload needs room for old and new DNS
/// answers at once). Errors are `file:line: message`, one per line.
pub fn validate(config: &Config) -> Result<Vec<runtime::Prepared>, String> {
    let mut errors: Vec<String> = config
        .interfaces
        .iter()
        .filter(|i| loader::ifindex(&i.name).is_none())
        .map(|i| config.error_at(i.line, format!("interface {:?} does not exist on this host", i.name)).to_string())
        .collect();
    if let Some(a) = config.anycast.as_ref().filter(|a| loader::ifindex(&a.interface).is_none()) {
        errors.push(config.error_at(a.line, format!("anycast.interface {:?} does not exist on this host", a.interface)).to_string());
    }
    if errors.is_empty()
        && let Err(e) = crate::lb::runtime::check_forwarding(config)
    {
        errors.push(format!("{e:#}"));
    }
    match runtime::prepare(config) {
        Ok(prepared) if errors.is_empty() => match dns_tables_fit(config, &prepared) {
            Ok(()) => return Ok(prepared),
            Err(e) => errors.push(e),
        },
        Ok(_) => {}
        Err(e) => errors.push(e),
    }
    Err(errors.join("\n"))
}

/// Whether every block's compiled DNS table fits the maps `pop.dns_table_size` sizes.
fn dns_tables_fit(config: &Config, prepared: &[runtime::Prepared]) -> Result<(), String> {
    let size = config.pop.dns_table_size;
    let answers: usize = prepared.iter().map(|p| p.table.keys.len()).sum();
    let capacity = pop_common::dns_tail_capacity(size);
    let mut tails = [0usize; 3];
    for p in prepared {
        for (class, t) in p.table.tails.iter().enumerate() {
            tails[class] += t.len();
        }
    }
    let over_tails = (0..3).find(|&c| tails[c] > capacity[c] as usize);
    if answers > size as usize || over_tails.is_some() {
        let what = match over_tails {
            Some(c) if answers <= size as usize => format!(
                "{} distinct answers of up to {} bytes, and its answer store holds {}",
                tails[c],
                pop_common::DNS_TAIL_CLASSES[c],
                capacity[c]
            ),
            _ => format!("{answers} answers, and it holds {size}"),
        };
        return Err(format!(
            "{}: the DNS fast-path table of all [[dns]] blocks needs {what}: raise pop.dns_table_size \
             (a reload needs room for the old and the new answers at once)",
            config.path.display()
        ));
    }
    Ok(())
}

pub async fn run(mut config: Config) -> Result<()> {
    let _lock = RunLock::acquire(&config.pop.run_dir)?;
    let started = std::time::SystemTime::now();
    // Before anything slow: keep the previous controller's announcements from lapsing
    // while this one starts (see `bridge_leases`).
    let saved = run_state::read_state(&config.pop.run_dir);
    let mut bridge = crate::anycast::runtime::Bridge::default();
    if let Some(s) = &saved
        && let Some(age) = s.age(started)
    {
        bridge = crate::anycast::runtime::bridge_leases(&config, &s.announced, age).await;
    }
    // Zones are parsed and compiled before the data path is touched: a broken zone
    // stops the start with its file and line, and nothing gets attached.
    // A secondary zone never transferred is fetched first, so a new PoP serves it from
    // the first apply; one stored before is served as stored and refreshed later.
    crate::dns::secondary::first_transfers(&config).await;
    // A catalog's members are zones of the config from here on (and each reload).
    if expand_catalogs(&mut config) {
        crate::dns::secondary::first_transfers(&config).await;
    }
    if cfg!(debug_assertions) && config.pop.fault_inject.as_deref() == Some("dns-stall") {
        crate::dns::server::FAULT_STALL.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    if cfg!(debug_assertions) && config.pop.fault_inject.as_deref() == Some("slow-start") {
        warn!("pop.fault_inject = \"slow-start\": waiting 7 s before loading the XDP object");
        tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    }
    let prepared = validate(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
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

    let mut live = Live {
        vips: VipTable::from_ebpf(&mut datapath.ebpf)?,
        dns: DnsRuntime::new(DnsMaps::from_ebpf(&mut datapath.ebpf)?),
        lb: LbRuntime::from_ebpf(&mut datapath.ebpf)?,
        http: crate::http::HttpMaps::from_ebpf(&mut datapath.ebpf)?,
    };
    let board = std::sync::Arc::new(crate::health::Board::default());
    restore_state(&config, &board, saved, started);
    let (changed_tx, mut changed_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut checks = crate::health::start(&config, board.clone(), changed_tx.clone());
    let monitor_board = std::sync::Arc::new(crate::monitor::MonitorBoard::default());
    let mut monitors = crate::monitor::start(&config, monitor_board.clone());
    // A secondary zone that changed (or expired) is applied by an ordinary reload.
    let (zone_tx, mut zone_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut secondaries = crate::dns::secondary::start(&config, zone_tx.clone());
    let (ctl_tx, mut ctl_rx) = tokio::sync::mpsc::unbounded_channel();
    control::listen(&config.pop.run_dir, ctl_tx)?;
    let spikes = std::sync::Arc::new(std::sync::Mutex::new(0u64));
    let announced = std::sync::Arc::new(std::sync::Mutex::new(Vec::<crate::anycast::runtime::VipStatus>::new()));
    // Read-side handles opened once for the whole run, shared by the metrics listener
    // and the traffic analysis task; both read them on blocking threads.
    let pinned = std::sync::Arc::new(crate::datapath::pinned::PinnedMaps::open(&datapath.pins.root)?);
    // The config the listener and analysis name things by follows every applied reload.
    let (current_tx, current_rx) = tokio::sync::watch::channel(std::sync::Arc::new(config.clone()));
    if let Some(addr) = config.pop.metrics_listen {
        let listener = metrics_listener::Shared {
            config: current_rx.clone(),
            maps: pinned.clone(),
            board: board.clone(),
            monitors: monitor_board.clone(),
            spikes: spikes.clone(),
            announced: announced.clone(),
        };
        serve_metrics(addr, listener).await?;
    }
    let analysis = tokio::spawn(crate::analysis::watch_spikes(pinned.clone(), spikes.clone()));
    let started = apply::apply(&mut live, &config, prepared, &board).map_err(anyhow::Error::from);
    write_status(&config.pop.run_dir, 0, &started);
    started?;
    purge_stored_zones(&config);

    let datapath_status = crate::status::DatapathStatus {
        prog_id: datapath.prog_id,
        loaded_at: datapath.loaded_at.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs()),
        object_sha256: env!("POP_XDP_SHA256").into(),
    };
    bridge.end(); // the takeover decides from here, with nothing renewing behind it
    let mut anycast = crate::anycast::runtime::Anycast::new(&config, &board, &live.dns, datapath.prog_id).await?;
    let check_ms = config.anycast.as_ref().map(|a| a.check_ms).unwrap_or(1000);
    let mut anycast_tick = tokio::time::interval(std::time::Duration::from_millis(check_ms));
    // Lease renewals, and the saved state's heartbeat: three per lease (once a second
    // without leases, for the state alone).
    let renew_every = config.anycast.as_ref().and_then(|a| a.renew_every()).unwrap_or(std::time::Duration::from_secs(1));
    let mut renew_tick = tokio::time::interval(renew_every);
    renew_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    save_state(&config, &board, anycast.as_ref());

    let names: Vec<&str> = config.interfaces.iter().map(|i| i.name.as_str()).collect();
    info!(
        "ready: pop {:?} serving on {} (pinned under {}); SIGINT/SIGTERM stops the controller, \
         the data path stays attached until `pop detach`",
        config.pop.name,
        names.join(", "),
        datapath.pins.root.display()
    );
    crate::systemd::ready(&format!("serving on {}", names.join(", ")));

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut seq = 0;
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::unbounded_channel();
    let (mut reload_in_flight, mut reload_again) = (false, false);
    let mut config = config;
    let mut neighbours = tokio::time::interval(std::time::Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = neighbours.tick() => crate::lb::runtime::prime_neighbours(&config),
            Some(()) = changed_rx.recv() => {
                while changed_rx.try_recv().is_ok() {}
                if let Err(failed) = live.lb.apply_health(&config, &board) {
                    warn!("applying a backend health change failed:\n{}", failed.join("\n"));
                }
                save_state(&config, &board, anycast.as_ref());
            }
            _ = anycast_tick.tick(), if anycast.is_some() => {
                if let Some(a) = anycast.as_mut() {
                    let before = a.on_interface();
                    a.tick(&config, &board, &live.dns).await;
                    *announced.lock().unwrap() = a.status();
                    if a.on_interface() != before {
                        save_state(&config, &board, Some(a));
                    }
                }
            }
            _ = renew_tick.tick() => {
                if let Some(a) = anycast.as_mut() {
                    a.renew().await;
                }
                save_state(&config, &board, anycast.as_ref());
            }
            Some((req, reply)) = ctl_rx.recv() => {
                let cx = control::Context {
                    config: &config,
                    board: &board,
                    lb: &mut live.lb,
                    anycast: anycast.as_mut(),
                    datapath: &datapath_status,
                    monitors: &monitor_board,
                };
                let _ = reply.send(control::answer(req, cx).await);
                save_state(&config, &board, anycast.as_ref());
            }
            _ = term.recv() => { info!("SIGTERM: controller stopping"); break }
            _ = int.recv() => { info!("SIGINT: controller stopping"); break }
            reason = async {
                tokio::select! {
                    _ = hup.recv() => "SIGHUP".to_string(),
                    Some(zone) = zone_rx.recv() => format!("secondary zone {zone} changed"),
                }
            } => {
                // The heavy part (zones parsed, tables compiled and staged) runs off this
                // loop; one reload at a time, a signal meanwhile starts another after it.
                info!("reload requested: {reason}");
                if reload_in_flight {
                    reload_again = true;
                } else {
                    seq += 1;
                    reload_in_flight = true;
                    crate::systemd::reloading();
                    start_reload(seq, &config, &mut live, reload_tx.clone());
                }
            }
            Some((n, prepared)) = reload_rx.recv() => {
                reload_in_flight = false;
                let mut retimed: Option<crate::config::AnycastConfig> = None;
                let result = prepared.and_then(|(new, stage)| {
                    apply::apply_staged(&mut live, &new, stage, &board)?;
                    Ok(new)
                }).map(|new| {
                    let timing = |c: &Config| c.anycast.clone().map(|a| crate::config::AnycastConfig { line: 0, ..a });
                    // New rise, fall, hold, check interval or lease on the same interface.
                    if timing(&new) != timing(&config)
                        && anycast.is_some()
                        && let Some(t) = new.anycast.as_ref()
                        && config.anycast.as_ref().is_some_and(|old| old.interface == t.interface)
                    {
                        retimed = Some(t.clone());
                        anycast_tick = tokio::time::interval(std::time::Duration::from_millis(t.check_ms));
                        renew_tick = tokio::time::interval(t.renew_every().unwrap_or(std::time::Duration::from_secs(1)));
                        renew_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    }
                    checks = crate::health::start(&new, board.clone(), changed_tx.clone());
                    monitors = crate::monitor::start(&new, monitor_board.clone());
                    let tasks = secondaries.update(&new, &zone_tx);
                    if tasks.started + tasks.stopped > 0 {
                        info!("secondary zones: {} refresh task(s) started, {} stopped, {} kept", tasks.started, tasks.stopped, tasks.kept);
                    }
                    purge_stored_zones(&new);
                    let _ = current_tx.send(std::sync::Arc::new(new.clone()));
                    config = new;
                });
                if let (Some(t), Some(a)) = (retimed, anycast.as_mut()) {
                    a.retime(&t).await;
                    *announced.lock().unwrap() = a.status();
                    info!(
                        "reload {n}: [anycast] now rise {} fall {} hold {} ms, checked every {} ms, leases of {} s",
                        t.rise, t.fall, t.hold_ms, t.check_ms, t.lease_s
                    );
                }
                match &result {
                    Ok(()) => info!("reload {n}: applied"),
                    Err(e) => warn!("reload {n} rejected, still serving the previous config and zones:\n{e:#}"),
                }
                write_status(&config.pop.run_dir, n, &result);
                crate::systemd::ready(if result.is_ok() { "serving (reloaded)" } else { "serving the previous config (reload rejected)" });
                if std::mem::take(&mut reload_again) {
                    seq += 1;
                    reload_in_flight = true;
                    start_reload(seq, &config, &mut live, reload_tx.clone());
                }
            }
        }
    }
    crate::systemd::stopping();
    if let Some(a) = anycast.as_mut() {
        a.shutdown().await;
    }
    save_state(&config, &board, anycast.as_ref());
    live.dns.shutdown();
    analysis.abort();
    drop(checks);
    drop(monitors);
    drop(secondaries);
    let _ = fs::remove_file(control::socket_path(&config.pop.run_dir));
    drop(datapath);
    info!("controller stopped; the XDP program stays attached (pinned)");
    Ok(())
}

/// Leaves what a restarted controller needs in `<run_dir>/state.json`.
fn save_state(config: &Config, board: &crate::health::Board, anycast: Option<&crate::anycast::runtime::Anycast>) {
    let announced = anycast.map(|a| a.on_interface()).unwrap_or_default();
    run_state::write_state(&config.pop.run_dir, &run_state::SavedState::new(board.saved(), announced));
}

/// Starts the board from the state the previous controller left: drain always, the
/// backends' health if that state is recent (see [`run_state::max_state_age`]), instead
/// of every checked backend down until `rise` probes pass, which would withdraw every
/// VIP a quick restart could have kept announced.
/// Restores the saved health and drain; health only if the state was fresh when this
/// controller `started`: the time the start itself takes (the verifier on a busy host,
/// zones) is bridged (see `bridge_leases`) and must not age it, or a slow start would
/// begin with every backend down and withdraw what the bridge kept announced.
fn restore_state(config: &Config, board: &crate::health::Board, saved: Option<run_state::SavedState>, started: std::time::SystemTime) {
    board.sync(config);
    let Some(saved) = saved else { return };
    let max_age = run_state::max_state_age(config);
    let age = saved.age(started);
    let fresh = saved.is_fresh(started, max_age);
    let restored = board.restore(&saved.backends, fresh);
    let age = age.map_or("of unknown age".to_string(), |a| format!("{} ms old", a.as_millis()));
    if fresh {
        info!("restored {restored} backend(s)' health and drain from the previous controller's state ({age} at start)");
    } else {
        info!("restored {restored} backend(s)' drain only: the previous controller's state was {age} at start, over {max_age:?}");
    }
}

/// What a reload task hands the controller loop: its sequence number, and the new
/// config with its DNS tables staged (or why not).
type Reloaded = (u64, Result<(Config, DnsStage)>);

/// Re-reads the config file and every zone, compiles and stages the DNS tables, all on
/// a blocking thread (after the previous apply's clean-up); the loop applies the rest.
/// Adds the members of the config's catalog zones to it (see `dns::catalog`), logging
/// what was left out; whether any catalog added a zone.
fn expand_catalogs(config: &mut Config) -> bool {
    let before: usize = config.dns.iter().map(|b| b.secondaries.len()).sum();
    for note in crate::dns::catalog::expand(config) {
        warn!("{note}");
    }
    config.dns.iter().map(|b| b.secondaries.len()).sum::<usize>() > before
}

/// After an apply: stored copies of zones no longer configured are deleted (logged).
fn purge_stored_zones(config: &Config) {
    for path in crate::dns::secondary::purge_stale(config) {
        info!("deleted {}: its zone is no longer configured nor in a catalog", path.display());
    }
}

fn start_reload(seq: u64, running: &Config, live: &mut Live, done: tokio::sync::mpsc::UnboundedSender<Reloaded>) {
    let path = running.path.clone();
    let names = |c: &Config| (c.interfaces.iter().map(|i| (i.name.clone(), i.xdp_mode)).collect::<Vec<_>>(), c.pop.bpffs_dir.clone());
    let before = names(running);
    // Settings the XDP program is loaded with (read-only globals).
    let globals = |c: &Config| (c.pop.client_rtt_sample, c.pop.flow_table_rate);
    let globals_before = globals(running);
    // Which anycast interface, if any: taking another one over takes a restart (the
    // timing is applied by the loop, see `retime`).
    let anycast_iface = |c: &Config| c.anycast.as_ref().map(|a| a.interface.clone());
    let anycast_before = anycast_iface(running);
    let maps = live.dns.maps();
    let cleanup = live.dns.take_cleanup();
    tokio::spawn(async move {
        if let Some(c) = cleanup {
            let _ = c.await;
        }
        let work = background(move || -> Result<(Config, DnsStage)> {
            let mut config = Config::load(&path)?;
            expand_catalogs(&mut config);
            if names(&config) != before {
                warn!("interface and bpffs changes take effect when the controller restarts");
            }
            if globals(&config) != globals_before {
                warn!(
                    "pop.client_rtt_sample and pop.flow_table_rate changes take effect when the controller restarts (the XDP program is loaded with them)"
                );
            }
            if anycast_iface(&config) != anycast_before {
                warn!("adding or removing [anycast], or changing anycast.interface, takes effect when the controller restarts");
            }
            let prepared = validate(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
            let stage = DnsRuntime::stage(&maps, prepared).map_err(|error| apply::ApplyError {
                step: apply::Step::DnsTable,
                error,
                rollback_failed: Vec::new(),
            })?;
            Ok((config, stage))
        });
        let result = work.await.unwrap_or_else(|_| Err(anyhow::anyhow!("the reload thread failed (see the log above)")));
        let _ = done.send((seq, result));
    });
}

/// How much less than the controller and the DNS server a reload's parsing and
/// compiling weighs with the scheduler (nice 10: about a tenth of a nice-0 thread's
/// share when both want the CPU, all of it when nothing else does).
const RELOAD_NICE: libc::c_int = 10;

/// Runs `work` on a thread of its own at [`RELOAD_NICE`] (threads it starts inherit
/// that), inside this tokio runtime. On a 2-core host a million-name compile on
/// threads of normal weight starved the runtime's: control requests took ~365 ms.
/// A fresh thread, not the blocking pool, so no pooled thread stays niced.
fn background<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> tokio::sync::oneshot::Receiver<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let runtime = tokio::runtime::Handle::current();
    let spawned = std::thread::Builder::new().name("pop-reload".into()).spawn(move || {
        let _in_runtime = runtime.enter();
        // SAFETY: plain syscalls on this thread's own id.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, RELOAD_NICE) } != 0 {
            warn!("reload thread keeps normal priority: setpriority: {}", std::io::Error::last_os_error());
        }
        let _ = tx.send(work());
    });
    if let Err(e) = spawned {
        warn!("could not start the reload thread: {e}");
    }
    rx
}

/// `pop reload`: validate here first (so a broken zone is reported without bothering the
/// controller), then SIGHUP the controller and wait for its verdict.
pub fn request_reload(config: &Config) -> Result<()> {
    validate(config).map_err(|e| anyhow::anyhow!("{e}\nnothing reloaded"))?;
    let run_dir = &config.pop.run_dir;
    let pid = RunLock::holder(run_dir).ok_or_else(|| anyhow::anyhow!("no pop controller runs with run_dir {}", run_dir.display()))?;
    let before = read_status(run_dir).map(|(s, _)| s);
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        bail!("signalling pid {pid}: {}", std::io::Error::last_os_error());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if let Some((seq, text)) = read_status(run_dir)
            && Some(seq) != before
            && seq > 0
        {
            if text.starts_with("ok") {
                println!("reloaded (controller pid {pid})");
                return Ok(());
            }
            bail!("the controller rejected the reload and keeps the previous state:\n{}", text.trim_start_matches("error").trim());
        }
        if std::time::Instant::now() > deadline {
            bail!("controller pid {pid} did not report on the reload within 120 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `pop detach`: refuse while a controller runs, then unpin everything.
pub fn detach(config: &Config) -> Result<()> {
    let _lock = RunLock::acquire(&config.pop.run_dir).context("cannot detach while the controller runs")?;
    let detached = loader::detach(&config.pop.bpffs_dir)?;
    if detached.is_empty() {
        println!("nothing attached under {}", config.pop.bpffs_dir.display());
    } else {
        println!("detached from {}; removed {}", detached.join(", "), config.pop.bpffs_dir.display());
    }
    Ok(())
}
