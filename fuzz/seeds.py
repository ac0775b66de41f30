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

# cgroup_files: mountinfo NUL /proc/self/cgroup; '#' + a stats file.
hybrid_mi = (
    "24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
    "28 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755\n"
    "29 28 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate\n"
    "30 28 0:28 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd\n"
    "33 28 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct\n"
    "34 28 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory\n"
    "35 28 0:33 /nk\\040x /sys/fs/cgroup/pids\\040dir rw,nosuid - cgroup cgroup rw,pids\n")
hybrid_cg = "12:pids:/nk x/y\n5:memory:/user.slice\n4:cpu,cpuacct:/user.slice\n1:name=systemd:/user.slice/s.scope\n0::/user.slice/s.scope\n"
v2_mi = "29 1 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
ns_mi = "29 1 0:27 /a/b /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
out("cgroup_files", "hybrid", (hybrid_mi + "\0" + hybrid_cg).encode())
out("cgroup_files", "v2", (v2_mi + "\0" + "0::/init.scope\n").encode())
out("cgroup_files", "cgroupns-outside", (ns_mi + "\0" + "0::/../../x\n").encode())
out("cgroup_files", "cgroupns-inside", (ns_mi + "\0" + "0::/a/b/c\n").encode())
out("cgroup_files", "stat-cpu", b"#usage_usec 1234\nuser_usec 1000\nsystem_usec 234\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n")
out("cgroup_files", "stat-mem", b"#anon 4096\nfile 8192\nkernel_stack 0\npgfault 12\n")
out("cgroup_files", "stat-io", b"#8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n")
out("cgroup_files", "psi", b"#some avg10=0.00 avg60=0.12 avg300=1.50 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
out("cgroup_files", "limit-max", b"#max\n")
out("cgroup_files", "limit-num", b"#33554432\n")

# idmap
for name, ranges in [("root", [(0, 1000, 1)]), ("two", [(0, 1000, 1), (1, 100000, 65536)]),
                     ("overlap", [(0, 1000, 10), (5, 2000, 1)]), ("top", [(4294967294, 0, 1)]),
                     ("empty", [])]:
    out("idmap", name, json.dumps({"ranges": [{"inside": i, "outside": o, "count": c} for i, o, c in ranges]}).encode())

# seccomp_profile: 0 = Docker's format, 1 = the OCI runtime spec's linux.seccomp.
with open(os.path.join(HERE, "..", "sandbox", "src", "hardening", "seccomp", "docker-default.json"), "rb") as f:
    out("seccomp_profile", "docker-default", b"\0" + f.read())
small_docker = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
                "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                             {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                             {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}], "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                             {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
                             {"names": ["kill"], "action": "SCMP_ACT_NOTIFY"},
                             {"names": ["bogus_syscall"], "action": "SCMP_ACT_KILL_PROCESS"}]}
out("seccomp_profile", "docker-small", b"\0" + json.dumps(small_docker).encode())
oci_seccomp = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "architectures": ["SCMP_ARCH_X86_64"],
               "flags": ["SECCOMP_FILTER_FLAG_LOG"],
               "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
                            {"names": ["write"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5, "args": [{"index": 0, "value": 2, "valueTwo": 0, "op": "SCMP_CMP_GE"}]},
                            {"names": ["mkdir"], "action": "SCMP_ACT_TRACE"}, {"names": ["exit"], "action": "SCMP_ACT_LOG"}]}
out("seccomp_profile", "oci", b"\1" + json.dumps(oci_seccomp).encode())

# ipam_state of network nk-fuzz
def ipam(pools, allocs, version=1, network="nk-fuzz"):
    return json.dumps({"version": version, "network": network,
                       "pools": [dict(subnet=s, gateway=g, **({"cursor": c} if c else {})) for s, g, c in pools],
                       "allocations": [{"address": a, "owner": o} for a, o in allocs]}, indent=2).encode()
proc_owner = {"kind": "process", "pid": 1, "start_time": 5}
out("ipam_state", "v4", ipam([("10.88.0.0/29", "10.88.0.1", "10.88.0.6")], [("10.88.0.2", proc_owner)]))
out("ipam_state", "dual", ipam([("10.88.0.0/30", "10.88.0.1", None), ("fd00::/126", "fd00::1", "fd00::3")], [("fd00::2", {"kind": "netns", "path": "/run/netns/nk"})]))
out("ipam_state", "cursor-outside", ipam([("10.88.0.0/24", "10.88.0.1", "192.168.0.9")], []))
out("ipam_state", "slash31", ipam([("10.88.0.0/31", "10.88.0.0", None)], []))
out("ipam_state", "bad-version", ipam([("10.88.0.0/24", "10.88.0.1", None)], [], version=2))

# image_user: user NUL passwd NUL group
passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nnk:x:1000:1000::/home/nk:/bin/sh\n"
group = "root:x:0:\nwheel:x:10:nk,root\nnk:x:1000:\n"
for name, user in [("name", "nk"), ("name-group", "nk:wheel"), ("numeric", "1000:1000"), ("uid", "65534"), ("unknown", "ghost"), ("empty", "")]:
    out("image_user", name, (user + "\0" + passwd + "\0" + group).encode())

# image_import: a `docker save` archive with one layer.
import hashlib
layer = tar([("dir", "etc"), ("file", "etc/os-release", b"ID=nk\n"), ("sym", "bin", "usr/bin"), ("dir", "usr/bin"), ("file", "usr/bin/.wh.gone", b"")])
diff = hashlib.sha256(layer).hexdigest()
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin"], "User": "0"},
                     "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff]}}).encode()
cdig = hashlib.sha256(config).hexdigest()
def archive(manifest, files):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in [("manifest.json", json.dumps(manifest).encode())] + files:
            ti = tarfile.TarInfo(name); ti.size = len(data); ti.mtime = 1700000000
            t.addfile(ti, io.BytesIO(data))
    return b.getvalue()
m = [{"Config": cdig + ".json", "RepoTags": ["nk/fuzz:1"], "Layers": [diff + "/layer.tar"]}]
out("image_import", "one-layer", archive(m, [(cdig + ".json", config), (diff + "/layer.tar", layer)]))
m2 = [{"Config": "blobs/sha256/" + cdig, "RepoTags": None, "Layers": ["blobs/sha256/" + diff]}]
out("image_import", "oci-names", archive(m2, [("blobs/sha256/" + cdig, config), ("blobs/sha256/" + diff, layer)]))
out("image_import", "escape-names", archive([{"Config": "../c.json", "Layers": ["/etc/passwd"]}], [("../c.json", config)]))

# oci_config: runc spec's config.json (made by `runc spec`, kept in corpus_oci/), and variants.
for name in sorted(os.listdir(os.path.join(HERE, "corpus_oci"))):
    with open(os.path.join(HERE, "corpus_oci", name)) as f:
        spec = json.load(f)
    out("oci_config", name, json.dumps(spec).encode())
    spec["process"]["terminal"] = False
    out("oci_config", name + "-noterm", json.dumps(spec).encode())
    spec["linux"]["resources"] = {"memory": {"limit": 67108864, "swap": 134217728}, "pids": {"limit": 64},
                                  "cpu": {"shares": 512, "quota": 50000, "period": 100000},
                                  "devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]}
    spec["linux"]["cgroupsPath"] = "nk-fuzz/c1"
    spec["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    spec["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438, "uid": 0, "gid": 0}]
    spec["mounts"].append({"destination": "/data", "type": "bind", "source": "/tmp", "options": ["rbind", "ro", "nosuid"]})
    spec["mounts"].append({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=64m"]})
    spec["mounts"].append({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro"]})
    spec["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    spec["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    out("oci_config", name + "-more", json.dumps(spec).encode())
