//! The control socket: `<run_dir>/control.sock`, owner-only (0600), one JSON request
//! per line, one JSON answer per line. `pop status`, `drain`, `undrain`, `withdraw` and
//! `announce` talk to the running controller through it; [`answer`] is the one place
//! every request is answered.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _},
    net::UnixListener,
    sync::{mpsc, oneshot},
};

use super::gate::{Gate, READ_TIMEOUT, WRITE_TIMEOUT};
use crate::{
    anycast::runtime::Anycast,
    config::Config,
    health::Board,
    lb::runtime::LbRuntime,
    status::{DatapathStatus, ServiceStatus, StatusReport},
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Status,
    Drain {
        service: String,
        backend: String,
    },
    Undrain {
        service: String,
        backend: String,
    },
    /// Maintenance: withdraw every VIP and keep them withdrawn (persists).
    Withdraw,
    /// Leave maintenance: VIPs are announced again as health allows.
    Announce,
}

/// A request from a client, with where to send the answer (a JSON value, or an error).
pub type Incoming = (Request, oneshot::Sender<Result<serde_json::Value, String>>);

pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join("control.sock")
}

/// Control connections served at once (see [`Gate`]).
const MAX_CONNECTIONS: usize = 16;
/// The longest request line read; longer ones are refused and the connection closed.
pub const MAX_REQUEST: usize = 64 * 1024;

/// One request line: Ok(line), Err(message) if over [`MAX_REQUEST`] (the rest of the
/// connection is not read), None at end of stream.
async fn read_line(r: &mut (impl tokio::io::AsyncBufRead + Unpin)) -> Option<Result<String, String>> {
    use tokio::io::AsyncReadExt as _;
    let mut buf = Vec::new();
    let n = r.take(MAX_REQUEST as u64 + 1).read_until(b'\n', &mut buf).await.ok()?;
    if n == 0 {
        return None;
    }
    if buf.last() != Some(&b'\n') && buf.len() > MAX_REQUEST {
        return Some(Err(format!("request over {MAX_REQUEST} bytes")));
    }
    Some(Ok(String::from_utf8_lossy(&buf).trim_end().to_string()))
}

/// Listens on the control socket and forwards each request to the controller's loop.
pub fn listen(run_dir: &Path, to_controller: mpsc::UnboundedSender<Incoming>) -> Result<()> {
    let path = socket_path(run_dir);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let gate = Gate::new(MAX_CONNECTIONS);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let Some(ticket) = gate.admit() else { continue };
            let tx = to_controller.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut read = tokio::io::BufReader::new(read);
                loop {
                    ticket.reading();
                    let line = tokio::select! {
                        _ = ticket.evicted.notified() => break,
                        r = tokio::time::timeout(READ_TIMEOUT, read_line(&mut read)) => match r {
                            Ok(Some(line)) => line,
                            _ => break,
                        },
                    };
                    ticket.answering();
                    let close = line.is_err();
                    let answer = match line {
                        Err(too_long) => Err(too_long),
                        Ok(line) => match serde_json::from_str::<Request>(&line) {
                            Ok(req) => {
                                let (reply, wait) = oneshot::channel();
                                if tx.send((req, reply)).is_err() {
                                    break;
                                }
                                wait.await.unwrap_or_else(|_| Err("controller stopping".into()))
                            }
                            Err(e) => Err(format!("bad request: {e}")),
                        },
                    };
                    let out = match answer {
                        Ok(v) => serde_json::json!({ "ok": v }),
                        Err(e) => serde_json::json!({ "error": e }),
                    };
                    match tokio::time::timeout(WRITE_TIMEOUT, write.write_all(format!("{out}\n").as_bytes())).await {
                        Ok(Ok(())) if !close => {}
                        _ => break,
                    }
                }
            });
        }
    });
    Ok(())
}

/// Sends one request to the controller using `run_dir` and returns its answer.
pub fn call(run_dir: &Path, req: &Request) -> Result<serde_json::Value> {
    let path = socket_path(run_dir);
    let mut s = std::os::unix::net::UnixStream::connect(&path)
        .with_context(|| format!("no controller answers on {} (is `pop run` running?)", path.display()))?;
    s.write_all(format!("{}\n", serde_json::to_string(req)?).as_bytes())?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    let v: serde_json::Value = serde_json::from_str(&line).context("bad answer from the controller")?;
    if let Some(e) = v.get("error") {
        bail!("{}", e.as_str().unwrap_or("error"));
    }
    v.get("ok").cloned().ok_or_else(|| anyhow!("bad answer from the controller"))
}

/// What a request may read or change: borrowed from the controller loop for one answer.
pub struct Context<'a> {
    pub config: &'a Config,
    pub board: &'a Board,
    pub lb: &'a mut LbRuntime,
    pub anycast: Option<&'a mut Anycast>,
    pub datapath: &'a DatapathStatus,
    pub monitors: &'a crate::monitor::MonitorBoard,
}

/// Answers one control-socket request.
pub async fn answer(req: Request, cx: Context<'_>) -> Result<serde_json::Value, String> {
    let Context { config, board, lb, anycast, datapath, monitors } = cx;
    let drain = matches!(req, Request::Drain { .. });
    match req {
        Request::Status => {
            let report = StatusReport {
                pop: config.pop.name.clone(),
                vips: anycast.map(|a| a.status()).unwrap_or_default(),
                services: config
                    .services
                    .iter()
                    .map(|s| ServiceStatus {
                        name: s.name.clone(),
                        vips: s.vips.clone(),
                        port: s.port,
                        min_healthy: s.min_healthy,
                        backends_up: board.up_count(&s.name),
                        healthy: board.up_count(&s.name) >= s.min_healthy as usize,
                    })
                    .collect(),
                backends: board.snapshot(),
                datapath: Some(datapath.clone()),
                monitors: monitors.snapshot(),
            };
            serde_json::to_value(report).map_err(|e| e.to_string())
        }
        Request::Withdraw | Request::Announce => {
            let Some(a) = anycast else { return Err("no [anycast] section: pop does not manage announcements here".to_string()) };
            let on = matches!(req, Request::Withdraw);
            a.set_maintenance(on).await.map_err(|e| format!("{e:#}"))?;
            Ok(serde_json::json!(if on {
                "maintenance: every VIP withdrawn until `pop announce` (persists across restarts)"
            } else {
                "maintenance over: VIPs are announced as health allows"
            }))
        }
        Request::Drain { service, backend } | Request::Undrain { service, backend } => {
            let Ok(address) = backend.parse::<std::net::IpAddr>() else {
                return Err(format!("{backend:?} is not an IP address (in service {service:?})"));
            };
            board.set_drain(&service, address, drain)?;
            lb.apply_health(config, board).map_err(|e| e.join("\n"))?;
            Ok(serde_json::json!(if drain {
                format!("{backend} in {service} drained: existing flows stay, no new ones")
            } else {
                format!("{backend} in {service} takes new flows again")
            }))
        }
    }
}
