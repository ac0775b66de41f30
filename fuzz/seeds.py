#!/usr/bin/env python3
"""Writes the seed corpora in corpus/ (run once; the fuzzers add to them). Deterministic."""
import gzip, io, json, os, tarfile

HERE = os.path.dirname(os.path.abspath(__file__))

def out(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def tar(entries, fmt=tarfile.PAX_FORMAT):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=fmt) as t:
        for e in entries:
            kind, name = e[0], e[1]
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            data = None
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif kind == "file":
                data = e[2]
                ti.size, ti.mode = len(data), 0o644
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, e[2]
            elif kind == "link":
                ti.type, ti.linkname = tarfile.LNKTYPE, e[2]
            elif kind == "chr":
                ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, e[2], e[3]
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            if len(e) > 3 and isinstance(e[-1], dict):
                ti.pax_headers = e[-1]
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return b.getvalue()

plain = tar([("dir", "etc"), ("file", "etc/hosts", b"127.0.0.1 localhost\n"), ("sym", "etc/mtab", "/proc/mounts"),
             ("link", "etc/hosts2", "etc/hosts"), ("dir", "usr/bin"), ("file", "usr/bin/x", b"#!/bin/sh\n"),
             ("sym", "bin", "usr/bin"), ("fifo", "run/fifo"),
             ("file", "cap", b"x", {"SCHILY.xattr.user.k": "v", "SCHILY.xattr.trusted.overlay.opaque": "y"})])
wh = tar([("dir", "a"), ("file", "a/.wh..wh..opq", b""), ("file", "a/keep", b"k"), ("file", ".wh.gone", b""),
          ("file", "a/.wh.old", b""), ("dir", "b"), ("file", "b/.wh.c", b""), ("file", ".wh..wh.plnk", b""),
          ("chr", "dev0", 0, 0)])
escape = tar([("file", "../evil", b"x"), ("file", "/abs", b"x"), ("sym", "up", "../outside"), ("file", "up/new", b"x"),
              ("sym", "root", "/outside"), ("file", "root/sentinel", b"x"), ("link", "hl", "../outside/sentinel"),
              ("link", "hl2", "/outside/sentinel"), ("sym", "d/l", "../../outside/sentinel"), ("file", "d/l", b"over"),
              ("dir", "x/../../outside"), ("file", "a/b/../../../w2", b"x"), ("chr", "mem", 1, 1)])
replace = tar([("dir", "p"), ("file", "p/f", b"1"), ("file", "p", b"now a file"), ("dir", "p"), ("sym", "q", "p"),
               ("file", "q/x", b"through a symlink"), ("link", "r", "q"), ("file", "s", b"s"), ("link", "s2", "s"),
               ("file", "s", b"rewritten")])
for sel in range(4):
    out("layer_apply", f"plain-{sel}", bytes([sel]) + plain)
    out("layer_apply", f"whiteouts-{sel}", bytes([sel]) + wh)
    out("layer_apply", f"whiteouts-b-{sel}", bytes([sel + 4]) + wh)
out("layer_apply", "escape-0", b"\x00" + escape)
out("layer_apply", "escape-2", b"\x02" + escape)
out("layer_apply", "replace-0", b"\x00" + replace)
out("layer_apply", "replace-1", b"\x01" + replace)
out("layer_apply", "gnu-2", b"\x02" + tar([("dir", "g" * 120), ("file", "g" * 120 + "/" + "h" * 120, b"long")], tarfile.GNU_FORMAT))
out("layer_apply", "gzip-2", b"\x02" + gzip.compress(wh, mtime=0))
