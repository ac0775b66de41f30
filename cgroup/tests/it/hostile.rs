//! A hostile caller's specs and a hostile host layout (issue 11, items 1 and 2), on the
//! real kernel:
//!
//! - a `parent` that climbs out of the hierarchy (`/../../..<dir>`, odd absolute and
//!   relative forms) is a typed validation error, and a decoy tree outside cgroupfs stays
//!   byte for byte as it was;
//! - defense in depth: a bind mount placed under a parent, over a cgroup file or inside a
//!   cgroup tree, a hierarchy whose mount point is a symlink to a plain directory, and an
//!   own cgroup that names a path outside the mount are refused at run time, again with
//!   the decoy untouched;
//! - `Cgroup::create` never adopts a cgroup that exists: a foreign process inside survives,
//!   whatever was made before the refusal is undone, and of concurrent creators of one
//!   name exactly one wins; `Cgroup::open` works on an existing cgroup and its drop kills
//!   and removes nothing.
//!
//! Layout-agnostic: runs on this hybrid host and in the pure cgroup v2 guest of
//! `.ci/v2-lane`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nook_cgroup::{Cgroup, CgroupSpec, Controller, Error, Hierarchies, Location, ValidationError, Version};
use nook_testutil::{TempDir, on_private_mount_ns, require_root, unique_name};

/// Every file, symlink and directory below `dir` with the bytes of each file (the target
/// of a symlink, `None` for a directory): what "byte-identical and still present" is compared with.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
        let mut entries: Vec<_> = fs::read_dir(dir).expect("read decoy").flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_owned();
            let t = e.file_type().unwrap();
            if t.is_symlink() {
                let target = fs::read_link(&p).unwrap();
                out.insert(rel, Some([b"symlink -> ", target.as_os_str().as_bytes()].concat()));
            } else if t.is_dir() {
                out.insert(rel, None);
                walk(root, &p, out);
            } else {
                out.insert(rel, Some(fs::read(&p).expect("read decoy file")));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A decoy outside cgroupfs shaped like a cgroup and its parent: `pids.max`,
/// `cgroup.procs`, `memory.max` and `cgroup.subtree_control` holding `original` at the top
/// and in `<name>`, and empty directories (`<name>/child`, `empty`) that a removal that
/// escaped would delete.
fn decoy(name: &str) -> TempDir {
    let t = TempDir::new("decoy").expect("temp dir");
    fs::create_dir_all(t.join(name).join("child")).unwrap();
    fs::create_dir(t.join("empty")).unwrap();
    for f in ["pids.max", "cgroup.procs", "memory.max", "cgroup.subtree_control"] {
        fs::write(t.join(f), "original").unwrap();
        fs::write(t.join(name).join(f), "original").unwrap();
    }
    t
}

/// `path` written as a cgroup path that climbs from the hierarchy root to `/` and then
/// down to `path`: `/../../../..` + `path`.
fn climbing(path: &Path) -> PathBuf {
    let mut s = b"/../../../../../../..".to_vec();
    s.extend_from_slice(path.as_os_str().as_bytes());
    PathBuf::from(std::ffi::OsStr::from_bytes(&s))
}

fn pids_spec(name: &str) -> CgroupSpec {
    let mut spec = CgroupSpec::new(name);
    spec.resources.pids.get_or_insert_default().max(10);
    spec
}

/// The result must be a refusal the caller can match on: a validation error, a path the
/// library will not resolve, or a parent the mount does not show.
#[track_caller]
fn assert_refused(what: &str, r: nook_cgroup::Result<Cgroup>) {
    match r {
        Err(Error::Invalid(ValidationError::BadParent { .. } | ValidationError::BadName { .. }))
        | Err(Error::Unsafe { .. })
        | Err(Error::ParentNotVisible { .. }) => {}
        Err(e) => panic!("{what}: expected a typed refusal, got {e:?}"),
        Ok(cg) => {
            let paths: Vec<PathBuf> = cg.paths().map(Path::to_owned).collect();
            // Dropping it would remove what it made wherever that is: leak, then report.
            let _ = cg.leak();
            panic!("{what}: accepted, created {paths:?}");
        }
    }
}

/// A parent that climbs out with `..`, in all the spellings a caller could try: typed
/// errors, and the decoy (a directory shaped like a cgroup) is untouched — no `10` written
/// into its `pids.max`, no empty directory removed.
#[test]
fn a_parent_that_climbs_out_is_refused_and_the_decoy_is_untouched() {
    require_root!();
    let name = unique_name("esc");
    let d = decoy(&name);
    let before = snapshot(d.path());
    let parents = [
        climbing(d.path()),
        PathBuf::from(format!("{}/..", climbing(d.path()).display())),
        PathBuf::from(format!("/.{}", d.path().display())),
        PathBuf::from(format!("/./..{}", d.path().display())),
        PathBuf::from(format!("//..{}", d.path().display())),
        PathBuf::from(format!("{}/", climbing(d.path()).display())),
        // Relative: as /proc/self/cgroup never names a cgroup.
        PathBuf::from(format!("../../../../../..{}", d.path().display())),
        PathBuf::from(format!("{}/x/../..", d.path().display())),
    ];
    for parent in parents {
        let mut spec = pids_spec(&name);
        spec.parent = Some(parent.clone());
        assert_refused(&format!("parent {parent:?}"), Cgroup::create(&spec));
        assert_refused(&format!("open with parent {parent:?}"), Cgroup::open(&spec));
        assert_eq!(snapshot(d.path()), before, "the decoy changed (parent {parent:?})");
    }
    // The same through the name and the leaf.
    let mut spec = pids_spec(&format!("../../../../../../..{}/{name}", d.path().display()));
    assert_refused("a climbing name", Cgroup::create(&spec));
    spec = pids_spec(&name);
    spec.leaf_for_parent_processes = Some(format!("../../../../../../..{}/{name}", d.path().display()));
    assert_refused("a climbing leaf", Cgroup::create(&spec));
    assert_eq!(snapshot(d.path()), before, "the decoy changed");
}

/// Hierarchies are public data a caller may adjust: an own cgroup (as a cgroup namespace
/// shows one outside it) that climbs out, and a mount point that is a symlink to a plain
/// directory (or a plain directory), are refused at run time.
#[test]
fn adjusted_hierarchies_cannot_redirect_into_a_plain_directory() {
    require_root!();
    let name = unique_name("adj");
    let d = decoy(&name);
    let before = snapshot(d.path());
    let real = Hierarchies::discover().expect("discover");

    // Own cgroup `/../../..<decoy>` in every hierarchy, no explicit parent.
    let mut h = real.clone();
    for x in h.v1.iter_mut().chain(h.v2.as_mut()) {
        x.own_cgroup = climbing(d.path());
    }
    assert_refused("a climbing own cgroup", Cgroup::create_in(h, &pids_spec(&name)));
    assert_eq!(snapshot(d.path()), before, "the decoy changed (own cgroup)");

    // Mount points that are a symlink to the decoy, or the decoy itself.
    let link = d.join("link");
    std::os::unix::fs::symlink(d.path(), &link).unwrap();
    let before = snapshot(d.path());
    for mount_point in [link.clone(), d.path().to_owned()] {
        let mut h = real.clone();
        for x in h.v1.iter_mut().chain(h.v2.as_mut()) {
            x.mount_point = mount_point.clone();
            x.mount_root = PathBuf::from("/");
            x.own_cgroup = PathBuf::from("/");
        }
        match Cgroup::create_in(h, &pids_spec(&name)) {
            Err(Error::Unsafe { path, .. }) => assert_eq!(path, mount_point),
            Err(e) => panic!("mount point {}: expected Unsafe, got {e:?}", mount_point.display()),
            Ok(cg) => {
                let _ = cg.leak();
                panic!("mount point {}: accepted", mount_point.display());
            }
        }
        assert_eq!(snapshot(d.path()), before, "the decoy changed (mount point {})", mount_point.display());
    }
}

/// Where a pids-limited spec called `name` goes: (hierarchy mount point, own cgroup dir) for
/// the v2 tree (when mounted) and the hierarchy managing pids.
fn own_dirs_for_pids(h: &Hierarchies) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(v2) = &h.v2 {
        out.push(v2.own_dir().expect("own v2 dir"));
    }
    if let Some(Location::V1(x)) = h.locate(Controller::Pids) {
        out.push(x.own_dir().expect("own pids dir"));
    }
    out
}

/// Removes the listed (test-made) cgroup directories on drop, deepest first, after
/// detaching the listed mounts and killing the listed processes.
#[derive(Default)]
struct Cleanup {
    dirs: Vec<PathBuf>,
    children: Vec<Child>,
    mounts: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for m in &self.mounts {
            let _ = rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH);
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in self.dirs.iter().rev() {
            for _ in 0..200 {
                if fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

/// A bind mount placed under the parent (the next component of the path is a mount of a
/// plain directory) is not crossed: create refuses it, the decoy is untouched.
#[test]
fn a_bind_mount_under_the_parent_is_not_crossed() {
    require_root!();
    let name = unique_name("bnd");
    let d = decoy("cg");
    let before = snapshot(d.path());
    on_private_mount_ns(|| {
        let h = Hierarchies::discover().expect("discover");
        let mut guard = Cleanup::default();
        // A cgroup directory `<own>/<name>` in each hierarchy, with the decoy bound onto it.
        for own in own_dirs_for_pids(&h) {
            let target = own.join(&name);
            fs::create_dir(&target).unwrap();
            guard.dirs.push(target.clone());
            bind(d.path(), &target);
            guard.mounts.push(target);
        }
        let parent = own_parent(&h).join(&name);
        let mut spec = pids_spec("cg");
        spec.parent = Some(parent.clone());
        assert_refused(&format!("parent {} with a bind mount", parent.display()), Cgroup::create(&spec));
        // Open resolves the same way.
        assert_refused("open through a bind mount", Cgroup::open(&spec));
        assert_eq!(snapshot(d.path()), before, "the decoy changed");
        for own in own_dirs_for_pids(&h) {
            unmount(&own.join(&name));
        }
    });
    assert_eq!(snapshot(d.path()), before, "the decoy changed");
}

/// The one cgroup path that names the caller's cgroup in every hierarchy a pids spec uses
/// (the v2 one where v2 is mounted; tests on v1-only hosts use the pids hierarchy's).
fn own_parent(h: &Hierarchies) -> PathBuf {
    match (&h.v2, h.locate(Controller::Pids)) {
        (Some(v2), Some(Location::V1(p))) => {
            assert_eq!(v2.own_cgroup, p.own_cgroup, "the test needs one own cgroup path for v2 and pids");
            v2.own_cgroup.clone()
        }
        (Some(v2), _) => v2.own_cgroup.clone(),
        (None, Some(loc)) => loc.hierarchy().own_cgroup.clone(),
        (None, None) => panic!("no hierarchy for pids"),
    }
}

fn bind(src: &Path, target: &Path) {
    // The calling thread has a private mount namespace.
    let r = rustix::mount::mount_bind(src, target);
    assert_eq!(r, Ok(()), "bind {} on {}", src.display(), target.display());
}

fn unmount(target: &Path) {
    let r = rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH);
    assert_eq!(r, Ok(()), "umount {}", target.display());
}

/// A bind mount over a cgroup file of a live cgroup is not written through by `update`, and
/// one placed over a directory inside the cgroup tree is not descended into by `remove`.
#[test]
fn bind_mounts_inside_a_cgroup_are_not_written_through_or_emptied() {
    require_root!();
    let d = decoy("cg");
    let before = snapshot(d.path());
    on_private_mount_ns(|| {
        let cg = Cgroup::create(&pids_spec(&unique_name("bmf"))).expect("create");
        let (pids_dir, _) = cg.dir_of(Controller::Pids).expect("pids dir");
        let pids_dir = pids_dir.to_owned();
        let mut guard = Cleanup { dirs: vec![pids_dir.clone()], children: Vec::new(), mounts: Vec::new() };

        // Over a file: the update is refused.
        bind(&d.join("cg/pids.max"), &pids_dir.join("pids.max"));
        guard.mounts.push(pids_dir.join("pids.max"));
        let mut cg = cg;
        let mut r = nook_cgroup::Resources::new();
        r.pids.get_or_insert_default().max(7);
        match cg.update(&r) {
            Err(Error::Unsafe { path, .. }) => assert_eq!(path, pids_dir.join("pids.max")),
            other => panic!("update through a bind-mounted pids.max: expected Unsafe, got {other:?}"),
        }
        unmount(&pids_dir.join("pids.max"));
        assert_eq!(snapshot(d.path()), before, "the decoy's pids.max was written");

        // Over a child cgroup directory: removal does not empty the decoy.
        let sub = pids_dir.join("sub");
        fs::create_dir(&sub).unwrap();
        guard.dirs.push(sub.clone());
        bind(d.path(), &sub);
        guard.mounts.push(sub.clone());
        let err = cg.remove().expect_err("remove with a bind mount inside");
        assert!(format!("{err:?}").contains("Unsafe"), "{err:?}");
        assert_eq!(snapshot(d.path()), before, "removal reached into the bind-mounted decoy");
        unmount(&sub);
    });
    assert_eq!(snapshot(d.path()), before, "the decoy changed");
}

/// A `sleep` placed by the test into the existing cgroup directories `dirs`.
fn foreign_process_in(dirs: &[PathBuf]) -> Child {
    let child = Command::new("sleep").arg("600").stdin(Stdio::null()).spawn().expect("spawn sleep");
    for d in dirs {
        fs::write(d.join("cgroup.procs"), child.id().to_string()).expect("move the foreign process");
    }
    child
}

fn procs(dir: &Path) -> Vec<u32> {
    fs::read_to_string(dir.join("cgroup.procs")).unwrap().lines().map(|l| l.parse().unwrap()).collect()
}

/// A cgroup `name` made by the test (not the library) in each hierarchy that has `pids`,
/// holding a foreign `sleep`: its directories, and the guard that kills the process and
/// removes them.
fn existing_cgroup_with_foreign_process(name: &str) -> (Vec<PathBuf>, Cleanup) {
    let h = Hierarchies::discover().expect("discover");
    let dirs: Vec<PathBuf> = own_dirs_for_pids(&h).iter().map(|o| o.join(name)).collect();
    let mut guard = Cleanup { dirs: dirs.clone(), children: Vec::new(), mounts: Vec::new() };
    for d in &dirs {
        fs::create_dir(d).unwrap();
    }
    guard.children.push(foreign_process_in(&dirs));
    (dirs, guard)
}

#[track_caller]
fn assert_exists_error(r: nook_cgroup::Result<Cgroup>, dirs: &[PathBuf]) {
    match r {
        Err(Error::Exists { path }) => assert!(dirs.contains(&path), "{} is not one of {dirs:?}", path.display()),
        Err(e) => panic!("expected Exists, got {e:?}"),
        Ok(cg) => {
            // Dropping it is the attack: it would kill the foreign process.
            let _ = cg.leak();
            panic!("create adopted the existing cgroup");
        }
    }
}

/// A cgroup that exists and holds someone else's process is not adopted: `Exists`, and the
/// process and the directories survive (the handle of the old code killed the process and
/// removed the group when dropped).
#[test]
fn create_refuses_an_existing_cgroup_and_its_process_survives() {
    require_root!();
    let name = unique_name("adp");
    let (dirs, mut guard) = existing_cgroup_with_foreign_process(&name);
    let pid = guard.children[0].id();

    assert_exists_error(Cgroup::create(&pids_spec(&name)), &dirs);
    // Also without limits (only the v2 dir on hybrid hosts, or the first v1 hierarchy).
    assert!(matches!(Cgroup::create(&CgroupSpec::new(&name)), Err(Error::Exists { .. })));

    assert!(guard.children[0].try_wait().unwrap().is_none(), "the foreign process was killed");
    for d in &dirs {
        assert!(d.is_dir(), "{} was removed", d.display());
        assert_eq!(procs(d), vec![pid], "{}", d.display());
    }
    if let Ok(max) = fs::read_to_string(dirs.last().unwrap().join("pids.max")) {
        assert_eq!(max.trim(), "max", "a limit was written into the existing cgroup");
    }
}

/// Hybrid hosts: only the v1 directory exists. The v2 directory that create made first is
/// removed again, and the v1 one (with its process) stays. On one hierarchy (pure v2) the
/// same holds for a nested name whose last component exists: the parent stays.
#[test]
fn a_partial_clash_undoes_what_create_made() {
    require_root!();
    let name = unique_name("prt");
    let h = Hierarchies::discover().expect("discover");
    let owns = own_dirs_for_pids(&h);
    let mut guard = Cleanup::default();
    if owns.len() > 1 {
        let v1 = owns.last().unwrap().join(&name);
        fs::create_dir(&v1).unwrap();
        // The v2 directory too, in case create leaves it (the bug this catches).
        guard.dirs.push(owns[0].join(&name));
        guard.dirs.push(v1.clone());
        guard.children.push(foreign_process_in(std::slice::from_ref(&v1)));
        assert_exists_error(Cgroup::create(&pids_spec(&name)), std::slice::from_ref(&v1));
        assert!(!owns[0].join(&name).exists(), "the v2 directory made before the clash is left");
        assert!(guard.children[0].try_wait().unwrap().is_none(), "the foreign process was killed");
        assert_eq!(procs(&v1), vec![guard.children[0].id()]);
    }
    // A nested name `<name>n/inner` whose `inner` exists (in the first hierarchy only).
    let outer = format!("{name}n");
    let first = owns[0].join(&outer);
    fs::create_dir(&first).unwrap();
    fs::create_dir(first.join("inner")).unwrap();
    guard.dirs.push(first.clone());
    guard.dirs.push(first.join("inner"));
    assert_exists_error(Cgroup::create(&pids_spec(&format!("{outer}/inner"))), &[first.join("inner")]);
    assert!(first.join("inner").is_dir() && first.is_dir(), "existing directories were removed");
    for o in &owns[1..] {
        assert!(!o.join(&outer).exists(), "{} is left", o.join(&outer).display());
    }
}

/// `Cgroup::open` works on an existing cgroup (limits, procs) and dropping the handle kills
/// nothing and removes nothing.
#[test]
fn open_uses_an_existing_cgroup_and_its_drop_leaves_it() {
    require_root!();
    let name = unique_name("opn");
    let (dirs, mut guard) = existing_cgroup_with_foreign_process(&name);
    let pid = guard.children[0].id();
    {
        let mut cg = Cgroup::open(&pids_spec(&name)).expect("open");
        assert!(!cg.is_owned());
        assert_eq!(cg.paths().map(Path::to_owned).collect::<Vec<_>>(), dirs);
        assert_eq!(cg.procs().unwrap(), vec![pid]);
        let mut r = nook_cgroup::Resources::new();
        r.pids.get_or_insert_default().max(9);
        cg.update(&r).expect("update an opened cgroup");
        let (pids_dir, _) = cg.dir_of(Controller::Pids).unwrap();
        assert_eq!(fs::read_to_string(pids_dir.join("pids.max")).unwrap().trim(), "9");
    }
    assert!(guard.children[0].try_wait().unwrap().is_none(), "dropping an opened handle killed the process");
    for d in &dirs {
        assert!(d.is_dir(), "dropping an opened handle removed {}", d.display());
        assert_eq!(procs(d), vec![pid]);
    }
    // A cgroup that is not there is an error that says so.
    match Cgroup::open(&pids_spec(&unique_name("non"))) {
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e:?}"),
        Ok(_) => panic!("opened a cgroup that does not exist"),
    }
    // And an explicit remove of an opened cgroup does tear it down.
    let cg = Cgroup::open(&pids_spec(&name)).expect("open");
    cg.remove().expect("explicit remove of an opened cgroup");
    assert!(guard.children[0].wait().is_ok());
    for d in &dirs {
        assert!(!d.exists(), "{} is left after an explicit remove", d.display());
    }
}

/// The `mkdir` is the claim: of creators racing for one name exactly one gets the cgroup,
/// the others get `Exists`, and nothing is left after the winner removes it.
#[test]
fn concurrent_creators_of_one_name_get_one_cgroup() {
    require_root!();
    let name = unique_name("rce");
    let spec = pids_spec(&name);
    let results: Vec<nook_cgroup::Result<Cgroup>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6).map(|_| s.spawn(|| Cgroup::create(&spec))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (won, lost): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    for l in &lost {
        assert!(matches!(l, Err(Error::Exists { .. })), "{l:?}");
    }
    assert_eq!(won.len(), 1, "{} creators got the cgroup", won.len());
    let cg = won.into_iter().next().unwrap().unwrap();
    assert!(cg.is_owned());
    let paths: Vec<PathBuf> = cg.paths().map(Path::to_owned).collect();
    assert!(paths.iter().all(|p| p.is_dir()), "the winner's directories were removed by a loser: {paths:?}");
    assert_eq!(cg.dir_of(Controller::Pids).map(|(_, v)| v == Version::V1 || v == Version::V2), Some(true));
    cg.remove().unwrap();
    assert!(paths.iter().all(|p| !p.exists()));
}
