//! nook-oci's `config.json` mapping (`oci/src/config.rs`, compiled into this crate: nook-oci
//! is a binary).

use crate::jail::Jail;

/// JSON → `oci_spec::runtime::Spec` → nook-oci's `config::map` on a bundle in the jail (with a
/// `rootfs/`); a mapped spec is validated and roundtrips through serde.
pub fn oci_config(data: &[u8]) {
    let Ok(spec) = serde_json::from_slice::<oci_spec::runtime::Spec>(data) else { return };
    let jail = Jail::get("oci");
    let bundle = jail.top.join("bundle");
    if !bundle.join("rootfs").is_dir() {
        std::fs::create_dir_all(bundle.join("rootfs")).expect("make the bundle");
    }
    let mapped = crate::config::map(spec, &bundle);
    crate::verbose("map", &mapped.as_ref().map(|_| ()));
    let Ok(mapped) = mapped else { return };
    let spec = mapped.builder.to_spec();
    crate::verbose("validate", &mapped.builder.validate());
    let text = serde_json::to_vec(&spec).expect("a spec serializes");
    let back: nook_sandbox::SandboxSpec = serde_json::from_slice(&text).expect("and reads back");
    assert_eq!(back, spec, "serde roundtrip of a mapped spec");
    jail.check();
}
