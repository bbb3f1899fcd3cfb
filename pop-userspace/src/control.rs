//! The control socket: `<run_dir>/control.sock`, owner-only (0600), one JSON request
//! per line, one JSON answer per line. `pop status`, `pop drain` and `pop undrain`
//! talk to the running controller through it.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use crate::controller::gate::{Gate, READ_TIMEOUT, WRITE_TIMEOUT};
use anyhow::{Context as _, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _},
    net::UnixListener,
    sync::{mpsc, oneshot},
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
