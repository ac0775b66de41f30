//! `list [--format table|json] [--quiet]`: the containers under `--root`, as runc lists
//! them — sorted by id; `pid` 0 once stopped; the owner is the user owning the container's
//! state directory (`#UID` when `/etc/passwd` has no name for it); a directory whose state
//! cannot be read is skipped with a note on stderr. Table: runc's columns and spacing (Go's
//! `tabwriter` with minimum width 12 and padding 3). JSON: runc's objects, `null` when there
//! are none.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, SysContext};
use crate::state::Container;

/// One row: runc's `containerState`.
#[derive(Debug, Serialize)]
struct Listed {
    #[serde(rename = "ociVersion")]
    version: String,
    id: String,
    pid: u32,
    status: String,
    bundle: String,
    rootfs: String,
    created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<std::collections::HashMap<String, String>>,
    owner: String,
}

pub(crate) fn list(root: &Path, l: &liboci_cli::List) -> Result<(), Error> {
    if l.format != "table" && l.format != "json" {
        return Err(Error::Usage(format!("invalid format option {:?} (table or json)", l.format)));
    }
    let rows = containers(root)?;
    if l.quiet {
        for r in &rows {
            println!("{}", r.id);
        }
        return Ok(());
    }
    if l.format == "json" {
        let json = if rows.is_empty() {
            "null".to_owned()
        } else {
            serde_json::to_string(&rows).map_err(|source| Error::Json { path: root.to_owned(), source })?
        };
        println!("{json}");
        return Ok(());
    }
    let mut cells = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(str::to_owned)];
    for r in &rows {
        cells.push([
            r.id.clone(),
            r.pid.to_string(),
            r.status.clone(),
            r.bundle.clone(),
            r.created.clone(),
            r.owner.clone(),
        ]);
    }
    print!("{}", table(&cells));
    Ok(())
}

/// Go's `tabwriter.NewWriter(w, 12, 1, 3, ' ', 0)` over tab-terminated cells: each column as
/// wide as its widest cell plus 3, at least 12; the last column unpadded.
fn table<const N: usize>(cells: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max((c.chars().count() + 3).max(12));
        }
    }
    let mut out = String::new();
    for row in cells {
        for (i, c) in row.iter().enumerate() {
            out.push_str(c);
            if i + 1 < N {
                out.push_str(&" ".repeat(widths[i] - c.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

fn containers(root: &Path) -> Result<Vec<Listed>, Error> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).sys("readdir", root),
    };
    let mut ids: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    let mut rows = Vec::new();
    for id in ids {
        let loaded = Container::load(root, &id).and_then(|c| c.status().map(|s| (c, s)));
        let (c, status) = match loaded {
            Ok(x) => x,
            Err(e) => {
                eprintln!("load container {id}: {e}");
                continue;
            }
        };
        let uid = std::fs::metadata(root.join(&id)).map(|m| m.uid()).unwrap_or(0);
        let stopped = status == crate::state::Status::Stopped;
        rows.push(Listed {
            version: c.stored.oci.version().clone(),
            id,
            pid: if stopped { 0 } else { c.stored.record.pid },
            status: status.to_string(),
            bundle: c.stored.oci.bundle().display().to_string(),
            rootfs: c.stored.rootfs.display().to_string(),
            created: c.stored.created.clone(),
            annotations: c.stored.oci.annotations().clone().filter(|a| !a.is_empty()),
            owner: user_name(uid),
        });
    }
    Ok(rows)
}

/// The name `/etc/passwd` gives `uid`, or `#UID` (runc's fallback).
fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2].parse() == Ok(uid)).then(|| f[0].to_owned())
            })
        })
        .unwrap_or_else(|| format!("#{uid}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_pads_like_gos_tabwriter() {
        let cells = [["ID", "PID"].map(str::to_owned), ["a-very-long-container-id", "7"].map(str::to_owned)];
        assert_eq!(super::table(&cells), "ID                         PID\na-very-long-container-id   7\n");
        let short = [["ID", "PID", "X"].map(str::to_owned)];
        assert_eq!(super::table(&short), "ID          PID         X\n");
    }

    #[test]
    fn unknown_uids_are_numbered() {
        assert_eq!(super::user_name(0), "root");
        assert_eq!(super::user_name(4_000_000_000), "#4000000000");
    }
}
