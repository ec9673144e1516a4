//! CPU time spent by a group of threads (the in-process servers' runtime, the load generator's),
//! so that each throughput row can say what a request cost each side, a figure that a busy host
//! moves far less than requests per second.
//!
//! Linux only: the kernel's per-thread run time from `/proc/self/task/<tid>/schedstat`
//! (nanoseconds). Elsewhere the figures are absent, not made up.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The threads of one runtime, registered as they start (`on_thread_start`).
#[derive(Debug, Clone, Default)]
pub struct Threads(Arc<Mutex<Vec<u32>>>);

impl Threads {
    /// Records the calling thread.
    pub fn register_current(&self) {
        let Some(tid) = current_tid() else {
            return;
        };
        if let Ok(mut tids) = self.0.lock() {
            tids.push(tid);
        }
    }

    /// Their CPU time so far; `None` when no thread could be read.
    pub fn cpu(&self) -> Option<Duration> {
        let tids = self.0.lock().ok()?.clone();
        let times: Vec<u64> = tids.iter().filter_map(|t| run_time_ns(*t)).collect();
        (!times.is_empty()).then(|| Duration::from_nanos(times.iter().sum()))
    }
}

fn current_tid() -> Option<u32> {
    // "/proc/thread-self" links to "<pid>/task/<tid>".
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

fn run_time_ns(tid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_thread_shows_its_cpu_time_and_no_thread_shows_none() {
        assert_eq!(Threads::default().cpu(), None);
        let threads = Threads::default();
        threads.register_current();
        let before = threads.cpu().expect("this thread's schedstat");
        // Spin until the counter shows 10 ms of CPU: it must get there, however busy the machine.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        let spent = loop {
            x = std::hint::black_box(x.wrapping_add(1));
            let spent = threads.cpu().expect("schedstat") - before;
            if spent >= Duration::from_millis(10) || start.elapsed() > Duration::from_secs(10) {
                break spent;
            }
        };
        assert!(spent >= Duration::from_millis(10), "{spent:?}");
    }
}
