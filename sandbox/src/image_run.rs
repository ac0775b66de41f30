//! Running an image: what a [`Rootfs::Image`] root becomes, and the sandbox operations
//! that need one ([`Sandbox::commit`]) or a live cgroup ([`Sandbox::update`]).
//!
//! # The image's values, and the caller's overrides
//! Before anything is created, the image's record and config are read from the store and
//! its run values resolved as `docker run` resolves them
//! ([`ImageStore::run_defaults`](crate::image::ImageStore::run_defaults)):
//!
//! | image config | overridden by (the caller wins)                                         |
//! |--------------|-------------------------------------------------------------------------|
//! | Entrypoint   | `Rootfs::Image::entrypoint` ([`SandboxBuilder::entrypoint`]); drops Cmd  |
//! | Cmd          | the spec's command ([`SandboxBuilder::command`] / `args`)                |
//! | Env          | merged with the spec's `env`, the spec's value winning per name          |
//! | WorkingDir   | `Rootfs::Image::working_dir`, or a spec `cwd` other than `/`             |
//! | User         | the spec's numeric `user` (uid, gid, groups), else `Rootfs::Image::user` ([`SandboxBuilder::image_user`]) |
//!
//! A user name is resolved against the image's own `/etc/passwd` and `/etc/group` (read
//! from its layers, no mount); a name the image does not have is
//! [`ImageError::UnknownUser`] — returned before any
//! container layer, cgroup or process exists. Supplementary groups are those the image's
//! `/etc/group` lists the user in (unless the spec's `user` names its own).
//!
//! # The container layer
//! A fresh container layer of the store (`ROOT/containers/<id>/{upper,work}`) is the
//! writable upper of an overlay over the image's layer chain, mounted in the sandbox's own
//! mount namespace (the plan is built and checked with the layer's paths first; the layer
//! is created just before the cgroup, and recorded in the owner record before that: see
//! "Dies with its owner" in the crate docs). It is removed with the sandbox — right after the
//! run for a one-shot sandbox, on [`Sandbox::remove`] for a long-lived one, best effort on
//! drop, by [`cleanup()`](crate::cleanup) after its owner died — unless `keep_container` is
//! set (then it is the caller's, and not recorded); [`Sandbox::commit`] turns it into a new image
//! (`docker commit`), while the sandbox runs (paused, by default) or, kept, after the run.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nook_unionfs::{ContainerLayer, LayerStack, Upper};

use crate::error::{Error, Result, ValidationError};
use crate::image::{CommitOptions, Image, ImageError, ImageStore, RunOverrides, normalize_reference};
use crate::run::{Sandbox, SandboxBuilder, no_cgroup, oom_kills};
use crate::spec::{Rootfs, SandboxSpec, User, absolute, no_nul};
use crate::state::Object;

/// Checks a [`Rootfs::Image`]'s own values (pure, plus a `stat` of the store).
pub(crate) fn validate(rootfs: &Rootfs) -> Result<(), ValidationError> {
    let Rootfs::Image { store, image, entrypoint, user, working_dir, .. } = rootfs else { return Ok(()) };
    normalize_reference(image).map_err(|e| match e {
        ImageError::Invalid(v) => ValidationError::Image(v),
        _ => ValidationError::Image(crate::image::ImageValidationError::Reference { value: image.clone() }),
    })?;
    absolute("image store", store)?;
    match std::fs::metadata(store) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(ValidationError::MissingRootfs {
                path: store.clone(),
                source: std::io::Error::from_raw_os_error(libc::ENOTDIR),
            });
        }
        Err(source) => return Err(ValidationError::MissingRootfs { path: store.clone(), source }),
    }
    for a in entrypoint.iter().flatten() {
        no_nul("entrypoint", a)?;
    }
    if let Some(u) = user {
        no_nul("image user", u)?;
    }
    if let Some(w) = working_dir {
        absolute("image working dir", w)?;
    }
    Ok(())
}

/// The image side of a sandbox: the store, the image, its container layer.
#[derive(Debug)]
pub(crate) struct ImageRun {
    store: ImageStore,
    image: Image,
    id: String,
    keep: bool,
    /// Present from creation until removal.
    container: Option<ContainerLayer>,
}

/// A container layer id unique on this host: `nk-sandbox-<pid>-<n>-<nanos>`.
fn container_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("nk-sandbox-{}-{}-{nanos:08x}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// For a spec with an image root: the spec with the image's run values applied (command,
/// env, cwd, user; see the module docs) and the image run (nothing created yet). Any other
/// spec comes back unchanged. Reads the store only.
pub(crate) fn resolve(spec: SandboxSpec, hold: bool) -> Result<(SandboxSpec, Option<ImageRun>)> {
    let Rootfs::Image { store, image, entrypoint, user, working_dir, keep_container } = &spec.rootfs else {
        return Ok((spec, None));
    };
    let store = ImageStore::open(store)?;
    let img = store.image(image)?;
    let mut o = RunOverrides {
        entrypoint: entrypoint.clone(),
        cmd: (!spec.args.is_empty()).then(|| spec.args.clone()),
        env: spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        working_dir: working_dir
            .as_deref()
            .or_else(|| (spec.cwd != Path::new("/")).then_some(spec.cwd.as_path()))
            .map(|w| w.to_string_lossy().into_owned()),
        user: match &spec.user {
            Some(u) => Some(format!("{}:{}", u.uid, u.gid)),
            None => user.clone(),
        },
    };
    let run = match store.run_defaults(&img, &o) {
        // A long-lived sandbox runs no command of its own: an image without one is fine.
        Err(ImageError::NoCommand { .. }) if hold => {
            o.cmd = Some(vec!["nk-init".to_owned()]);
            store.run_defaults(&img, &o)?
        }
        r => r?,
    };
    let keep = *keep_container;
    let mut out = spec.clone();
    if !hold {
        out.args = run.argv;
    }
    out.env = run.env.iter().filter_map(|e| e.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    out.cwd = run.working_dir;
    let groups = match &spec.user {
        Some(u) => u.groups.clone(),
        None => run.user.additional_gids.clone(),
    };
    out.user = Some(User { uid: run.user.uid, gid: run.user.gid, groups });
    // The image's values pass the same checks as the caller's.
    out.validate_for(!hold)?;
    Ok((out, Some(ImageRun { store, image: img, id: container_id(), keep, container: None })))
}

impl ImageRun {
    /// The overlay stack of the image's layers with the container layer as upper: the
    /// created layer's, or — before creation, to build and check the plan — the same paths
    /// the layer store will give it.
    fn stack(&self) -> Result<LayerStack> {
        if let Some(c) = &self.container {
            return Ok(c.stack.clone());
        }
        let layers = self.store.layer_store();
        let dir: PathBuf = layers.root().join("containers").join(&self.id);
        let mut stack = match &self.image.chain_id {
            Some(top) => layers.stack(top)?,
            None => {
                let mut s = LayerStack::new();
                s.lower(dir.join("empty"));
                s
            }
        };
        stack.upper(Upper::Dir { upper: dir.join("upper"), work: dir.join("work") });
        Ok(stack)
    }

    /// `spec` with the image root replaced by its overlay stack: what the mount plan is
    /// built from.
    pub(crate) fn mount_spec(&self, spec: &SandboxSpec) -> Result<SandboxSpec> {
        let mut s = spec.clone();
        s.rootfs = Rootfs::Stack(self.stack()?);
        Ok(s)
    }

    /// The container layer as the owner record lists it (recorded before it is created), or
    /// `None` when it is kept: then the caller owns it.
    pub(crate) fn recorded(&self) -> Option<Object> {
        (!self.keep)
            .then(|| Object::ContainerLayer { store: self.store.layer_store().root().to_owned(), id: self.id.clone() })
    }

    /// Whether some of the container layer exists on disk (after a failed creation).
    pub(crate) fn layer_left(&self) -> bool {
        self.store.layer_store().root().join("containers").join(&self.id).exists()
    }

    /// Creates the container layer (its paths must be the ones the plan was built with).
    pub(crate) fn create_layer(&mut self) -> Result<()> {
        let planned = self.stack()?;
        let layer = self.store.create_container(&self.id, &self.image)?;
        let id = layer.id.clone();
        self.container = Some(layer);
        if self.stack()? != planned {
            let cause = Error::Sys {
                call: "create container layer",
                path: Some(self.store.root().join("containers").join(&id)),
                source: std::io::Error::other("the layer store laid the container layer out elsewhere"),
            };
            let cleanup = self.remove_layer().err().into_iter().collect();
            return Err(Error::with_cleanup(cause, cleanup));
        }
        Ok(())
    }

    /// Removes the container layer (once; later calls do nothing).
    pub(crate) fn remove_layer(&mut self) -> Result<()> {
        match self.container.take() {
            Some(c) => Ok(self.store.layer_store().remove_container(&c.id).map_err(ImageError::from)?),
            None => Ok(()),
        }
    }

    /// Removes the container layer at the end of the sandbox, unless it is kept.
    pub(crate) fn teardown(&mut self) -> Result<()> {
        if self.keep { Ok(()) } else { self.remove_layer() }
    }
}

impl SandboxBuilder {
    /// The root filesystem: the image `reference` of `store`, with a fresh container layer
    /// (see [`Rootfs::Image`]; overrides set before with [`SandboxBuilder::entrypoint`],
    /// [`SandboxBuilder::image_user`] and [`SandboxBuilder::keep_container`] stay).
    pub fn image(&mut self, store: &ImageStore, reference: impl Into<String>) -> &mut Self {
        let (store_root, reference) = (store.root().to_path_buf(), reference.into());
        match &mut self.spec.rootfs {
            Rootfs::Image { store, image, .. } => {
                *store = store_root;
                *image = reference;
            }
            other => *other = Rootfs::image(store, reference),
        }
        self
    }

    fn image_rootfs(&mut self) -> &mut Rootfs {
        if !matches!(self.spec.rootfs, Rootfs::Image { .. }) {
            self.spec.rootfs = Rootfs::Image {
                store: PathBuf::new(),
                image: String::new(),
                entrypoint: None,
                user: None,
                working_dir: None,
                keep_container: false,
            };
        }
        &mut self.spec.rootfs
    }

    /// Replaces the image's Entrypoint (`docker run --entrypoint`; the image's Cmd is then
    /// dropped unless a command is set). Makes the root an image root ([`Rootfs::Image`]):
    /// name the image with [`SandboxBuilder::image`].
    pub fn entrypoint<I, S>(&mut self, argv: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let argv: Vec<String> = argv.into_iter().map(Into::into).collect();
        if let Rootfs::Image { entrypoint, .. } = self.image_rootfs() {
            *entrypoint = Some(argv);
        }
        self
    }

    /// Replaces the image's User (`docker run -u`: `name`, `uid`, `name:group`,
    /// `uid:gid`), resolved against the image's `/etc/passwd` and `/etc/group`. Makes the
    /// root an image root, like [`SandboxBuilder::entrypoint`].
    pub fn image_user(&mut self, spec: impl Into<String>) -> &mut Self {
        let spec = spec.into();
        if let Rootfs::Image { user, .. } = self.image_rootfs() {
            *user = Some(spec);
        }
        self
    }

    /// Keep the container layer when the sandbox ends (to commit it after the run). Makes
    /// the root an image root, like [`SandboxBuilder::entrypoint`].
    pub fn keep_container(&mut self, yes: bool) -> &mut Self {
        if let Rootfs::Image { keep_container, .. } = self.image_rootfs() {
            *keep_container = yes;
        }
        self
    }
}

impl Sandbox {
    /// The image the sandbox runs (for a [`Rootfs::Image`] root).
    pub fn image(&self) -> Option<&Image> {
        self.image.as_ref().map(|r| &r.image)
    }

    /// The id of the sandbox's container layer in the image store, while it exists.
    pub fn container_id(&self) -> Option<&str> {
        self.image.as_ref().and_then(|r| r.container.as_ref()).map(|c| c.id.as_str())
    }

    /// Commits the sandbox's container layer — every change its processes made to the
    /// root filesystem — as the new image `reference` on top of the sandbox's image
    /// (`docker commit`; the layer work is [`ImageStore::commit`]). While the sandbox runs
    /// and has a cgroup, its processes are frozen during the commit unless
    /// `options.pause` is `false` (a sandbox the caller paused stays paused). After the run
    /// it works on a kept container layer ([`SandboxBuilder::keep_container`]).
    pub fn commit(&self, reference: &str, options: &CommitOptions) -> Result<Image> {
        let run = self.image.as_ref().ok_or(Error::NoContainerLayer { reason: "its root is not an image" })?;
        let layer = run.container.as_ref().ok_or(Error::NoContainerLayer {
            reason: "the container layer was removed when the run ended (see keep_container)",
        })?;
        let pause = options.pause && self.outcome.is_none() && self.cgroup.is_some() && !self.is_paused();
        if pause {
            self.pause()?;
        }
        let committed = run.store.commit(&run.image, &layer.upper, reference, options);
        let resumed = if pause { self.resume() } else { Ok(()) };
        match (committed, resumed) {
            (Ok(image), Ok(())) => Ok(image),
            (Ok(_), Err(e)) => Err(e),
            (Err(e), Ok(())) => Err(e.into()),
            (Err(e), Err(c)) => Err(Error::Cleanup { cause: Box::new(e.into()), cleanup: vec![c] }),
        }
    }

    /// Changes the limits of the running sandbox's cgroup (`docker update`): the values set
    /// in `resources` are written to the live cgroup, the others stay. Only controllers the
    /// cgroup was created with can be set (a long-lived sandbox's cgroup has every
    /// controller the host delegates). A memory limit set here also makes the run's outcome
    /// report OOM kills ([`crate::Outcome::OomKilled`]).
    pub fn update(&mut self, resources: &nook_cgroup::Resources) -> Result<()> {
        resources.validate().map_err(ValidationError::from)?;
        let cg = self.cgroup.as_mut().ok_or_else(no_cgroup)?;
        cg.update(resources)?;
        if resources.memory.is_some() && self.oom_before.is_none() {
            self.oom_before = Some(oom_kills(cg)?);
        }
        Ok(())
    }
}
