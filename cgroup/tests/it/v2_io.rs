//! Block I/O limits enforced, by the kernel's own byte counters: a reader of a loop device
//! the test creates, in a group with a read limit, has read no more than the limit allows
//! for the time it ran. v2 (`io.max`, `io.stat`) is what the pure v2 guest of `.ci/v2-lane`
//! tests; v1 (`blkio.throttle.*`) runs the same test on v1 and hybrid hosts.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use nook_cgroup::{Cgroup, CgroupSpec, Controller, DeviceThrottle, Version};
use nook_ns::{Command, Stdio};
use nook_testutil::{LoopDevice, require_root, unique_name};

/// Bytes the group has read from `major:minor`, by the kernel's counter: v2 `io.stat`
/// `rbytes=`, v1 `blkio.throttle.io_service_bytes` `Read`.
fn bytes_read(dir: &Path, version: Version, major: u32, minor: u32) -> u64 {
    let dev = format!("{major}:{minor}");
    let file = match version {
        Version::V2 => "io.stat",
        Version::V1 => "blkio.throttle.io_service_bytes",
    };
    let text = fs::read_to_string(dir.join(file)).unwrap();
    // No line for the device yet: nothing read.
    text.lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            if words.next() != Some(dev.as_str()) {
                return None;
            }
            match version {
                Version::V2 => words.find_map(|w| w.strip_prefix("rbytes=")?.parse().ok()),
                Version::V1 => (words.next() == Some("Read")).then(|| words.next()?.parse().ok()).flatten(),
            }
        })
        .unwrap_or(0)
}

/// `io.max rbps` (v1 `blkio.throttle.read_bps_device`) of 256 KiB/s on a 64 MiB loop device:
/// `dd` reading all of it in the group has, a second after it started reading, read no more
/// than the limit allows for the time measured (plus one second and 1 MiB of slack for the
/// first requests); unthrottled it would read the whole device in that time. `dd` reads with
/// O_DIRECT, one 64 KiB request at a time: v1 counts a request when it is submitted, so
/// readahead queued behind the throttle would otherwise count before it is let through.
#[test]
fn io_max_holds_a_reader_to_its_read_rate_by_the_kernels_byte_count() {
    require_root!();
    const RATE: u64 = 256 << 10;
    const SIZE: u64 = 64 << 20;
    let device = LoopDevice::new(SIZE).expect("a loop device (modprobe loop?)");
    let mut spec = CgroupSpec::new(unique_name("iom"));
    let throttle = DeviceThrottle::new(device.major, device.minor).read_bps(RATE).clone();
    spec.resources.blkio.get_or_insert_default().throttle(throttle);
    let cg = Cgroup::create(&spec).unwrap();
    let (dir, version) = cg.dir_of(Controller::Blkio).unwrap();
    let dir = dir.to_owned();

    let mut paused = Command::new("dd")
        .args([
            format!("if={}", device.path),
            "of=/dev/null".to_owned(),
            "bs=64k".to_owned(),
            "iflag=direct".to_owned(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn_paused()
        .unwrap();
    paused.kill_on_drop(true);
    cg.add_pid(paused.id()).unwrap();
    let started = Instant::now();
    let mut reader = paused.resume().unwrap();
    reader.kill_on_drop(true);

    let deadline = started + Duration::from_secs(30);
    while bytes_read(&dir, version, device.major, device.minor) == 0 {
        assert!(Instant::now() < deadline, "dd read nothing in 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1));
    let read = bytes_read(&dir, version, device.major, device.minor);
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = (RATE as f64 * (elapsed + 1.0)) as u64 + (1 << 20);
    println!("{version:?}: read {read} bytes in {elapsed:.2} s at {RATE} B/s (allowed {allowed})");
    assert!(read <= allowed, "read {read} bytes in {elapsed:.2} s, the limit allows {allowed}");
    assert!(reader.try_wait().unwrap().is_none(), "dd is still held back (it would have read {SIZE} bytes)");

    cg.kill_all().unwrap();
    assert!(!reader.wait().unwrap().success());
    cg.remove().unwrap();
    assert!(!dir.exists());
}
