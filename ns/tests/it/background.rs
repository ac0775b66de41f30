//! `nook_ns::background`: work handed to a background thread is finished before the process
//! exits (`main` returning or `std::process::exit`), with real processes: this test binary
//! re-executed as a worker (`NK_BG_WORKER`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nook_testutil::TempDir;

const WORKER: &str = "NK_BG_WORKER";
const MARK: &str = "NK_BG_MARK";

/// As a worker: hands the writing of `MARK` (after a delay longer than the exit takes) to a
/// background thread, or starts a thread that never ends (`forever`), and exits at once.
fn as_worker() -> bool {
    let Ok(role) = std::env::var(WORKER) else { return false };
    let mark = std::env::var(MARK).expect("worker needs NK_BG_MARK");
    match role.as_str() {
        "write" => nook_ns::background::spawn("nk-bg-write", move || {
            std::thread::sleep(Duration::from_millis(300));
            std::fs::write(&mark, "done").expect("write the mark");
        })
        .expect("spawn"),
        "forever" => {
            nook_ns::background::spawn("nk-bg-forever", || std::thread::sleep(Duration::from_secs(3600)))
                .expect("spawn");
            std::fs::write(&mark, "exiting").expect("write the mark");
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

fn run_worker(test: &str, role: &str, mark: &Path) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(WORKER, role)
        .env(MARK, mark)
        .status()
        .unwrap();
    assert!(status.success(), "worker: {status}");
}

/// Before `nook_ns::background`, the thread died with the process and the mark was never
/// written (as a bridge deletion was lost when a program exited right after
/// `Network::remove`).
#[test]
fn the_process_finishes_its_background_work_before_it_exits() {
    if as_worker() {
        return;
    }
    let dir = TempDir::new("bg").unwrap();
    let mark = dir.path().join("mark");
    run_worker("background::the_process_finishes_its_background_work_before_it_exits", "write", &mark);
    assert_eq!(std::fs::read_to_string(&mark).ok().as_deref(), Some("done"), "the background work was lost");
}

/// Work that never ends does not keep the process alive: the exit waits
/// `EXIT_PATIENCE` at most.
#[test]
fn endless_background_work_does_not_keep_the_process() {
    if as_worker() {
        return;
    }
    let dir = TempDir::new("bg").unwrap();
    let mark = dir.path().join("mark");
    run_worker("background::endless_background_work_does_not_keep_the_process", "forever", &mark);
    assert_eq!(std::fs::read_to_string(&mark).unwrap(), "exiting");
}
