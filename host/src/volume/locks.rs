//! Per-stripe locks and the journal's slot allocator: requests on different stripes run in
//! parallel, requests on one stripe one after the other.

use std::collections::HashSet;
use std::sync::{Condvar, Mutex, MutexGuard};

fn relock<T>(guard: std::sync::LockResult<MutexGuard<'_, T>>) -> MutexGuard<'_, T> {
    // A panic while holding these short critical sections leaves plain sets behind, still
    // consistent: keep going rather than poison every later request.
    guard.unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The stripes held by some request.
#[derive(Debug, Default)]
pub struct StripeLocks {
    held: Mutex<HashSet<u64>>,
    released: Condvar,
}

/// Holds one stripe until dropped.
#[derive(Debug)]
pub struct StripeGuard<'a> {
    locks: &'a StripeLocks,
    stripe: u64,
}

impl StripeLocks {
    /// Waits until `stripe` is free and takes it.
    pub fn lock(&self, stripe: u64) -> StripeGuard<'_> {
        let mut held = relock(self.held.lock());
        while held.contains(&stripe) {
            held = relock(self.released.wait(held));
        }
        assert!(held.insert(stripe));
        StripeGuard {
            locks: self,
            stripe,
        }
    }

    /// Stripes held now.
    pub fn held_count(&self) -> usize {
        relock(self.held.lock()).len()
    }
}

impl Drop for StripeGuard<'_> {
    fn drop(&mut self) {
        let mut held = relock(self.locks.held.lock());
        assert!(held.remove(&self.stripe), "stripe {} was held", self.stripe);
        drop(held);
        self.locks.released.notify_all();
    }
}

/// Free journal slots.
#[derive(Debug)]
pub struct SlotPool {
    free: Mutex<Vec<u32>>,
    returned: Condvar,
}

impl SlotPool {
    /// Slots `0..count`, all free.
    pub fn new(count: u32) -> SlotPool {
        assert!(count > 0);
        SlotPool {
            free: Mutex::new((0..count).rev().collect()),
            returned: Condvar::new(),
        }
    }

    /// Waits for a free slot and takes it.
    pub fn take(&self) -> u32 {
        let mut free = relock(self.free.lock());
        loop {
            if let Some(slot) = free.pop() {
                return slot;
            }
            free = relock(self.returned.wait(free));
        }
    }

    /// Gives `slot` back.
    pub fn give(&self, slot: u32) {
        let mut free = relock(self.free.lock());
        assert!(!free.contains(&slot), "slot {slot} freed twice");
        free.push(slot);
        drop(free);
        self.returned.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn one_stripe_serializes_and_others_run_in_parallel() {
        let locks = StripeLocks::default();
        let inside = AtomicU32::new(0);
        let overlap_seen = AtomicU32::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..200 {
                        let _guard = locks.lock(5);
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                        let _other = locks.lock(6);
                        overlap_seen.fetch_add(1, Ordering::SeqCst);
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(overlap_seen.load(Ordering::SeqCst), 1600);
        assert_eq!(locks.held_count(), 0);
    }

    #[test]
    fn slots_are_handed_out_once() {
        let pool = SlotPool::new(2);
        let (a, b) = (pool.take(), pool.take());
        assert_ne!(a, b);
        pool.give(a);
        assert_eq!(pool.take(), a);
    }
}
