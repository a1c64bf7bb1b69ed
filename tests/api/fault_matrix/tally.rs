//! What a run counts: faults injected and client events by kind, and every broken
//! promise found on the way (a violation fails the run, with its seed).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Counts by name, and violations in words.
#[derive(Default)]
pub struct Tally {
    counts: Mutex<BTreeMap<String, usize>>,
    violations: Mutex<Vec<String>>,
}

impl Tally {
    pub fn add(&self, name: &str) {
        self.add_n(name, 1);
    }

    pub fn add_n(&self, name: &str, n: usize) {
        *self.counts.lock().unwrap().entry(name.to_owned()).or_default() += n;
    }

    pub fn violation(&self, what: String) {
        self.violations.lock().unwrap().push(what);
    }

    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.counts.lock().unwrap().clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }
}
