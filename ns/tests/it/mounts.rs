//! Integration tests: mount propagation and the mount steps a child runs in its new mount
//! namespace, checked through the kernel's own mount table and file system behaviour.
//!
//! Propagation tests run on a thread with its own mount namespace
//! ([`nook_testutil::on_private_mount_ns`]); child-side tests check afterwards that the
//! host's mount table gained nothing. They need root and are skipped otherwise.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use nook_ns::{
    Command, Error, MountStep, Namespace, Propagation, SpawnError, Stage, ValidationError, bind, mount_tmpfs,
    set_propagation, unmount,
};
use nook_testutil::{TempDir, on_private_mount_ns, require_root, tiny_rootfs};
use procfs_core::process::{MountInfo, MountOptFields};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// One line of `/proc/.../mountinfo`.
#[derive(Debug)]
struct MountEntry {
    mount_point: String,
    mount_options: String,
    /// Optional fields such as `shared:3`, `master:3`, `unbindable`.
    tags: Vec<String>,
    fstype: String,
    super_options: String,
}

/// The mountinfo lines of `text` (other lines, such as a script's own output, are skipped),
/// parsed by `procfs-core` (the `/proc` reader nook-ns uses).
fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    let options = |map: &std::collections::HashMap<String, Option<String>>| {
        map.iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k.clone(),
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    text.lines()
        .filter_map(|l| MountInfo::from_line(l).ok())
        .map(|m| MountEntry {
            mount_point: m.mount_point.to_string_lossy().into_owned(),
            mount_options: options(&m.mount_options),
            tags: m
                .opt_fields
                .iter()
                .map(|f| match f {
                    MountOptFields::Shared(n) => format!("shared:{n}"),
                    MountOptFields::Master(n) => format!("master:{n}"),
                    MountOptFields::PropagateFrom(n) => format!("propagate_from:{n}"),
                    MountOptFields::Unbindable => "unbindable".to_owned(),
                })
                .collect(),
            fstype: m.fs_type,
            super_options: options(&m.super_options),
        })
        .collect()
}

/// The mount table of the calling thread's mount namespace.
fn my_mounts() -> Vec<MountEntry> {
    parse_mountinfo(&fs::read_to_string("/proc/thread-self/mountinfo").expect("read mountinfo"))
}

/// The topmost mount at `path` in the calling thread's mount namespace.
fn mount_at(path: &Path) -> Option<MountEntry> {
    let p = path.to_str().unwrap();
    my_mounts().into_iter().rfind(|m| m.mount_point == p)
}

fn find_mount<'a>(mounts: &'a [MountEntry], path: &Path) -> &'a MountEntry {
    let p = path.to_str().unwrap();
    mounts.iter().rfind(|m| m.mount_point == p).unwrap_or_else(|| panic!("no mount at {p} in {mounts:#?}"))
}

/// Fails if the caller's mount namespace has any mount at or below `dir`.
fn assert_no_mounts_under(dir: &Path) {
    let leaked: Vec<_> = my_mounts().into_iter().filter(|m| Path::new(&m.mount_point).starts_with(dir)).collect();
    assert!(leaked.is_empty(), "the host mount table gained entries under {}: {leaked:#?}", dir.display());
}

/// `/bin/sh -c script sh ...`: further `.arg()`s become `$1`, `$2`, ...
fn sh(script: &str) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", script, "sh"]);
    cmd
}

/// A command in a new mount namespace (plus `extra`).
fn in_mount_ns(mut cmd: Command, extra: &[Namespace]) -> Command {
    let set = extra.iter().fold(Namespace::Mount.as_set(), |s, ns| s.with(*ns));
    cmd.namespaces(set);
    cmd
}

/// Runs the child and returns its output; the spawn itself must succeed.
fn output(cmd: &mut Command) -> Output {
    cmd.output().expect("spawn child")
}

/// Runs the child, asserts success, returns stdout.
fn stdout_of(cmd: &mut Command) -> String {
    nook_testutil::success_stdout(output(cmd))
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

fn mkdirs(base: &TempDir, names: &[&str]) -> Vec<PathBuf> {
    names
        .iter()
        .map(|n| {
            let p = base.join(n);
            fs::create_dir_all(&p).unwrap();
            p
        })
        .collect()
}

/// Mounts a tmpfs at `dir` (created first) and writes `marker` into it.
fn mount_marked(dir: &Path, marker: &str) {
    fs::create_dir_all(dir).unwrap();
    mount_tmpfs(dir, Some("size=64k")).expect("mount tmpfs");
    fs::write(dir.join("marker"), marker).unwrap();
}

fn marker(dir: &Path) -> Option<String> {
    fs::read_to_string(dir.join("marker")).ok()
}

/// The value of a mountinfo tag such as `shared:N` or `master:N` (pass the prefix).
fn tag_value(m: &MountEntry, prefix: &str) -> Option<String> {
    m.tags.iter().find_map(|t| t.strip_prefix(prefix)).map(str::to_owned)
}

/// `a`: a tmpfs with the given propagation; `b`: a bind mount of `a`.
fn tmpfs_and_bind(base: &TempDir, propagation: Propagation) -> (PathBuf, PathBuf) {
    let [a, b] = <[PathBuf; 2]>::try_from(mkdirs(base, &["a", "b"])).unwrap();
    mount_tmpfs(&a, Some("size=64k")).expect("mount tmpfs a");
    set_propagation(&a, propagation, false).expect("set propagation of a");
    bind(&a, &b, false).expect("bind a onto b");
    (a, b)
}

// ---------------------------------------------------------------------------------------
// Propagation in the caller's (private, per-thread) mount namespace
// ---------------------------------------------------------------------------------------

#[test]
fn shared_bind_peers_receive_each_others_mounts() {
    require_root!();
    let base = TempDir::new("shr").unwrap();
    on_private_mount_ns(|| {
        let (a, b) = tmpfs_and_bind(&base, Propagation::Shared);
        let (ma, mb) = (mount_at(&a).unwrap(), mount_at(&b).unwrap());
        let group = tag_value(&ma, "shared:").expect("a is shared");
        assert_eq!(tag_value(&mb, "shared:"), Some(group), "b is a peer of a: {mb:?}");

        mount_marked(&a.join("x"), "from-a");
        assert_eq!(marker(&b.join("x")).as_deref(), Some("from-a"), "a mount under a appears under b");
        mount_marked(&b.join("y"), "from-b");
        assert_eq!(marker(&a.join("y")).as_deref(), Some("from-b"), "a mount under b appears under a");

        unmount(&a.join("x"), false).unwrap();
        assert!(mount_at(&b.join("x")).is_none(), "the unmount propagated too");
    });
    assert_no_mounts_under(base.path());
}

#[test]
fn slave_receives_from_master_but_does_not_send_back() {
    require_root!();
    let base = TempDir::new("slv").unwrap();
    on_private_mount_ns(|| {
        let (a, b) = tmpfs_and_bind(&base, Propagation::Shared);
        set_propagation(&b, Propagation::Slave, false).unwrap();
        let group = tag_value(&mount_at(&a).unwrap(), "shared:").expect("a is shared");
        let mb = mount_at(&b).unwrap();
        assert_eq!(tag_value(&mb, "master:"), Some(group), "b is a slave of a: {mb:?}");
        assert_eq!(tag_value(&mb, "shared:"), None);

        mount_marked(&a.join("x"), "from-master");
        assert_eq!(marker(&b.join("x")).as_deref(), Some("from-master"), "master -> slave propagates");
        mount_marked(&b.join("y"), "from-slave");
        assert_eq!(marker(&a.join("y")), None, "slave -> master must not propagate");
        assert!(mount_at(&a.join("y")).is_none());
    });
    assert_no_mounts_under(base.path());
}

#[test]
fn private_binds_propagate_nothing_either_way() {
    require_root!();
    let base = TempDir::new("prv").unwrap();
    on_private_mount_ns(|| {
        let (a, b) = tmpfs_and_bind(&base, Propagation::Private);
        set_propagation(&b, Propagation::Private, false).unwrap();
        for m in [mount_at(&a).unwrap(), mount_at(&b).unwrap()] {
            assert!(m.tags.is_empty(), "private mounts carry no propagation tags: {m:?}");
        }

        mount_marked(&a.join("x"), "from-a");
        mount_marked(&b.join("y"), "from-b");
        // Same tmpfs underneath, so the directories exist on both sides, but empty.
        assert!(b.join("x").is_dir() && a.join("y").is_dir());
        assert_eq!(marker(&b.join("x")), None, "a -> b must not propagate");
        assert_eq!(marker(&a.join("y")), None, "b -> a must not propagate");
    });
    assert_no_mounts_under(base.path());
}

#[test]
fn unbindable_mount_cannot_be_bind_mounted() {
    require_root!();
    let base = TempDir::new("unb").unwrap();
    on_private_mount_ns(|| {
        let [a, c] = <[PathBuf; 2]>::try_from(mkdirs(&base, &["a", "c"])).unwrap();
        mount_tmpfs(&a, Some("size=64k")).unwrap();
        // Control: while private, binding works.
        bind(&a, &c, false).expect("bind a private mount");
        unmount(&c, false).unwrap();

        set_propagation(&a, Propagation::Unbindable, false).unwrap();
        assert!(mount_at(&a).unwrap().tags.iter().any(|t| t == "unbindable"));
        let err = bind(&a, &c, false).expect_err("bind of an unbindable mount");
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");
        assert!(mount_at(&c).is_none());
    });
    assert_no_mounts_under(base.path());
}

// ---------------------------------------------------------------------------------------
// Propagation through Command mount steps
// ---------------------------------------------------------------------------------------

#[test]
fn propagation_steps_in_child_make_shared_peer_and_slave() {
    require_root!();
    let base = TempDir::new("psc").unwrap();
    let [a, b] = <[PathBuf; 2]>::try_from(mkdirs(&base, &["a", "b"])).unwrap();
    let mut cmd = in_mount_ns(
        sh(r#"echo 1 > "$1/x/m"; echo 2 > "$2/y/m"
              cat "$2/x/m"
              [ -e "$1/y/m" ] && echo slave-leaked-to-master || echo master-untouched"#),
        &[],
    );
    cmd.arg(&a).arg(&b).mounts([
        MountStep::tmpfs(&a, Some("size=64k")),
        MountStep::propagation(&a, Propagation::Shared, false),
        MountStep::bind(&a, &b),
        MountStep::propagation(&b, Propagation::Slave, false),
        MountStep::mkdir(a.join("x")),
        MountStep::mkdir(a.join("y")),
        MountStep::tmpfs(a.join("x"), Some("size=64k")),
        MountStep::tmpfs(b.join("y"), Some("size=64k")),
    ]);

    assert_eq!(lines(&stdout_of(&mut cmd)), ["1", "master-untouched"]);
    assert_no_mounts_under(base.path());
}

#[test]
fn private_propagation_step_in_child_stops_propagation() {
    require_root!();
    let base = TempDir::new("ppc").unwrap();
    let [a, b] = <[PathBuf; 2]>::try_from(mkdirs(&base, &["a", "b"])).unwrap();
    // `/` is rprivate, so make `a` shared first: then the step must really change it back.
    let mut cmd = in_mount_ns(sh(r#"echo 1 > "$1/x/m"; ls -A "$2/x"; echo end"#), &[]);
    cmd.arg(&a).arg(&b).mounts([
        MountStep::tmpfs(&a, Some("size=64k")),
        MountStep::propagation(&a, Propagation::Shared, false),
        MountStep::bind(&a, &b),
        MountStep::propagation(&a, Propagation::Private, false),
        MountStep::mkdir(a.join("x")),
        MountStep::tmpfs(a.join("x"), Some("size=64k")),
    ]);

    assert_eq!(lines(&stdout_of(&mut cmd)), ["end"], "b/x must stay the empty directory");
    assert_no_mounts_under(base.path());
}

#[test]
fn unbindable_propagation_step_makes_a_later_bind_fail_with_einval() {
    require_root!();
    let base = TempDir::new("ubc").unwrap();
    let [a, c] = <[PathBuf; 2]>::try_from(mkdirs(&base, &["a", "c"])).unwrap();
    let err = in_mount_ns(Command::new("/bin/true"), &[])
        .mounts([
            MountStep::tmpfs(&a, Some("size=64k")),
            MountStep::propagation(&a, Propagation::Unbindable, false),
            MountStep::bind(&a, &c),
        ])
        .status()
        .expect_err("binding an unbindable mount");

    assert!(
        matches!(err, Error::Spawn(SpawnError { stage: Stage::Mount, step: Some(2), errno: libc::EINVAL, .. })),
        "{err:?}"
    );
    assert_no_mounts_under(base.path());
}

/// Waits up to 10 s for `done()`.
fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}: not within 10 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A child binds `a` (a shared tmpfs of the test's "host" namespace: a thread's own) at `b`
/// with `steps` in its new mount namespace (whose `/` the spawn makes recursively private
/// first), mounts a tmpfs at `b/fromchild`, then waits for the host to mount one (with a
/// marker) at `a/fromhost`. Returns (the marker as the child read it, whether the child's
/// mount showed on the host).
fn peer_bind_exchange(tag: &str, steps: impl Fn(&Path, &Path) -> Vec<MountStep> + Sync) -> (String, bool) {
    let base = TempDir::new(tag).unwrap();
    let seen = on_private_mount_ns(|| {
        let [a, b] = <[PathBuf; 2]>::try_from(mkdirs(&base, &["a", "b"])).unwrap();
        mount_tmpfs(&a, Some("size=64k")).expect("mount tmpfs a");
        set_propagation(&a, Propagation::Shared, false).expect("make a shared");
        fs::create_dir(a.join("fromchild")).unwrap();
        fs::create_dir(a.join("fromhost")).unwrap();
        let mut cmd = in_mount_ns(
            sh(r#"mount -t tmpfs -o size=64k nkpeer "$1/fromchild" || exit 9
                  : > "$1/ready"
                  i=0; while [ ! -e "$1/fromhost/marker" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
                  cat "$1/fromhost/marker" 2>/dev/null || echo none"#),
            &[],
        );
        cmd.arg(&b).mounts(steps(&a, &b)).stdout(nook_ns::Stdio::piped());
        let child = cmd.spawn().expect("spawn");
        // `ready` is written through the bind into `a` (a file, not a mount: always seen).
        wait_for("the child's mount", || a.join("ready").exists());
        let from_child = mount_at(&a.join("fromchild")).is_some();
        mount_marked(&a.join("fromhost"), "hello");
        let out = nook_testutil::success_stdout(child.wait_with_output().unwrap());
        (out.trim().to_owned(), from_child)
    });
    assert_no_mounts_under(base.path());
    seen
}

/// A peer bind (`open_tree` before the namespace's `/` is made private) keeps the ties of a
/// shared source both ways; a plain bind made after has none.
#[test]
fn peer_bind_propagates_both_ways_and_a_plain_bind_not_at_all() {
    require_root!();
    let shared = peer_bind_exchange("pbs", |a, b| vec![MountStep::peer_bind(a, b)]);
    assert_eq!(shared, ("hello".to_owned(), true), "(marker seen in the child, child's mount seen on the host)");
    let plain = peer_bind_exchange("pbp", |a, b| vec![MountStep::bind(a, b)]);
    assert_eq!(plain, ("none".to_owned(), false));
}

/// A peer bind made a slave: the host's mounts reach the child, the child's stay its own;
/// read-only applies to the bind (per mount, not to the host's side).
#[test]
fn peer_bind_made_slave_receives_only() {
    require_root!();
    let slave = peer_bind_exchange("pbv", |a, b| {
        vec![MountStep::peer_bind(a, b).recursive(), MountStep::propagation(b, Propagation::Slave, true)]
    });
    assert_eq!(slave, ("hello".to_owned(), false));

    let base = TempDir::new("pbr").unwrap();
    let out = on_private_mount_ns(|| {
        let [a, b] = <[PathBuf; 2]>::try_from(mkdirs(&base, &["a", "b"])).unwrap();
        mount_tmpfs(&a, Some("size=64k")).expect("mount tmpfs a");
        set_propagation(&a, Propagation::Shared, false).expect("make a shared");
        let out = stdout_of(
            in_mount_ns(sh(r#"touch "$1/f" 2>/dev/null && echo writable || echo read-only"#), &[])
                .arg(&b)
                .mounts([MountStep::peer_bind(&a, &b).read_only()]),
        );
        fs::write(a.join("host-writes"), "ok").expect("the host's side stays writable");
        out
    });
    assert_eq!(lines(&out), ["read-only"]);
}

/// A peer bind of a source that does not exist fails at its step (copied before the root
/// propagation, reported with the step's index), and leaves nothing.
#[test]
fn peer_bind_of_a_missing_source_names_the_step() {
    require_root!();
    let base = TempDir::new("pbm").unwrap();
    let [a] = <[PathBuf; 1]>::try_from(mkdirs(&base, &["a"])).unwrap();
    let err = in_mount_ns(Command::new("/bin/true"), &[])
        .mounts([MountStep::tmpfs(&a, Some("size=64k")), MountStep::peer_bind(base.join("nope"), &a)])
        .status()
        .expect_err("a missing source");
    assert!(
        matches!(err, Error::Spawn(SpawnError { stage: Stage::Mount, step: Some(1), errno: libc::ENOENT, .. })),
        "{err:?}"
    );
    assert_no_mounts_under(base.path());
}

// ---------------------------------------------------------------------------------------
// Child-side mount steps
// ---------------------------------------------------------------------------------------

#[test]
fn bind_read_write_writes_through_to_the_source() {
    require_root!();
    let base = TempDir::new("brw").unwrap();
    let [src, dst] = <[PathBuf; 2]>::try_from(mkdirs(&base, &["src", "dst"])).unwrap();
    fs::write(src.join("f"), "from-host\n").unwrap();

    let out = stdout_of(
        in_mount_ns(sh(r#"cat "$1/f"; echo from-child > "$1/new""#), &[]).arg(&dst).mount(MountStep::bind(&src, &dst)),
    );

    assert_eq!(out, "from-host\n", "the child reads the source through the bind");
    assert_eq!(fs::read_to_string(src.join("new")).unwrap(), "from-child\n", "the write reached the source");
    assert!(!dst.join("new").exists(), "outside the child, dst is still the plain directory");
    assert_no_mounts_under(base.path());
}

#[test]
fn bind_read_only_rejects_writes_with_erofs() {
    require_root!();
    let base = TempDir::new("bro").unwrap();
    let [src, dst] = <[PathBuf; 2]>::try_from(mkdirs(&base, &["src", "dst"])).unwrap();
    fs::write(src.join("f"), "from-host\n").unwrap();

    let out = output(
        in_mount_ns(sh(r#"cat "$1/f"; echo x > "$1/new""#), &[])
            .arg(&dst)
            .mount(MountStep::bind(&src, &dst).read_only()),
    );

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-host\n", "reading still works");
    assert!(stderr.contains("Read-only file system"), "expected EROFS, got: {stderr}");
    assert!(!src.join("new").exists());
    assert_no_mounts_under(base.path());
}

#[test]
fn recursive_read_only_bind_makes_submounts_read_only_too() {
    require_root!();
    let base = TempDir::new("brr").unwrap();
    let [_, dst] = <[PathBuf; 2]>::try_from(mkdirs(&base, &["src/sub", "dst"])).unwrap();
    let src = base.join("src");
    let script = r#"echo ok > "$1/sub/w" && echo source-submount-writable
        cat "$2/sub/w"
        cat /proc/self/mountinfo
        echo --
        ( echo x > "$2/sub/w2" ) 2>&1
        ( echo x > "$2/w3" ) 2>&1
        true"#;
    let out = stdout_of(in_mount_ns(sh(script), &[]).arg(&src).arg(&dst).mounts([
        MountStep::tmpfs(src.join("sub"), Some("size=64k")),
        MountStep::bind(&src, &dst).read_only().recursive(),
    ]));

    let (before, errors) = out.split_once("--\n").expect("separator");
    let mut it = before.splitn(3, '\n');
    assert_eq!(it.next(), Some("source-submount-writable"), "the submount itself stays writable");
    assert_eq!(it.next(), Some("ok"), "the submount came along with the recursive bind");
    let mounts = parse_mountinfo(it.next().unwrap());
    for p in [dst.clone(), dst.join("sub")] {
        let m = find_mount(&mounts, &p);
        assert!(m.mount_options.split(',').any(|o| o == "ro"), "{} should be ro: {m:?}", p.display());
    }
    assert_eq!(errors.matches("Read-only file system").count(), 2, "both writes must fail with EROFS: {errors}");
    assert!(!src.join("w3").exists());
    assert_no_mounts_under(base.path());
}

#[test]
fn proc_step_shows_the_child_pid_namespace() {
    require_root!();
    let base = TempDir::new("prc").unwrap();
    let [proc_dir] = <[PathBuf; 1]>::try_from(mkdirs(&base, &["proc"])).unwrap();
    let out = stdout_of(
        in_mount_ns(
            // `cat` is not the last command: a shell that execs its last command (busybox
            // ash) would otherwise be `cat` by then.
            sh(r#"for p in "$1"/[0-9]*; do echo "${p##*/}"; done; echo --; cat "$1/1/cmdline"; echo"#),
            &[Namespace::Pid],
        )
        .arg(&proc_dir)
        .mount(MountStep::proc(&proc_dir)),
    );
    // The glob is expanded by the shell itself (pid 1): no host process is listed.
    let (pids, cmdline) = out.split_once("--\n").unwrap();
    assert_eq!(lines(pids), ["1"]);
    assert!(cmdline.starts_with("/bin/sh\0-c\0"), "pid 1 is our shell: {cmdline:?}");
    assert_no_mounts_under(base.path());
}

#[test]
fn sysfs_step_shows_the_child_network_namespace_read_only() {
    require_root!();
    let base = TempDir::new("sys").unwrap();
    let [sys] = <[PathBuf; 1]>::try_from(mkdirs(&base, &["sys"])).unwrap();
    let out = stdout_of(
        in_mount_ns(sh(r#"ls "$1/class/net"; echo --; cat /proc/self/mountinfo"#), &[Namespace::Net])
            .arg(&sys)
            .mount(MountStep::sysfs(&sys)),
    );
    let (net, info) = out.split_once("--\n").unwrap();
    assert_eq!(lines(net), ["lo"]);
    let mounts = parse_mountinfo(info);
    let m = find_mount(&mounts, &sys);
    assert_eq!(m.fstype, "sysfs");
    assert!(m.mount_options.split(',').any(|o| o == "ro"), "{m:?}");
    assert_no_mounts_under(base.path());
}

#[test]
fn tmpfs_step_applies_size_and_mode_options() {
    require_root!();
    let base = TempDir::new("tmp").unwrap();
    let [t] = <[PathBuf; 1]>::try_from(mkdirs(&base, &["t"])).unwrap();
    let out = stdout_of(
        in_mount_ns(sh(r#"stat -c %a "$1"; cat /proc/self/mountinfo"#), &[])
            .arg(&t)
            .mount(MountStep::tmpfs(&t, Some("size=1m,mode=0710"))),
    );
    let (mode, info) = out.split_once('\n').unwrap();
    assert_eq!(mode, "710");
    let mounts = parse_mountinfo(info);
    let m = find_mount(&mounts, &t);
    assert_eq!(m.fstype, "tmpfs");
    let opts: Vec<&str> = m.super_options.split(',').collect();
    assert!(opts.contains(&"size=1024k") && opts.contains(&"mode=710"), "{m:?}");
    assert_no_mounts_under(base.path());
}

#[test]
fn devpts_step_mounts_a_new_instance() {
    require_root!();
    let base = TempDir::new("pts").unwrap();
    let [pts] = <[PathBuf; 1]>::try_from(mkdirs(&base, &["pts"])).unwrap();
    // Opening ptmx allocates a pty in this instance: a new instance numbers from 0.
    let out = stdout_of(
        in_mount_ns(sh(r#"exec 3<>"$1/ptmx"; ls "$1"; echo --; cat /proc/self/mountinfo"#), &[])
            .arg(&pts)
            .mount(MountStep::devpts(&pts)),
    );
    let (listing, info) = out.split_once("--\n").unwrap();
    assert_eq!(lines(listing), ["0", "ptmx"]);
    let mounts = parse_mountinfo(info);
    let m = find_mount(&mounts, &pts);
    assert_eq!(m.fstype, "devpts");
    let opts: Vec<&str> = m.super_options.split(',').collect();
    assert!(opts.contains(&"ptmxmode=666") && opts.contains(&"mode=620"), "{m:?}");
    assert_no_mounts_under(base.path());
}

#[test]
fn mqueue_step_mounts_the_child_ipc_namespace_queues() {
    require_root!();
    let base = TempDir::new("mqs").unwrap();
    let [mq] = <[PathBuf; 1]>::try_from(mkdirs(&base, &["mq"])).unwrap();
    // Creating a file on an mqueue fs creates a message queue; reading it shows its state.
    let out = stdout_of(
        in_mount_ns(
            sh(r#"ls -A "$1"; echo --; : > "$1/nkq"; cat "$1/nkq"; echo; cat /proc/self/mountinfo"#),
            &[Namespace::Ipc],
        )
        .arg(&mq)
        .mount(MountStep::mqueue(&mq)),
    );
    let (listing, rest) = out.split_once("--\n").unwrap();
    assert_eq!(listing, "", "a new IPC namespace starts without queues");
    let (queue, info) = rest.split_once('\n').unwrap();
    assert!(queue.starts_with("QSIZE:0"), "{queue}");
    assert_eq!(find_mount(&parse_mountinfo(info), &mq).fstype, "mqueue");
    // SAFETY: NUL-terminated literal; no O_CREAT, so no further arguments.
    let mqd = unsafe { libc::mq_open(c"/nkq".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if mqd >= 0 {
        // SAFETY: we own mqd; unlink the leaked queue.
        unsafe {
            libc::mq_close(mqd);
            libc::mq_unlink(c"/nkq".as_ptr());
        }
        panic!("the child's queue appeared in the host IPC namespace");
    }
    assert_no_mounts_under(base.path());
}

#[test]
fn pivot_root_leaves_only_the_new_root_visible() {
    require_root!();
    let base = TempDir::new("piv").unwrap();
    let root = base.join("root");
    tiny_rootfs(&root).expect("build tiny rootfs");
    let host_marker = base.join("host-marker");
    fs::write(&host_marker, "host").unwrap();

    let out = stdout_of(
        in_mount_ns(
            sh(r#"ls -A /; echo --; ls -A /old; echo --; cat /proc/self/mountinfo; echo --
                  [ -e "$1" ] && echo marker-reachable || echo marker-gone"#),
            &[Namespace::Pid],
        )
        .arg(&host_marker)
        .mounts([MountStep::pivot_root(&root), MountStep::proc("/proc")]),
    );

    let parts: Vec<&str> = out.split("--\n").collect();
    let [listing, old, info, marker] = <[&str; 4]>::try_from(parts).expect("four sections");
    let mut inside: Vec<&str> = lines(listing);
    inside.sort_unstable();
    let mut expected: Vec<String> =
        fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    expected.sort_unstable();
    assert_eq!(inside, expected, "/ holds exactly the tiny rootfs");
    assert_eq!(old, "", "nothing of the old root is left in /old");
    let points: Vec<String> = parse_mountinfo(info).into_iter().map(|m| m.mount_point).collect();
    assert_eq!(points, ["/", "/proc"], "no host mounts remain");
    assert_eq!(marker, "marker-gone\n");
    assert_no_mounts_under(base.path());
}

#[test]
fn remount_read_only_of_root_after_pivot_blocks_writes() {
    require_root!();
    let base = TempDir::new("rro").unwrap();
    let root = base.join("root");
    tiny_rootfs(&root).expect("build tiny rootfs");

    let out = output(
        in_mount_ns(sh("mkdir /nk-made; echo x > /tmp/nk-file"), &[])
            .mounts([MountStep::pivot_root(&root), MountStep::remount_read_only("/")]),
    );

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.matches("Read-only file system").count(), 2, "both writes fail with EROFS: {stderr}");
    assert!(!root.join("nk-made").exists() && !root.join("tmp/nk-file").exists());
    // The host's view of the same directory is still writable.
    fs::create_dir(root.join("nk-host-made")).expect("the rootfs stays writable on the host");
    assert_no_mounts_under(base.path());
}

#[test]
fn mask_hides_file_contents_and_directory_entries() {
    require_root!();
    let base = TempDir::new("msk").unwrap();
    let file = base.join("secret.txt");
    let dir = base.join("secret.d");
    // A second masked directory: it gets a bind of the first one's empty read-only tmpfs.
    let dir2 = base.join("secret2.d");
    fs::write(&file, "top secret\n").unwrap();
    for d in [&dir, &dir2] {
        fs::create_dir(d).unwrap();
        fs::write(d.join("inner"), "x").unwrap();
    }

    let script = r#"cat "$1"; echo --; ls -A "$2" "$3"; touch "$3/nk-new" 2>/dev/null || echo RO; echo end"#;
    let out = stdout_of(in_mount_ns(sh(script), &[]).arg(&file).arg(&dir).arg(&dir2).mounts([
        MountStep::mask(&file),
        MountStep::mask(&dir),
        MountStep::mask(base.join("does-not-exist")),
        MountStep::mask(&dir2),
    ]));

    let listing = format!("{}:\n\n{}:\n", dir.display(), dir2.display());
    assert_eq!(out, format!("--\n{listing}RO\nend\n"), "the file reads empty, the directories list nothing");
    assert!(dir2.join("inner").exists() && !dir2.join("nk-new").exists());
    assert_eq!(fs::read_to_string(&file).unwrap(), "top secret\n", "the host still sees the data");
    assert!(dir.join("inner").exists());
    assert_no_mounts_under(base.path());
}

#[test]
fn mkdir_step_creates_directories_with_mode() {
    require_root!();
    let base = TempDir::new("mkd").unwrap();
    let [t] = <[PathBuf; 1]>::try_from(mkdirs(&base, &["t"])).unwrap();
    let umask = crate::procfs::status("self").and_then(|s| s.umask).expect("Umask in /proc/self/status");

    let out = stdout_of(in_mount_ns(sh(r#"stat -c '%F %a' "$1/a" "$1/a/b""#), &[]).arg(&t).mounts([
        MountStep::tmpfs(&t, Some("size=64k")),
        MountStep::mkdir(t.join("a")),
        MountStep::mkdir(t.join("a")),
        MountStep::MakeDir { path: t.join("a/b"), mode: 0o700 },
    ]));

    assert_eq!(
        lines(&out),
        [format!("directory {:o}", 0o755 & !umask), format!("directory {:o}", 0o700 & !umask)],
        "an existing directory is fine; modes are applied before the umask"
    );
    assert!(!t.join("a").exists(), "created inside the child's tmpfs, not on the host");
    assert_no_mounts_under(base.path());
}

#[test]
fn file_symlink_and_overlay_steps() {
    require_root!();
    let base = TempDir::new("fso").unwrap();
    let [t, lower] = <[PathBuf; 2]>::try_from(mkdirs(&base, &["t", "lower"])).unwrap();
    fs::write(lower.join("from-lower"), "low\n").unwrap();
    let script = r#"cat "$1/f" "$1/root/from-lower"; readlink "$1/l"; stat -c %s "$1/e"; echo up > "$1/root/new"; cat "$1/u/new""#;
    let out = stdout_of(in_mount_ns(sh(script), &[]).arg(&t).mounts([
        MountStep::tmpfs(&t, Some("size=64k")),
        MountStep::write_file(t.join("f"), "hello\n"),
        MountStep::make_file(t.join("e")),
        MountStep::symlink("pts/ptmx", t.join("l")),
        MountStep::symlink("elsewhere", t.join("l")),
        MountStep::mkdir(t.join("u")),
        MountStep::mkdir(t.join("w")),
        MountStep::mkdir(t.join("root")),
        MountStep::overlay(
            t.join("root"),
            format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                t.join("u").display(),
                t.join("w").display()
            ),
        ),
    ]));
    assert_eq!(lines(&out), ["hello", "low", "pts/ptmx", "0", "up"], "file written, link kept, copy-up to the upper");
    assert!(!t.join("f").exists() && !lower.join("new").exists(), "all of it inside the child's mounts");
    assert_no_mounts_under(base.path());
}

// ---------------------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------------------

#[test]
fn failing_bind_reports_mount_stage_with_step_index_and_enoent() {
    require_root!();
    let base = TempDir::new("fbd").unwrap();
    let [t, dst] = <[PathBuf; 2]>::try_from(mkdirs(&base, &["t", "dst"])).unwrap();
    let err = in_mount_ns(Command::new("/bin/true"), &[])
        .mounts([
            MountStep::tmpfs(&t, Some("size=64k")),
            MountStep::mkdir(t.join("a")),
            MountStep::bind(base.join("missing"), &dst),
            MountStep::tmpfs(&dst, None),
        ])
        .status()
        .expect_err("bind from a missing source");

    match err {
        Error::Spawn(e) => assert_eq!(e, SpawnError::new(Stage::Mount, libc::ENOENT, Some(2))),
        other => panic!("expected a spawn error, got {other:?}"),
    }
    assert_no_mounts_under(base.path());
}

#[test]
fn pivot_root_into_a_file_reports_pivot_root_stage() {
    require_root!();
    let base = TempDir::new("fpv").unwrap();
    let [t] = <[PathBuf; 1]>::try_from(mkdirs(&base, &["t"])).unwrap();
    let file = base.join("not-a-dir");
    fs::write(&file, "").unwrap();
    let err = in_mount_ns(Command::new("/bin/true"), &[])
        .mounts([MountStep::tmpfs(&t, Some("size=64k")), MountStep::pivot_root(&file)])
        .status()
        .expect_err("pivot_root into a regular file");

    match err {
        Error::Spawn(e) => assert_eq!(e, SpawnError::new(Stage::PivotRoot, libc::ENOTDIR, Some(1))),
        other => panic!("expected a spawn error, got {other:?}"),
    }
    assert_no_mounts_under(base.path());
}

// ---------------------------------------------------------------------------------------
// The default root propagation
// ---------------------------------------------------------------------------------------

/// A child mounts a tmpfs under a *shared* mount of its parent's namespace. With the
/// default (`/` made rprivate first) the mount stays in the child. Keeping the copied
/// propagation (`root_propagation(None)`) together with that mount step is refused before
/// the clone; the control shows why: the same mount made by the program itself propagates
/// back into the parent.
#[test]
fn default_rprivate_root_keeps_child_mounts_out_of_a_shared_parent() {
    require_root!();
    let base = TempDir::new("rpr").unwrap();
    on_private_mount_ns(|| {
        let shared = base.join("shared");
        mount_marked(&shared, "parent");
        set_propagation(&shared, Propagation::Shared, false).expect("make it shared");
        fs::create_dir(shared.join("sub")).unwrap();
        let sub = shared.join("sub");

        let status =
            in_mount_ns(Command::new("/bin/true"), &[]).mount(MountStep::tmpfs(&sub, Some("size=64k"))).status();
        assert!(status.expect("spawn").success());
        assert!(mount_at(&sub).is_none(), "the child's mount leaked despite the default rprivate root");

        let mut kept = in_mount_ns(Command::new("/bin/true"), &[]);
        kept.mount(MountStep::tmpfs(&sub, Some("size=64k"))).root_propagation(None);
        let err = kept.status().expect_err("mount steps with the caller's propagation kept");
        assert!(
            matches!(err, Error::Invalid(ValidationError::MountsWouldPropagate { root_propagation: None })),
            "{err:?}"
        );
        assert!(mount_at(&sub).is_none(), "a refused spawn mounted something");

        // Control: without mount steps `None` is accepted, and a mount the program makes
        // itself does propagate back — which is what the refusal above prevents.
        let mut control = in_mount_ns(sh(r#"mount -t tmpfs -o size=64k nk-control "$1""#), &[]);
        control.arg(&sub).root_propagation(None);
        assert!(output(&mut control).status.success());
        assert!(mount_at(&sub).is_some(), "without rprivate the mount should propagate back (control)");
        unmount(&sub, true).expect("unmount the leaked control mount");
        unmount(&shared, true).expect("unmount shared");
    });
    assert_no_mounts_under(base.path());
}

// ---------------------------------------------------------------------------------------
// Root propagations that cannot work, from a host whose `/` is shared (issue 11, item 6)
// ---------------------------------------------------------------------------------------

/// Runs `f` on a thread with a mount namespace of its own whose mounts are all shared, as
/// systemd makes a host's: the "host" of these tests. Mounts that leak into it vanish with
/// the thread.
fn on_shared_root_host<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    on_private_mount_ns(|| {
        set_propagation(Path::new("/"), Propagation::Shared, true).expect("make / rshared");
        f()
    })
}

/// The mounts of the calling thread's namespace, as (mount id, mount point), sorted.
fn mount_ids() -> Vec<(u64, String)> {
    let mut ids: Vec<(u64, String)> = crate::procfs::thread_mounts()
        .into_iter()
        .map(|m| (m.mnt_id as u64, m.mount_point.to_string_lossy().into_owned()))
        .collect();
    ids.sort();
    ids
}

/// The reported case: `root_propagation(None)` with a rootfs, `/proc` and `pivot_root`
/// from a host whose `/` is shared made `pivot_root` fail with EINVAL and left the rootfs
/// bind and two `/proc` mounts in the host's table. Now refused before the clone.
#[test]
fn kept_root_propagation_with_pivot_root_is_refused_and_leaves_no_host_mount() {
    require_root!();
    let base = TempDir::new("kpr").unwrap();
    let root = base.join("root");
    tiny_rootfs(&root).expect("build tiny rootfs");
    on_shared_root_host(|| {
        let before = mount_ids();
        let mut cmd = in_mount_ns(Command::new("/bin/true"), &[Namespace::Pid]);
        cmd.root_propagation(None).mounts([
            MountStep::proc(root.join("proc")),
            MountStep::pivot_root(&root),
            MountStep::proc("/proc"),
        ]);
        let validated = cmd.validate();
        let result = cmd.status();
        assert_eq!(mount_ids(), before, "the failed spawn left mounts on the host ({result:?})");
        assert_eq!(validated, Err(ValidationError::MountsWouldPropagate { root_propagation: None }));
        assert!(
            matches!(result, Err(Error::Invalid(ValidationError::MountsWouldPropagate { root_propagation: None }))),
            "{result:?}"
        );
    });
}

/// Every root propagation, with and without a user namespace, with steps that fail at the
/// end: the spawn fails (refused, or at the failing step) and the host's table is unchanged.
#[test]
fn failed_spawns_leave_no_host_mount_whatever_the_root_propagation() {
    require_root!();
    let base = TempDir::new("fsp").unwrap();
    let [t, dst, proc_dir] = <[PathBuf; 3]>::try_from(mkdirs(&base, &["t", "dst", "proc"])).unwrap();
    on_shared_root_host(|| {
        let before = mount_ids();
        let mut roots = vec![None];
        for p in [Propagation::Shared, Propagation::Slave, Propagation::Private, Propagation::Unbindable] {
            roots.extend([Some((p, true)), Some((p, false))]);
        }
        for root in roots {
            for user in [false, true] {
                let extra: &[Namespace] = if user { &[Namespace::Pid, Namespace::User] } else { &[Namespace::Pid] };
                let mut cmd = in_mount_ns(Command::new("/bin/true"), extra);
                cmd.root_propagation(root).mounts([
                    MountStep::tmpfs(&t, Some("size=64k")),
                    MountStep::proc(&proc_dir),
                    MountStep::bind(base.join("missing"), &dst),
                ]);
                let result = cmd.status();
                assert_eq!(mount_ids(), before, "{root:?} user={user} left mounts on the host: {result:?}");
                let refused = matches!(result, Err(Error::Invalid(ValidationError::MountsWouldPropagate { .. })));
                let failed = matches!(result, Err(Error::Spawn(SpawnError { stage: Stage::Mount, step: Some(2), .. })));
                assert!(refused || failed, "{root:?} user={user}: {result:?}");
                assert_eq!(refused, !user && !matches!(root, Some((p, true)) if p != Propagation::Shared));
            }
        }
    });
    assert_no_mounts_under(base.path());
}

/// What is accepted works from a shared host and leaves nothing: the default rprivate
/// root, an rslave root, and the caller's propagation kept in a new user namespace.
#[test]
fn accepted_root_propagations_pivot_from_a_shared_host_and_leave_no_mount() {
    require_root!();
    let base = TempDir::new("apr").unwrap();
    let root = base.join("root");
    tiny_rootfs(&root).expect("build tiny rootfs");
    on_shared_root_host(|| {
        let before = mount_ids();
        for (root_propagation, user) in
            [(Some((Propagation::Private, true)), false), (Some((Propagation::Slave, true)), false), (None, true)]
        {
            let extra: &[Namespace] = if user { &[Namespace::Pid, Namespace::User] } else { &[Namespace::Pid] };
            let mut cmd = in_mount_ns(sh("cat /proc/self/mountinfo"), extra);
            // /proc before the pivot: a user namespace may mount a new proc only while one is visible.
            cmd.root_propagation(root_propagation)
                .mounts([MountStep::proc(root.join("proc")), MountStep::pivot_root(&root)]);
            let out = stdout_of(&mut cmd);
            let points: Vec<String> = parse_mountinfo(&out).into_iter().map(|m| m.mount_point).collect();
            assert_eq!(points, ["/", "/proc"], "{root_propagation:?} user={user}");
            assert_eq!(mount_ids(), before, "{root_propagation:?} user={user} left mounts on the host");
        }
        // A recursively shared root cannot pivot (EINVAL): refused up front.
        let mut cmd = in_mount_ns(Command::new("/bin/true"), &[Namespace::Pid, Namespace::User]);
        cmd.root_propagation(Some((Propagation::Shared, true))).mounts([MountStep::pivot_root(&root)]);
        assert!(
            matches!(cmd.status(), Err(Error::Invalid(ValidationError::PivotRootUnderSharedRoot { step: 0 }))),
            "a shared root was not refused for pivot_root"
        );
        assert_eq!(mount_ids(), before);
    });
    assert_no_mounts_under(base.path());
}

/// A symbolic link in the new root cannot make a step before `pivot_root` create or mount
/// anything outside it (an image's `etc -> /etc`, say): steps below the new root resolve
/// their paths inside it, so an absolute link and a relative one climbing past the root
/// both land inside the root, and the host directory they name stays untouched.
#[test]
fn steps_below_the_new_root_resolve_symlinks_inside_it() {
    require_root!();
    let dir = TempDir::new("beneath").unwrap();
    let root = dir.join("root");
    tiny_rootfs(&root).unwrap();
    let outside = dir.join("outside");
    fs::create_dir(&outside).unwrap();
    // The same path inside the root, where the links must land.
    let inside = root.join(outside.strip_prefix("/").unwrap());
    fs::create_dir_all(&inside).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap();
    let climb = format!("{}{}", "../".repeat(16), outside.strip_prefix("/").unwrap().display());
    std::os::unix::fs::symlink(&climb, root.join("rel")).unwrap();
    let out = Command::new("/bin/true")
        .unshare(Namespace::Mount)
        .mount(MountStep::mkdir(root.join("abs/nk-dir")))
        .mount(MountStep::make_file(root.join("rel/nk-file")))
        .mount(MountStep::write_file(root.join("abs/nk-written"), "x"))
        .mount(MountStep::tmpfs(root.join("rel/nk-dir"), None))
        .mount(MountStep::pivot_root(&root))
        .output()
        .expect("spawn");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "nothing was made outside the root");
    for name in ["nk-dir", "nk-file", "nk-written"] {
        assert!(inside.join(name).exists(), "{name} was made inside the root");
    }
}

#[test]
fn make_node_step_creates_a_usable_device_node_on_a_dev_tmpfs() {
    require_root!();
    let base = TempDir::new("mkn").unwrap();
    let [t] = <[PathBuf; 1]>::try_from(mkdirs(&base, &["t"])).unwrap();
    // A /dev/null-like node (1:3, 0640, owned 3:4) on a tmpfs with `dev`; a second on a
    // tmpfs without it: there the kernel refuses to open it (nodev).
    let script = r#"stat -c '%F %a %u %g %t %T' "$1/dev/nk-null"; echo x > "$1/dev/nk-null" && echo wrote;
        (echo x > "$1/nodev/nk-null") 2>/dev/null && echo nodev-wrote || echo nodev-refused"#;
    let out = stdout_of(
        in_mount_ns(sh(script), &[])
            .arg(&t)
            .mount(MountStep::mkdir(t.join("dev")))
            .mount(MountStep::tmpfs(t.join("dev"), Some("mode=755,dev")))
            .mount(MountStep::make_node(t.join("dev/nk-null"), libc::S_IFCHR | 0o640, 1, 3, 3, 4))
            .mount(MountStep::mkdir(t.join("nodev")))
            .mount(MountStep::tmpfs(t.join("nodev"), Some("mode=755")))
            .mount(MountStep::make_node(t.join("nodev/nk-null"), libc::S_IFCHR | 0o666, 1, 3, 0, 0)),
    );
    assert_eq!(lines(&out), ["character special file 640 3 4 1 3", "wrote", "nodev-refused"], "{out}");
    // Not a device or fifo: refused before the clone.
    let mut bad = in_mount_ns(sh("true"), &[]);
    bad.mount(MountStep::make_node(t.join("x"), libc::S_IFREG | 0o644, 0, 0, 0, 0));
    assert!(matches!(bad.validate(), Err(nook_ns::ValidationError::NodeType { .. })), "{:?}", bad.validate());
    assert_no_mounts_under(base.path());
}
