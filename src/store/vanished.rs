//! Users announced offline after their record vanished (deleted, expired, evicted), until a record
//! of theirs is written again: each is announced once, by whichever of their surviving index or
//! listing entries is met first. Kept in memory on the node that announced them.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, MutexGuard};

/// At most this many are remembered; past that one may be announced twice.
const MAX_USERS: usize = 1_000_000;

fn users() -> MutexGuard<'static, HashSet<Vec<u8>>> {
    static USERS: LazyLock<Mutex<HashSet<Vec<u8>>>> = LazyLock::new(Default::default);
    USERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether `user` is to be announced now: true the first time since their record vanished.
pub fn first_announcement(user: &[u8]) -> bool {
    let mut announced = users();
    if announced.contains(user) {
        return false;
    }
    if announced.len() >= MAX_USERS {
        announced.clear();
    }
    announced.insert(user.to_vec());
    true
}

/// `user` has a record again: should it vanish, they are announced again.
pub fn has_record(user: &[u8]) {
    let mut announced = users();
    if !announced.is_empty() {
        announced.remove(user);
    }
}

/// Forgets which vanished users were announced (the keyspace was replaced, or the module is
/// unloaded).
pub fn forget_all() {
    *users() = Default::default();
}
