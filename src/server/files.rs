//! Re-run an action when files change. Kubernetes Secret and ConfigMap volumes swap a `..data`
//! symlink, which file watches miss, so the *directories* are watched, with a periodic call as a
//! backup (and the only trigger where inotify is unavailable).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

/// Calls `action` after each burst of changes in the folders of `paths`, and every `interval`.
pub fn spawn(paths: &[&Path], interval: Duration, mut action: impl FnMut() + Send + 'static) {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let watcher = watch_dirs(paths, tx);
    tokio::spawn(async move {
        // The watcher stops when dropped; keep it for the life of the task.
        let _watcher = watcher;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                Some(()) = rx.recv() => {
                    // Let a volume update finish swapping its files before reading them.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    while rx.try_recv().is_ok() {}
                }
            }
            action();
        }
    });
}

fn watch_dirs(paths: &[&Path], tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            // A full channel already holds a pending reload.
            let _ = tx.try_send(());
        }
    })
    .map_err(|e| tracing::warn!(error = %e, "cannot watch files; polling only"))
    .ok()?;
    let mut dirs: Vec<PathBuf> = paths
        .iter()
        .map(|p| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch directory; polling only");
        }
    }
    Some(watcher)
}
