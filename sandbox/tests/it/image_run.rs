//! Running an image in a sandbox against the real kernel (as root): the image config
//! applied and overridden, the user resolved before anything exists, commit of a container
//! layer into a new image that a second sandbox runs, `update` of live limits, and nothing
//! left behind (mounts, container layers, cgroups, temp dirs).

use nook_cgroup::{Controller, Memory, Pids, Resources, Version};
use nook_sandbox::image::{CommitOptions, ImageError, ImageStore, ImportOptions};
use nook_sandbox::{Error, Outcome, Rootfs, Sandbox, SandboxBuilder, SandboxSpec};
use nook_testutil::{TempDir, require_root};
use oci_spec::image::ImageConfiguration;

use crate::image::{Comp, app_layer, assert_empty, base_layer, write_layout};
use crate::sandbox::{mounts, our_cgroups, serial};

/// What the image's default command prints: its env, cwd and identity.
const PROBE: &str = r#"echo "$GREETING|$(pwd)|$(id -u):$(id -g)|$(id -G)|$HOME"; cat /app/hello"#;

/// A store with the image `nk-app:1` (user `app`, Cmd = [`PROBE`]) imported from an OCI
/// layout built here from host binaries.
pub(crate) fn store_with_app(t: &TempDir) -> ImageStore {
    store_at(t.path())
}

/// [`store_with_app`] in any directory: the store at `dir/store`.
pub(crate) fn store_at(dir: &std::path::Path) -> ImageStore {
    let base = base_layer(dir);
    let layout = write_layout(&dir.join("layout"), &[(base, Comp::Gzip), (app_layer(), Comp::Plain)], "app", |c| {
        set_cmd(c, PROBE)
    });
    let store = ImageStore::open(dir.join("store")).unwrap();
    store.import_layout(&layout.dir, "nk-app:1", ImportOptions::default()).unwrap();
    std::fs::remove_dir_all(&layout.dir).unwrap();
    store
}

/// Removes every image of `store` and prunes it.
pub(crate) fn empty_store_at(store: &ImageStore) {
    for i in store.images().unwrap() {
        store.remove(&i.reference).unwrap();
    }
    store.prune().unwrap();
}

fn set_cmd(c: &mut ImageConfiguration, script: &str) {
    let mut cfg = c.config().clone().unwrap();
    cfg.set_cmd(Some(vec![script.to_owned()]));
    c.set_config(Some(cfg));
}

fn output(b: &mut SandboxBuilder) -> String {
    let out = b.output().expect("sandbox run");
    let (o, e) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.outcome, Outcome::Exited(0), "stdout:\n{o}\nstderr:\n{e}");
    o.into_owned()
}

/// No container layer, image-tmp or tmp entry left in the store.
fn no_containers(store: &ImageStore) {
    for sub in ["containers", "tmp", "image-tmp"] {
        let left: Vec<_> = std::fs::read_dir(store.root().join(sub)).unwrap().flatten().map(|e| e.path()).collect();
        assert!(left.is_empty(), "{sub}: {left:?}");
    }
}

/// Removes every image and prunes: the store is empty again.
fn empty_store(store: &ImageStore) {
    for i in store.images().unwrap() {
        store.remove(&i.reference).unwrap();
    }
    store.prune().unwrap();
    assert_empty(store);
}

#[test]
fn image_runs_with_its_config_applied() {
    require_root!();
    let _serial = serial();
    let t = TempDir::new("nk-imgrun").unwrap();
    let store = store_with_app(&t);
    let before = mounts();

    let out = output(Sandbox::builder().image(&store, "nk-app:1").memory_max(64 << 20));
    // Env (GREETING), WorkingDir (/app), User (app = 1000:1000, in wheel = 10 by the
    // image's /etc/group), HOME from the image's /etc/passwd, Entrypoint + Cmd.
    assert_eq!(out, "hi|/app|1000:1000|1000 10|/home/app\nhello from the image\n");

    // The spec form (serde) runs the same.
    let mut spec = SandboxSpec::default();
    spec.rootfs = Rootfs::image(&store, "nk-app:1");
    let json = serde_json::to_string(&spec).unwrap();
    let spec: SandboxSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(output(&mut SandboxBuilder::from_spec(spec)), out);

    assert_eq!(mounts(), before, "nothing mounted in the caller's namespace");
    assert!(our_cgroups().is_empty(), "no cgroup left");
    no_containers(&store);
    empty_store(&store);
}

#[test]
fn caller_overrides_win() {
    require_root!();
    let _serial = serial();
    let t = TempDir::new("nk-imgrun").unwrap();
    let store = store_with_app(&t);

    // A command replaces Cmd (the Entrypoint `/bin/sh -c` stays); env merges, the caller
    // winning; cwd and user replace the image's.
    let out = output(
        Sandbox::builder()
            .image(&store, "nk-app:1")
            .command(r#"echo "$GREETING|$EXTRA|$PATH|$(pwd)|$(id -u):$(id -g)|$HOME""#)
            .env("GREETING", "yo")
            .env("EXTRA", "x")
            .current_dir("/tmp")
            .image_user("root"),
    );
    assert_eq!(out, "yo|x|/bin:/usr/bin|/tmp|0:0|/root\n");

    // An entrypoint override drops the image's Cmd.
    let out = output(Sandbox::builder().entrypoint(["/bin/echo", "from the entrypoint"]).image(&store, "nk-app:1"));
    assert_eq!(out, "from the entrypoint\n");

    // A numeric user (with its own groups) wins over the image's and an image_user.
    let out = output(
        Sandbox::builder()
            .image(&store, "nk-app:1")
            .image_user("app")
            .user(4321, 8765)
            .groups(&[42])
            .command("id -u; id -g; id -G"),
    );
    assert_eq!(out, "4321\n8765\n8765 42\n");

    // `name:group` resolves against the image's /etc/group.
    let out = output(Sandbox::builder().image(&store, "nk-app:1").image_user("app:wheel").command("id -u; id -g"));
    assert_eq!(out, "1000\n10\n");

    assert!(our_cgroups().is_empty());
    no_containers(&store);
    empty_store(&store);
}

#[test]
fn unknown_user_is_refused_before_anything_exists() {
    require_root!();
    let _serial = serial();
    let t = TempDir::new("nk-imgrun").unwrap();
    let store = store_with_app(&t);
    let before = mounts();

    let mut b = Sandbox::builder();
    b.image(&store, "nk-app:1").image_user("ghost").memory_max(64 << 20).pids_max(16);
    let err = b.output().unwrap_err();
    assert!(matches!(&err, Error::Image(ImageError::UnknownUser { user }) if user == "ghost"), "{err:?}");
    let err = b.create().unwrap_err();
    assert!(matches!(&err, Error::Image(ImageError::UnknownUser { .. })), "{err:?}");
    assert!(matches!(b.validate(), Err(Error::Image(ImageError::UnknownUser { .. }))));
    // Proof of the order: a cgroup that cannot be created (its directory is taken) fails
    // the run with a valid user — and with an unknown one, the user error comes first.
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own_pids = own.lines().find_map(|l| l.split_once(":pids:").map(|(_, p)| p.to_owned())).unwrap();
    let name = format!("nk-imgrun-taken-{}", std::process::id());
    let taken = std::path::Path::new("/sys/fs/cgroup/pids").join(own_pids.trim_start_matches('/')).join(&name);
    std::fs::create_dir(&taken).unwrap();
    let mut cg = nook_cgroup::CgroupSpec::new(name);
    cg.resources.pids.get_or_insert_default().max(16);
    let mut b = Sandbox::builder();
    b.image(&store, "nk-app:1").cgroup(cg);
    let valid = b.output();
    b.image_user("ghost");
    let unknown = b.output();
    std::fs::remove_dir(&taken).unwrap();
    let err = valid.unwrap_err();
    assert!(matches!(err, Error::Cgroup(_)), "{err:?}");
    let err = unknown.unwrap_err();
    assert!(matches!(&err, Error::Image(ImageError::UnknownUser { .. })), "{err:?}");
    no_containers(&store);

    let mut b = Sandbox::builder();
    b.image(&store, "nk-app:1").image_user("app:ghosts");
    assert!(matches!(b.output(), Err(Error::Image(ImageError::UnknownGroup { .. }))));
    let mut b = Sandbox::builder();
    b.image(&store, "nk-absent:1");
    assert!(matches!(b.output(), Err(Error::Image(ImageError::ImageNotFound { .. }))));
    let mut b = Sandbox::builder();
    b.entrypoint(["/bin/true"]);
    assert!(matches!(b.output(), Err(Error::Invalid(_))), "an entrypoint without an image");

    assert!(our_cgroups().is_empty(), "no cgroup was created");
    assert_eq!(mounts(), before);
    no_containers(&store);
    empty_store(&store);
}

#[test]
fn commit_makes_an_image_a_second_sandbox_runs() {
    require_root!();
    let _serial = serial();
    let t = TempDir::new("nk-imgrun").unwrap();
    let store = store_with_app(&t);
    let before = mounts();

    // Long-lived: change the root in the running sandbox, commit (paused), remove.
    let sb = Sandbox::builder().image(&store, "nk-app:1").create().unwrap();
    let id = sb.container_id().unwrap().to_owned();
    assert!(store.root().join("containers").join(&id).is_dir());
    let st = sb
        .exec(["/bin/sh", "-c", "echo committed > /app/new && echo changed > /app/hello"])
        .user(0, 0)
        .status()
        .unwrap();
    assert!(st.success());
    // exec runs with the image's values too (env, WorkingDir, User).
    let out = sb.exec(["/bin/sh", "-c", "echo $GREETING $(pwd) $(id -u)"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi /app 1000\n");
    let image = sb.commit("nk-app:2", &CommitOptions::default()).unwrap();
    assert!(!sb.is_paused(), "resumed after the commit");
    // A sandbox the caller paused stays paused.
    sb.pause().unwrap();
    let mut unpaused = CommitOptions::default();
    unpaused.pause = false;
    sb.commit("nk-app:2b", &CommitOptions::default()).unwrap();
    sb.commit("nk-app:2c", &unpaused).unwrap();
    assert!(sb.is_paused());
    sb.resume().unwrap();
    assert_eq!(image.layers.len(), 3);
    sb.remove().unwrap();
    assert!(!store.root().join("containers").join(&id).exists(), "container layer removed with the sandbox");

    // The committed image has the change (and keeps the config).
    let out = output(Sandbox::builder().image(&store, "nk-app:2").command("cat /app/new /app/hello; id -u"));
    assert_eq!(out, "committed\nchanged\n1000\n");

    // One-shot, kept: commit after the run, then the caller removes the layer.
    let mut sb = Sandbox::builder()
        .image(&store, "nk-app:1")
        .keep_container(true)
        .image_user("root")
        .command("echo after > /after")
        .spawn()
        .unwrap();
    assert_eq!(sb.wait().unwrap(), Outcome::Exited(0));
    let kept = sb.container_id().unwrap().to_owned();
    sb.commit("nk-app:3", &CommitOptions::default()).unwrap();
    drop(sb);
    store.layer_store().remove_container(&kept).unwrap();
    assert_eq!(output(Sandbox::builder().image(&store, "nk-app:3").command("cat /after")), "after\n");

    // Not kept: after the run there is nothing to commit.
    let mut sb = Sandbox::builder().image(&store, "nk-app:1").command("true").spawn().unwrap();
    sb.wait().unwrap();
    assert!(matches!(sb.commit("nk-app:4", &CommitOptions::default()), Err(Error::NoContainerLayer { .. })));
    drop(sb);
    // Not an image root.
    let sb = Sandbox::builder().create().unwrap();
    assert!(matches!(sb.commit("nk-app:4", &CommitOptions::default()), Err(Error::NoContainerLayer { .. })));
    sb.remove().unwrap();

    assert_eq!(mounts(), before);
    assert!(our_cgroups().is_empty());
    no_containers(&store);
    empty_store(&store);
}

/// The value of a limit file of the sandbox's cgroup.
fn limit(sb: &Sandbox, controller: Controller, v1: &str, v2: &str) -> String {
    let (dir, version) = sb.cgroup().unwrap().dir_of(controller).unwrap();
    let file = if version == Version::V1 { v1 } else { v2 };
    std::fs::read_to_string(dir.join(file)).unwrap().trim().to_owned()
}

#[test]
fn update_changes_the_live_limits() {
    require_root!();
    let _serial = serial();
    let t = TempDir::new("nk-imgrun").unwrap();
    let store = store_with_app(&t);

    let mut sb = Sandbox::builder().image(&store, "nk-app:1").memory_max(64 << 20).pids_max(32).create().unwrap();
    let mem = |sb: &Sandbox| limit(sb, Controller::Memory, "memory.limit_in_bytes", "memory.max");
    let pids = |sb: &Sandbox| limit(sb, Controller::Pids, "pids.max", "pids.max");
    assert_eq!(mem(&sb), (64u64 << 20).to_string());
    assert_eq!(pids(&sb), "32");

    let mut r = Resources::default();
    let mut m = Memory::default();
    m.max = Some(96 << 20);
    m.swap = Some(0);
    r.memory = Some(m);
    let mut p = Pids::default();
    p.max(3);
    r.pids = Some(p);
    sb.update(&r).unwrap();
    assert_eq!(mem(&sb), (96u64 << 20).to_string());
    assert_eq!(pids(&sb), "3");
    // The kernel enforces the new pids limit: init + sh + 2 more cannot all start.
    let out = sb.exec(["/bin/sh", "-c", "sleep 5 & sleep 5 & sleep 5 & wait"]).output().unwrap();
    assert!(!out.outcome.success() || !out.stderr.is_empty(), "fork refused under pids.max=3");

    // A bad value is refused before anything is written.
    let mut bad = Resources::default();
    let mut p = Pids::default();
    p.max(0);
    bad.pids = Some(p);
    assert!(matches!(sb.update(&bad), Err(Error::Invalid(_))));
    assert_eq!(pids(&sb), "3");
    sb.remove().unwrap();

    // Without a cgroup there is nothing to update.
    let mut one = Sandbox::builder().command("/bin/sleep").arg("5").spawn().unwrap();
    assert!(one.update(&r).is_err());
    one.kill().unwrap();
    one.wait().unwrap();

    assert!(our_cgroups().is_empty());
    no_containers(&store);
    empty_store(&store);
}

/// Imports an image `reference` into `store`: the app's layers plus a layer of its own (so
/// at least one layer is applied, not found in the store). The layout is built in `dir`.
pub(crate) fn import_app(
    store: &ImageStore,
    dir: &std::path::Path,
    reference: &str,
) -> nook_sandbox::image::Result<nook_sandbox::image::Image> {
    let own = crate::image::tar_files(&[("nk-own", reference.as_bytes())]);
    let layers = [(base_layer(dir), Comp::Gzip), (app_layer(), Comp::Plain), (own, Comp::Plain)];
    let layout = write_layout(&dir.join("layout-own"), &layers, "app", |c| set_cmd(c, PROBE));
    let r = store.import_layout(&layout.dir, reference, ImportOptions::default());
    std::fs::remove_dir_all(&layout.dir).unwrap();
    r
}
