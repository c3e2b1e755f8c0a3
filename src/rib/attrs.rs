//! Path-attribute interning: one `Arc<PathAttrs>` per distinct attribute set.
//!
//! All prefixes of one UPDATE, and equal sets from different peers, share one allocation. The
//! pointer identity of an interned set is then a cheap grouping key for UPDATE packing
//! (outbound prefixes with the same `Arc` go into the same UPDATEs).

use std::sync::Arc;

use rustc_hash::FxHashSet;

use crate::wire::PathAttrs;

/// The interner. Entries nobody else holds are swept by [`Interner::sweep`].
#[derive(Debug, Default)]
pub struct Interner {
    set: FxHashSet<Arc<PathAttrs>>,
    inserts_since_sweep: usize,
}

impl Interner {
    /// The shared copy of `attrs`, inserting it if new.
    pub fn intern(&mut self, attrs: PathAttrs) -> Arc<PathAttrs> {
        if let Some(a) = self.set.get(&attrs) {
            return a.clone();
        }
        let a = Arc::new(attrs);
        self.set.insert(a.clone());
        self.inserts_since_sweep += 1;
        // Amortised O(1): sweep after as many inserts as there were live entries.
        if self.inserts_since_sweep > 1024 && self.inserts_since_sweep > self.set.len() / 2 {
            self.sweep();
        }
        a
    }

    /// Drops sets only the interner still references.
    pub fn sweep(&mut self) {
        self.set.retain(|a| Arc::strong_count(a) > 1);
        self.inserts_since_sweep = 0;
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}
