//! Valkey's atomic slot migration (`CLUSTER MIGRATESLOTS`), seen from the node that imports.
//!
//! The source keeps owning the slots until the hand-over: it sweeps them, announces their
//! changes and streams its writes to the target, where the keys arrive as ordinary writes before
//! the slots are the target's. Meanwhile the target must not act on them (its sweep would announce
//! a timeout the source announces too) nor list them (they would be counted on two nodes). So a
//! slot being imported looks empty here until the import completes; then the sweep reads its
//! indexes at once and the listings read its keys and records. An aborted import is dropped
//! by the server, keys and all. The source needs nothing: it deletes the slots' keys when the
//! target owns them, and the notifications of those deletions find nothing left to announce.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

/// What the node holds of imports under way.
#[derive(Default)]
struct Imports {
    /// Slots being imported.
    slots: BTreeSet<u16>,
}

fn imports() -> MutexGuard<'static, Imports> {
    static IMPORTS: Mutex<Imports> = Mutex::new(Imports {
        slots: BTreeSet::new(),
    });
    IMPORTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether any import is under way: the sweep asks about every slot it visits, so the usual
/// answer (none) takes no lock.
static ANY: AtomicBool = AtomicBool::new(false);

/// Whether `slot` is being imported: its keys are arriving but it is not this node's yet.
pub fn importing(slot: u16) -> bool {
    ANY.load(Ordering::Relaxed) && imports().slots.contains(&slot)
}

/// An import of `slots` began.
pub fn import_started(slots: impl IntoIterator<Item = u16>) {
    let mut imports = imports();
    imports.slots.extend(slots);
    ANY.store(!imports.slots.is_empty(), Ordering::Relaxed);
}

/// An import of `slots` ended (completed, or aborted): whatever arrived for them is read when
/// the listings are next used.
pub fn import_ended(slots: &[u16]) {
    let mut imports = imports();
    for slot in slots {
        imports.slots.remove(slot);
    }
    ANY.store(!imports.slots.is_empty(), Ordering::Relaxed);
}

/// Forgets every import (the keyspace was replaced, or the module is unloaded).
pub fn forget_all() {
    *imports() = Imports::default();
    ANY.store(false, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_held_back_from_start_to_end_of_its_import() {
        forget_all();
        assert!(!importing(7));
        import_started([7, 8]);
        assert!(importing(7) && importing(8) && !importing(9));
        import_ended(&[7]);
        assert!(!importing(7) && importing(8));
        import_ended(&[8]);
        assert!(!importing(8));
    }
}
