//! The namespace of each node of the graph, for namespace-filtered searches.

use std::collections::{HashMap, HashSet};

use crate::error::Result;
use crate::store::Store;

/// The namespace of each id in the snapshot, for filtering during the graph walk.
///
/// For an id that is not pending, the snapshot's namespace is the row's current one (the
/// invariant), so it is read from `<table>_content`. Ids pending when the map was built
/// may carry another namespace than the snapshot's; they are `unknown` and are read again
/// once they stop being pending without a checkpoint (their change was rolled back).
#[derive(Default)]
pub(super) struct Namespaces {
    /// Whether the map was built; it is built by the first namespace-filtered search,
    /// so loading the graph does not read every row's namespace.
    pub(super) loaded: bool,
    /// Node key -> namespace number.
    pub(super) of: HashMap<u64, u32>,
    /// Namespace -> its number.
    pub(super) ids: HashMap<String, u32>,
    /// Ids whose namespace in the snapshot is not known (pending when the map was built).
    pub(super) unknown: HashSet<i64>,
}

impl Namespaces {
    pub(super) fn set(&mut self, id: i64, ns: String) {
        let next = self.ids.len() as u32;
        let n = *self.ids.entry(ns).or_insert(next);
        self.of.insert(id as u64, n);
        self.unknown.remove(&id);
    }

    /// Rebuilds the map from the table, given the pending ids at this moment.
    pub(super) fn load(&mut self, store: &Store, pending: &HashSet<i64>) -> Result<()> {
        *self = Namespaces::default();
        self.loaded = true;
        for (id, ns) in store.namespaces()? {
            if !pending.contains(&id) {
                self.set(id, ns);
            }
        }
        self.unknown = pending.clone();
        Ok(())
    }

    /// Reads the namespace of ids that were pending at load and no longer are.
    pub(super) fn resolve(&mut self, store: &Store, pending: &HashSet<i64>) -> Result<()> {
        let settled: Vec<i64> = self
            .unknown
            .iter()
            .filter(|id| !pending.contains(id))
            .copied()
            .collect();
        for id in settled {
            self.unknown.remove(&id);
            self.of.remove(&(id as u64));
            if let Some(row) = store.get(id)? {
                self.set(id, row.namespace);
            }
        }
        Ok(())
    }
}
