//! How many Events one object gets per reason. Whoever can reach an unauthenticated webhook can
//! make it deny made-up reviews; each distinct note would be an Event of its own (repeats of one
//! note only grow a series). So each (object, reason) gets at most `per_object` Events per
//! `window`; the rest are counted as limited, not recorded. Pure: the caller passes `now`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Keys kept at most; past it, finished windows go first, then the oldest.
const MAX_KEYS: usize = 4096;

#[derive(Debug)]
pub struct Budget {
    per_object: u32,
    window: Duration,
    spent: HashMap<(String, String, String), (Instant, u32)>,
}

impl Budget {
    pub fn new(per_object: u32, window: Duration) -> Self {
        Self {
            per_object: per_object.max(1),
            window,
            spent: HashMap::new(),
        }
    }

    /// Whether one more Event about `namespace/name` with `reason` may be recorded at `now`.
    pub fn admit(&mut self, namespace: &str, name: &str, reason: &str, now: Instant) -> bool {
        let key = (namespace.to_string(), name.to_string(), reason.to_string());
        if !self.spent.contains_key(&key) && self.spent.len() >= MAX_KEYS {
            self.make_room(now);
        }
        let entry = self.spent.entry(key).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.per_object {
            return false;
        }
        entry.1 += 1;
        true
    }

    fn make_room(&mut self, now: Instant) {
        let window = self.window;
        self.spent
            .retain(|_, (start, _)| now.duration_since(*start) < window);
        while self.spent.len() >= MAX_KEYS {
            let Some(oldest) = self
                .spent
                .iter()
                .min_by_key(|(_, (start, _))| *start)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.spent.remove(&oldest);
        }
    }

    pub fn keys(&self) -> usize {
        self.spent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_object_and_reason_gets_its_share_per_window() {
        let start = Instant::now();
        let mut b = Budget::new(3, Duration::from_secs(600));
        let admitted = (0..100)
            .filter(|_| b.admit("ns", "a", "IllegalPhaseTransition", start))
            .count();
        assert_eq!(admitted, 3);
        // Another reason and another object have budgets of their own.
        assert!(b.admit("ns", "a", "StatusFieldRestored", start));
        assert!(b.admit("ns", "b", "IllegalPhaseTransition", start));
        // A new window, a new share.
        let later = start + Duration::from_secs(600);
        assert!(b.admit("ns", "a", "IllegalPhaseTransition", later));
    }

    #[test]
    fn the_keys_kept_are_bounded() {
        let start = Instant::now();
        let mut b = Budget::new(1, Duration::from_secs(600));
        for i in 0..(MAX_KEYS * 3) {
            let now = start + Duration::from_millis(i as u64);
            assert!(b.admit("ns", &format!("o-{i}"), "IllegalPhaseTransition", now));
        }
        assert!(b.keys() <= MAX_KEYS, "{}", b.keys());
        // The newest keys are the ones kept.
        let now = start + Duration::from_millis((MAX_KEYS * 3) as u64);
        let newest = format!("o-{}", MAX_KEYS * 3 - 1);
        assert!(!b.admit("ns", &newest, "IllegalPhaseTransition", now));
    }
}
