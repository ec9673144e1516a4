//! The policy file is reloaded when a ConfigMap volume swaps its `..data` link; a bad file leaves
//! the current policy in force.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use wfe_admission::config::Config;
use wfe_admission::metrics::Metrics;
use wfe_admission::policy::Policy;
use wfe_admission::test_hooks::reload_policy_on_change;

/// Writes `policy.yaml` the way the kubelet updates a ConfigMap volume.
fn write_configmap(dir: &Path, generation: u32, text: &str) {
    let data = dir.join(format!("..{generation}"));
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("policy.yaml"), text).expect("write");
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(data.file_name().expect("name"), &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap");
    let link = dir.join("policy.yaml");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("..data/policy.yaml", &link).expect("link");
    }
}

async fn wait_for(policy: &ArcSwap<Policy>, want: usize) -> bool {
    for _ in 0..100 {
        if policy.load().config.block_clearance.min_reason_words == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_changed_policy_file_is_reloaded_and_a_bad_one_is_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_configmap(dir.path(), 1, "blockClearance:\n  minReasonWords: 3\n");
    let path = dir.path().join("policy.yaml");
    let config = Config::from_file(&path).expect("valid");
    let policy = Arc::new(ArcSwap::from_pointee(Policy::new(config).expect("policy")));
    let metrics = Metrics::new();
    // The periodic re-read is an hour away: only the directory watch can trigger the reload.
    reload_policy_on_change(
        path.clone(),
        Arc::clone(&policy),
        metrics.clone(),
        Duration::from_secs(3600),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    write_configmap(dir.path(), 2, "blockClearance:\n  minReasonWords: 7\n");
    assert!(
        wait_for(&policy, 7).await,
        "the new policy was never loaded"
    );

    // An invalid file (unknown writer) is refused; the last good policy stays.
    write_configmap(dir.path(), 3, "fields:\n  phase: [robot]\n");
    let mut failed = false;
    for _ in 0..100 {
        if metrics
            .encode()
            .contains(r#"wfe_admission_config_reloads_total{result="failure"}"#)
        {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failed, "the bad file was not reported");
    assert_eq!(policy.load().config.block_clearance.min_reason_words, 7);
}
