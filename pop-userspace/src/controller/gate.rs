//! Admission for the controller's listeners (Prometheus, control socket): at most `cap`
//! connections at once, so idle or slow clients cannot make the controller hold an fd
//! each. When full, the oldest connection still waiting for its request is evicted to
//! admit the new one (a scrape is never locked out by idle connections); if every
//! connection is busy answering, the new one is refused.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::Notify;

/// How long a client may take to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to take our answer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Gate {
    cap: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    /// Admitted connections by age; `true` while still reading their request.
    live: BTreeMap<u64, (bool, Arc<Notify>)>,
}

/// One admitted connection; dropping it frees its place.
pub struct Ticket {
    gate: Arc<Gate>,
    id: u64,
    /// Notified when the gate evicts this connection to admit a newer one.
    pub evicted: Arc<Notify>,
}

impl Gate {
    pub fn new(cap: usize) -> Arc<Gate> {
        Arc::new(Gate { cap: cap.max(1), inner: Mutex::new(Inner::default()) })
    }

    /// A place for a new connection, evicting the oldest one still reading if full;
    /// None if every admitted connection is busy answering.
    pub fn admit(self: &Arc<Self>) -> Option<Ticket> {
        let mut g = self.inner.lock().unwrap();
        if g.live.len() >= self.cap {
            let oldest_reading = g.live.iter().find(|(_, (reading, _))| *reading).map(|(id, _)| *id)?;
            if let Some((_, notify)) = g.live.remove(&oldest_reading) {
                notify.notify_one();
            }
        }
        let id = g.next;
        g.next += 1;
        let evicted = Arc::new(Notify::new());
        g.live.insert(id, (true, evicted.clone()));
        Some(Ticket { gate: self.clone(), id, evicted })
    }

    /// Connections admitted now.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Ticket {
    /// The request is in: from now on this connection is not evicted.
    pub fn answering(&self) {
        if let Some(e) = self.gate.inner.lock().unwrap().live.get_mut(&self.id) {
            e.0 = false;
        }
    }

    /// Back to waiting for a request (a control connection between requests).
    pub fn reading(&self) {
        if let Some(e) = self.gate.inner.lock().unwrap().live.get_mut(&self.id) {
            e.0 = true;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.inner.lock().unwrap().live.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_gate_evicts_the_oldest_reader_and_refuses_when_all_answer() {
        let gate = Gate::new(2);
        let a = gate.admit().unwrap();
        let b = gate.admit().unwrap();
        a.answering();
        // Full: b is the oldest still reading.
        let c = gate.admit().unwrap();
        assert_eq!(gate.len(), 2);
        assert!(gate.inner.lock().unwrap().live.contains_key(&a.id));
        assert!(!gate.inner.lock().unwrap().live.contains_key(&b.id), "b should be evicted");
        c.answering();
        assert!(gate.admit().is_none(), "every place is busy answering");
        drop(c);
        let _d = gate.admit().expect("c's place is free again");
        drop(b); // an evicted ticket's drop does not free someone else's place
        assert_eq!(gate.len(), 2);
    }
}
