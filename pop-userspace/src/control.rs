//! The control socket: `<run_dir>/control.sock`, owner-only (0600), one JSON request
//! per line, one JSON answer per line. `pop status`, `pop drain` and `pop undrain`
//! talk to the running controller through it.

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

/// Listens on the control socket and forwards each request to the controller's loop.
pub fn listen(run_dir: &Path, to_controller: mpsc::UnboundedSender<Incoming>) -> Result<()> {
    let path = socket_path(run_dir);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let tx = to_controller.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = tokio::io::BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let answer = match serde_json::from_str::<Request>(&line) {
                        Ok(req) => {
                            let (reply, wait) = oneshot::channel();
                            if tx.send((req, reply)).is_err() {
                                break;
                            }
                            wait.await.unwrap_or_else(|_| Err("controller stopping".into()))
                        }
                        Err(e) => Err(format!("bad request: {e}")),
                    };
                    let out = match answer {
                        Ok(v) => serde_json::json!({ "ok": v }),
                        Err(e) => serde_json::json!({ "error": e }),
                    };
                    if write.write_all(format!("{out}\n").as_bytes()).await.is_err() {
                        break;
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
