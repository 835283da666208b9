//! Teardown leaves nothing behind: no etcd or kube-apiserver process, no temporary directory; also when the
//! owning test panics. Skipped loudly without the binaries (a failure in CI).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tanium_testenv::ControlPlane;

/// Whether `pid` names a live (not zombie) process.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // state is the field after the parenthesised command name
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn assert_gone(pids: [u32; 2], dir: &std::path::Path) {
    // SIGKILL is immediate and drop waits for the processes; allow a moment only for pid reuse checks.
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in pids {
        assert!(!alive(pid), "process {pid} survived teardown");
    }
    assert!(!dir.exists(), "{} survived teardown", dir.display());
}

#[tokio::test]
async fn drop_kills_the_processes_and_removes_the_directory() {
    let mut cp = tanium_testenv::require_control_plane!();
    let pids = cp.pids();
    let dir = cp.dir().to_path_buf();
    assert!(cp.is_running());
    assert!(pids.iter().all(|&p| alive(p)));
    assert!(dir.join("kube-apiserver.log").exists());
    drop(cp);
    assert_gone(pids, &dir);
}

#[test]
fn a_panicking_test_still_tears_down() {
    let (tx, rx) = std::sync::mpsc::channel::<Option<([u32; 2], PathBuf)>>();
    let joined = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let cp = runtime.block_on(ControlPlane::start_or_skip());
        let Some(cp) = cp else {
            let _ = tx.send(None);
            return;
        };
        let _ = tx.send(Some((cp.pids(), cp.dir().to_path_buf())));
        panic!("deliberate panic while a control plane is up (expected in this test's output)");
    })
    .join();
    let Some((pids, dir)) = rx.recv().expect("the thread reported") else {
        return; // skipped
    };
    assert!(joined.is_err(), "the thread should have panicked");
    assert_gone(pids, &dir);
}

#[tokio::test]
async fn two_planes_side_by_side() {
    let a = tanium_testenv::require_control_plane!();
    let b = tanium_testenv::require_control_plane!();
    assert_ne!(a.server_url(), b.server_url());
    assert_ne!(a.dir(), b.dir());
    let (va, vb) = (
        a.client().apiserver_version().await.expect("a"),
        b.client().apiserver_version().await.expect("b"),
    );
    assert_eq!(va.git_version, vb.git_version);
}
