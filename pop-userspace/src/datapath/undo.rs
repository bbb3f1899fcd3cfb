//! Map writes that remember what they replaced. An apply commits through these; if a
//! later step fails, `restore` puts every touched entry back, newest first, so
//! the data path ends up exactly as it was before the apply began.

use std::borrow::BorrowMut;

use anyhow::{Context as _, Result};
use aya::{
    Pod,
    maps::{Array, HashMap, MapData},
};

/// Entries of one array map overwritten by an apply: (index, previous value).
pub struct ArrayUndo<V> {
    what: &'static str,
    entries: Vec<(u32, V)>,
}

impl<V: Pod> ArrayUndo<V> {
    pub fn new(what: &'static str) -> Self {
        ArrayUndo { what, entries: Vec::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `map[index] = value`, remembering the value it replaces.
    pub fn set<T: BorrowMut<MapData>>(&mut self, map: &mut Array<T, V>, index: u32, value: V) -> Result<()> {
        let old = map.get(&index, 0).with_context(|| format!("reading {} entry {index}", self.what))?;
        map.set(index, value, 0).with_context(|| format!("writing {} entry {index}", self.what))?;
        self.entries.push((index, old));
        Ok(())
    }

    /// Writes every remembered value back, newest first; returns what could not be.
    pub fn restore<T: BorrowMut<MapData>>(&mut self, map: &mut Array<T, V>) -> Vec<String> {
        let mut failed = Vec::new();
        for (index, old) in self.entries.drain(..).rev() {
            if let Err(e) = map.set(index, old, 0) {
                failed.push(format!("restoring {} entry {index}: {e}", self.what));
            }
        }
        failed
    }
}

/// Keys of one hash map changed by an apply: (key, previous value or absent).
pub struct HashUndo<K, V> {
    what: &'static str,
    entries: Vec<(K, Option<V>)>,
}

impl<K: Pod, V: Pod> HashUndo<K, V> {
    pub fn new(what: &'static str) -> Self {
        HashUndo { what, entries: Vec::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `map[key] = value`, remembering what was there (or that nothing was).
    pub fn insert<T: BorrowMut<MapData>>(&mut self, map: &mut HashMap<T, K, V>, key: K, value: V) -> Result<()> {
        let old = map.get(&key, 0).ok();
        map.insert(key, value, 0).with_context(|| format!("{} full or unwritable", self.what))?;
        self.entries.push((key, old));
        Ok(())
    }

    /// Removes `key`, remembering its value.
    pub fn remove<T: BorrowMut<MapData>>(&mut self, map: &mut HashMap<T, K, V>, key: K) -> Result<()> {
        let Ok(old) = map.get(&key, 0) else { return Ok(()) };
        map.remove(&key).with_context(|| format!("removing a stale {} entry", self.what))?;
        self.entries.push((key, Some(old)));
        Ok(())
    }

    /// Puts every remembered entry back (or removes it if it was absent), newest first.
    pub fn restore<T: BorrowMut<MapData>>(&mut self, map: &mut HashMap<T, K, V>) -> Vec<String> {
        let mut failed = Vec::new();
        for (key, old) in self.entries.drain(..).rev() {
            let r = match old {
                Some(v) => map.insert(key, v, 0),
                // Already gone is as good as removed.
                None => map.remove(&key).or_else(|e| if map.get(&key, 0).is_err() { Ok(()) } else { Err(e) }),
            };
            if let Err(e) = r {
                failed.push(format!("restoring a {} entry: {e}", self.what));
            }
        }
        failed
    }
}
