//! OCI image import (a `docker save` archive: its manifest, config and layers) and the
//! image config's `User` resolution against the image's `/etc/passwd` and `/etc/group`.

use nook_sandbox::image::{ImageStore, ImportOptions, resolve_user};

use crate::jail::Jail;
use crate::layer::small_limits;

/// The input is a `docker save` archive (tar); it is imported into a fresh image store in the
/// jail. Nothing may appear outside the store; an imported image is listed under its
/// reference, with one layer per DiffID of its config, and can be removed and pruned.
pub fn image_import(data: &[u8]) {
    let jail = Jail::get("image");
    let work = jail.fresh("w");
    let archive = work.join("archive.tar");
    std::fs::write(&archive, data).expect("write the archive");
    let store = ImageStore::open(work.join("store")).expect("open a fresh image store");
    let mut options = ImportOptions::default();
    options.limits = small_limits();
    let imported = store.import_docker_archive(&archive, "nk-fuzz/image:1", options);
    jail.check();
    crate::verbose("import", &imported);
    let Ok(image) = imported else { return };
    let listed = store.image("nk-fuzz/image:1").expect("an imported image is listed");
    assert_eq!(listed, image);
    let config = store.config(&image).expect("its config reads back");
    assert_eq!(config.rootfs().diff_ids().len(), image.layers.len(), "one layer per DiffID");
    store.remove("nk-fuzz/image:1").expect("remove the image");
    store.prune().expect("prune");
    assert!(store.images().expect("list").is_empty());
    jail.check();
}

/// `user` NUL `passwd` NUL `group` → [`resolve_user`]: never panics; a numeric `uid:gid`
/// (digits only) resolves to itself.
pub fn image_user(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let user = parts.next().unwrap_or("");
    let passwd = parts.next();
    let group = parts.next();
    let _ = resolve_user(user, passwd, group);
    // Digits only: `str::parse` takes `+0` too, which resolve_user (as Docker) looks up as a
    // name.
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some((u, g)) = user.split_once(':')
        && digits(u)
        && digits(g)
        && let (Ok(u), Ok(g)) = (u.parse::<u32>(), g.parse::<u32>())
        && let Ok(r) = resolve_user(user, passwd, group)
    {
        assert_eq!((r.uid, r.gid), (u, g), "numeric {user:?}");
    }
}
