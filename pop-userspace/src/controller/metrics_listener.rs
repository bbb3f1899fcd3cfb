//! The Prometheus listener: plain HTTP/1.0 `GET /metrics`, one request per connection,
//! with a connection cap, read/write timeouts and a request size limit (see [`gate`]).

use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use log::info;

use super::gate;
use crate::{config::Config, datapath::pinned::PinnedMaps, metrics::prometheus::ControllerState};

/// What a scrape reads: the config now applied (it names services, backends and routes),
/// the pinned maps opened once, and the controller's shared state.
#[derive(Clone)]
pub struct Shared {
    pub config: tokio::sync::watch::Receiver<Arc<Config>>,
    pub maps: Arc<PinnedMaps>,
    pub board: Arc<crate::health::Board>,
    pub monitors: Arc<crate::monitor::MonitorBoard>,
    pub spikes: Arc<Mutex<u64>>,
    pub announced: Arc<Mutex<Vec<crate::anycast::runtime::VipStatus>>>,
}

/// Serves Prometheus' `GET /metrics` on `addr` (plain HTTP/1.0, one request per
/// connection).
pub async fn serve_metrics(addr: std::net::SocketAddr, shared: Shared) -> Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding the metrics listener on {addr}"))?;
    info!("Prometheus metrics on http://{addr}/metrics");
    let gate = gate::Gate::new(METRICS_CONNECTIONS);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { continue };
            let Some(ticket) = gate.admit() else { continue };
            let Shared { config, maps, board, monitors, spikes, announced } = shared.clone();
            tokio::spawn(async move {
                let head = tokio::select! {
                    _ = ticket.evicted.notified() => return,
                    r = tokio::time::timeout(gate::READ_TIMEOUT, read_head(&mut s)) => match r {
                        Ok(Some(head)) => head,
                        _ => return,
                    },
                };
                ticket.answering();
                let (status, body) = if head.starts_with("GET /metrics") {
                    // Reading every map is blocking work: off the runtime's threads.
                    let config = config.borrow().clone();
                    let rendered = tokio::task::spawn_blocking(move || {
                        let announced = announced.lock().unwrap().clone();
                        let state =
                            ControllerState { health: &board, monitors: &monitors, spikes_total: *spikes.lock().unwrap(), announced: &announced };
                        crate::metrics::prometheus::render(&config, &maps, &state)
                    })
                    .await;
                    match rendered {
                        Ok(Ok(b)) => ("200 OK", b),
                        Ok(Err(e)) => ("500 Internal Server Error", format!("{e:#}\n")),
                        Err(e) => ("500 Internal Server Error", format!("{e}\n")),
                    }
                } else if head.is_empty() {
                    ("431 Request Header Fields Too Large", format!("requests are at most {MAX_REQUEST} bytes\n"))
                } else {
                    ("404 Not Found", "try /metrics\n".to_string())
                };
                let head = format!("HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n", body.len());
                let _ = tokio::time::timeout(gate::WRITE_TIMEOUT, async {
                    s.write_all(head.as_bytes()).await?;
                    s.write_all(body.as_bytes()).await
                })
                .await;
            });
        }
    });
    Ok(())
}

/// Prometheus scrapes served at once (see [`gate`]).
const METRICS_CONNECTIONS: usize = 32;
/// The longest HTTP request head the metrics listener reads.
const MAX_REQUEST: usize = 8192;

/// Reads an HTTP request head (up to the blank line). Some("") if it is over
/// [`MAX_REQUEST`]; None if the client went away first.
async fn read_head(s: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt as _;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REQUEST {
            return Some(String::new());
        }
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return Some(String::from_utf8_lossy(&buf).into_owned());
        }
    }
}
