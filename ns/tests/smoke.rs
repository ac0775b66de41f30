use nook_ns::*;
#[test]
fn smoke() {
    let out = Command::new("sh").args(["-c","echo pid=$$ host=$(hostname) uid=$(id -u); cat /proc/self/uid_map"]).namespaces(NamespaceSet::CONTAINER.with(Namespace::User)).hostname("nk-smoke").uid_map(IdMap::root_to(100000)).gid_map(IdMap::root_to(100000)).output().unwrap();
    println!("{}", String::from_utf8_lossy(&out.stdout));
    println!("{}", String::from_utf8_lossy(&out.stderr));
    let e = Command::new("/nonexistent").spawn().unwrap_err();
    println!("{e}");
    let out = Command::new("sh").args(["-c","echo $$; sleep 0.1 & echo child"]).namespaces(NamespaceSet::CONTAINER).init(true).mount(MountStep::proc("/proc")).output().unwrap();
    println!("{:?} {}", out.status, String::from_utf8_lossy(&out.stdout));
    let out = Command::new("cat").args(["/proc/uptime", "/proc/self/timens_offsets"]).namespaces(NamespaceSet::new().with(Namespace::Time)).boottime_offset(ClockOffset::from_secs(100000)).monotonic_offset(ClockOffset::from_secs(5)).output().unwrap();
    println!("{:?} {} {}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let out = Command::new("cat").args(["/proc/self/cgroup"]).namespaces(NamespaceSet::new().with(Namespace::Cgroup)).output().unwrap();
    println!("{:?} {}", out.status, String::from_utf8_lossy(&out.stdout));
}
