//! The v2 device controller: a `BPF_PROG_TYPE_CGROUP_DEVICE` program built from a
//! [`DevicePolicy`] and attached to the cgroup directory.
//!
//! cgroup v2 has no `devices.allow`: the kernel runs the BPF programs attached to the
//! cgroup (and its ancestors) with a `struct bpf_cgroup_dev_ctx { u32 access_type; u32
//! major; u32 minor; }` for every device `open` and `mknod`, where `access_type` is
//! `(access << 16) | type` (type: block 1, char 2; access: mknod 1, read 2, write 4). A
//! program returns 1 to allow and 0 to deny (`EPERM`).
//!
//! ## How the kernel asks, and what the program answers
//! One check is made per `open` or `mknod`, and its access may combine several types:
//! `open(O_RDWR)` asks for read|write at once, `mknod` for mknod alone, and an execute-only
//! permission check (`access(X_OK)`) on a device node asks with no access bit at all. The
//! program decides such a request the way [`DevicePolicy::permits`] does: **each access type
//! on its own** — the type is decided by the last rule that matches the device and names it,
//! else by the default — and the request is allowed only if every type in it is. So a
//! `deny c 1:3 w` also refuses `open(O_RDWR)` of `/dev/null` (runc and crun require a rule to
//! cover the whole request, which lets `O_RDWR` past a write-only deny). A request with no
//! access bit is allowed: nothing is read, written or created.
//!
//! ## Program layout
//! One section per access type, each a first-match chain over the rules naming that type:
//! ```text
//! r2 = ctx->access_type & 0xffff          ; device type
//! r3 = ctx->access_type >> 16             ; requested access types
//! r4 = ctx->major
//! r5 = ctx->minor
//! for T in mknod, read, write:
//!   if (r3 & T) == 0 goto next_type       ; (r1 = r3 & T)
//!   for each rule naming T, last to first:
//!     r1 = (r2 ^ TYPE) | (r4 ^ MAJOR) | (r5 ^ MINOR)   ; 32-bit ops, r0 as scratch;
//!                                                      ; a part is left out for "any"
//!     if r1 != 0 goto next_rule
//!     allow: goto next_type               deny: r0 = 0 ; exit
//!   default deny: r0 = 0 ; exit           (default allow: fall through)
//! next_type: ...
//! r0 = 1 ; exit
//! ```
//! Why this shape: the verifier walks every path and prunes a path only when it reaches an
//! instruction in a state it has seen. Branching only on the scratch `r1`, never on the
//! registers that live on (`r2`–`r5` are never narrowed by a jump and never modified), makes
//! every path reach each rule in the same state, so verification stays linear in the number
//! of rules. (A single chain that clears decided bits from `r3` is shorter, but leaves
//! `r3` in a different state on each path and runs into the verifier's 1M-instruction limit
//! with a few thousand rules.)
//!
//! Also: a rule that matches everything ends its section (what follows it is unreachable,
//! and the verifier rejects unreachable code); the first rules of a section whose verdict is
//! the default are left out (they change nothing); a section that could only allow is left
//! out. Jumps are 16-bit, so one section holds at most ~3000 rules; a larger policy is
//! refused with `E2BIG` before loading.
//!
//! Loading and attaching: `bpf(BPF_PROG_LOAD)` (retried with a verifier log on failure,
//! which then comes back in [`Error::Bpf`]) once per process and program — a new cgroup
//! with a policy loaded before shares that program —, `bpf(BPF_PROG_ATTACH, BPF_F_ALLOW_MULTI)` on
//! the cgroup directory, and on an update `BPF_F_REPLACE` of the program this handle
//! attached before, so the cgroup is never without a filter. Kernels before 5.6 lack
//! `BPF_F_REPLACE`: there the new program is attached first and the old one detached
//! after (for that moment both apply, and an access needs both to allow it). The returned
//! program fd is close-on-exec; the cgroup keeps the program attached for as long as the
//! cgroup exists (the fd is what lets a later update replace it). Before Linux 5.11 BPF
//! programs are charged to `RLIMIT_MEMLOCK`, and a low limit makes loading fail with
//! `EPERM`; this crate does not change process limits.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::{Mutex, PoisonError};

use crate::controller::devices::{DeviceAccess, DeviceKind, DevicePolicy, DeviceRule};
use crate::error::{Error, Result};

/// Builds the program for `policy`, loads it and attaches it to the cgroup directory
/// `cgroup` (an fd opened beneath the hierarchy root; replacing
/// `previous`, the program this handle attached before, if any). Returns the new program's fd.
pub(crate) fn attach_device_policy(
    cgroup: OwnedFd,
    policy: &DevicePolicy,
    previous: Option<&OwnedFd>,
) -> Result<OwnedFd> {
    let program = device_program(policy)?;
    let Some(old) = previous else {
        let prog = loaded(&program)?;
        raw::attach(cgroup.as_fd(), prog.as_fd(), None)?;
        return Ok(prog);
    };
    // A fresh program: the one attached may be the cached one, and a kernel without
    // `BPF_F_REPLACE` cannot attach a program to a cgroup that already has it.
    let prog = raw::prog_load(&program)?;
    match raw::attach(cgroup.as_fd(), prog.as_fd(), Some(old.as_fd())) {
        Ok(()) => {}
        // EINVAL: a kernel without BPF_F_REPLACE (< 5.6). ENOENT: the old program is no
        // longer attached (someone detached it). Either way: attach, then detach the old.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) => {
            raw::attach(cgroup.as_fd(), prog.as_fd(), None)?;
            match raw::detach(cgroup.as_fd(), old.as_fd()) {
                Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
                _ => {}
            }
        }
        Err(e) => return Err(e),
    }
    Ok(prog)
}

/// Programs loaded before, by their instructions, and how many are kept (most callers use
/// one or two policies).
static LOADED: Mutex<Vec<(Vec<Insn>, OwnedFd)>> = Mutex::new(Vec::new());
const KEPT: usize = 8;

/// A descriptor of `program` loaded: verified and JIT-compiled once per process, then
/// shared by every cgroup it is attached to (a cgroup holds its own reference to an
/// attached program; closing a descriptor never detaches it). Saves the verifier's and
/// the JIT's work — the bulk of a device policy's cost — on every cgroup after the first.
fn loaded(program: &[Insn]) -> Result<OwnedFd> {
    let dup = |fd: &OwnedFd| {
        fd.try_clone().map_err(|source| Error::Bpf { cmd: "F_DUPFD_CLOEXEC", source, log: String::new() })
    };
    let mut cache = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, fd)) = cache.iter().find(|(p, _)| p == program) {
        return dup(fd);
    }
    let fd = raw::prog_load(program)?;
    let copy = dup(&fd)?;
    if cache.len() >= KEPT {
        cache.remove(0);
    }
    cache.push((program.to_vec(), fd));
    Ok(copy)
}

/// One eBPF instruction, laid out as the kernel's `struct bpf_insn` (8 bytes: opcode,
/// dst/src register nibbles, 16-bit offset, 32-bit immediate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

// Opcode parts (linux/bpf_common.h, linux/bpf.h).
const BPF_LDX: u8 = 0x01;
const BPF_ALU: u8 = 0x04;
const BPF_JMP: u8 = 0x05;
const BPF_ALU64: u8 = 0x07;
const BPF_W: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_AND: u8 = 0x50;
const BPF_RSH: u8 = 0x70;
const BPF_OR: u8 = 0x40;
const BPF_XOR: u8 = 0xa0;
const BPF_MOV: u8 = 0xb0;
const BPF_JA: u8 = 0x00;
const BPF_JEQ: u8 = 0x10;
const BPF_JNE: u8 = 0x50;
const BPF_EXIT: u8 = 0x90;

// `struct bpf_cgroup_dev_ctx` and its encodings.
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;
const DEVCG_DEV_BLOCK: i32 = 1;
const DEVCG_DEV_CHAR: i32 = 2;
const DEVCG_ACC_MKNOD: i32 = 1;
const DEVCG_ACC_READ: i32 = 2;
const DEVCG_ACC_WRITE: i32 = 4;

// Registers.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        // The bitfields `dst_reg:4, src_reg:4` are allocated from the low bits on
        // little-endian targets and from the high bits on big-endian ones.
        let regs = if cfg!(target_endian = "little") { dst | (src << 4) } else { (dst << 4) | src };
        Insn { code, regs, off, imm }
    }

    /// `dst = *(u32 *)(src + off)`
    const fn load_u32(dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0)
    }

    /// 64-bit `dst op= imm`.
    const fn alu64_imm(op: u8, dst: u8, imm: i32) -> Insn {
        Insn::new(BPF_ALU64 | op | BPF_K, dst, 0, 0, imm)
    }

    /// `dst = src` (64-bit).
    const fn mov64_reg(dst: u8, src: u8) -> Insn {
        Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)
    }

    /// `dst = (u32) src` (32-bit ALU results are zero-extended).
    const fn mov32_reg(dst: u8, src: u8) -> Insn {
        Insn::new(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0)
    }

    /// 32-bit `dst op= imm` (all 32 bits of `imm` are used as they are).
    const fn alu32_imm(op: u8, dst: u8, imm: i32) -> Insn {
        Insn::new(BPF_ALU | op | BPF_K, dst, 0, 0, imm)
    }

    /// 32-bit `dst op= src`.
    const fn alu32_reg(op: u8, dst: u8, src: u8) -> Insn {
        Insn::new(BPF_ALU | op | BPF_X, dst, src, 0, 0)
    }

    /// `if dst op imm goto +off` (the immediate is sign-extended to 64 bits).
    const fn jmp_imm(op: u8, dst: u8, imm: i32, off: i16) -> Insn {
        Insn::new(BPF_JMP | op | BPF_K, dst, 0, off, imm)
    }

    /// `goto +off`
    const fn ja(off: i16) -> Insn {
        Insn::new(BPF_JMP | BPF_JA, 0, 0, off, 0)
    }

    /// `r0 = verdict; exit`
    const fn ret(allow: bool) -> [Insn; 2] {
        [Insn::alu64_imm(BPF_MOV, R0, allow as i32), Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)]
    }

    /// The register fields, whatever the target's bitfield order.
    #[cfg(test)]
    fn dst_src(self) -> (u8, u8) {
        if cfg!(target_endian = "little") {
            (self.regs & 0xf, self.regs >> 4)
        } else {
            (self.regs >> 4, self.regs & 0xf)
        }
    }
}

/// The program deciding `policy` (see the module docs for its layout). Pure: the same
/// policy gives the same instructions. Fails (`E2BIG`) only for a policy too large for the
/// program's 16-bit jumps.
pub(crate) fn device_program(policy: &DevicePolicy) -> Result<Vec<Insn>> {
    let mut prog = vec![
        Insn::load_u32(R2, R1, CTX_ACCESS_TYPE),
        Insn::alu64_imm(BPF_AND, R2, 0xffff),
        Insn::load_u32(R3, R1, CTX_ACCESS_TYPE),
        Insn::alu64_imm(BPF_RSH, R3, 16),
        Insn::load_u32(R4, R1, CTX_MAJOR),
        Insn::load_u32(R5, R1, CTX_MINOR),
    ];
    for (flag, bit) in [
        (DeviceAccess::MKNOD, DEVCG_ACC_MKNOD),
        (DeviceAccess::READ, DEVCG_ACC_READ),
        (DeviceAccess::WRITE, DEVCG_ACC_WRITE),
    ] {
        let Some(body) = section(policy, flag)? else { continue };
        prog.push(Insn::mov64_reg(R1, R3));
        prog.push(Insn::alu64_imm(BPF_AND, R1, bit));
        prog.push(Insn::jmp_imm(BPF_JEQ, R1, 0, jump(body.len(), policy)?));
        prog.extend(body);
    }
    prog.extend(Insn::ret(true));
    Ok(prog)
}

/// The offset of a jump over `len` instructions.
fn jump(len: usize, policy: &DevicePolicy) -> Result<i16> {
    i16::try_from(len).map_err(|_| Error::Bpf {
        cmd: "BPF_PROG_LOAD",
        source: io::Error::from_raw_os_error(libc::E2BIG),
        log: format!(
            "a device policy of {} rules is too large for one program (a jump would span {len} instructions)",
            policy.rules.len()
        ),
    })
}

/// The body of the section deciding access type `flag`, or `None` when it could only allow.
fn section(policy: &DevicePolicy, flag: DeviceAccess) -> Result<Option<Vec<Insn>>> {
    let matches_every_device = |r: &DeviceRule| r.kind == DeviceKind::All && r.major.is_none() && r.minor.is_none();
    // The rules naming `flag`, in the order they are checked, up to one matching every
    // device: that one (else the policy's default) decides what no rule before it matches.
    let mut rules: Vec<&DeviceRule> = Vec::new();
    let mut otherwise_allow = policy.default_allow;
    for rule in policy.rules.iter().rev().filter(|r| r.access.contains(flag)) {
        if matches_every_device(rule) {
            otherwise_allow = rule.allow;
            break;
        }
        rules.push(rule);
    }
    // Rules checked last that give that verdict anyway change nothing.
    while rules.last().is_some_and(|r| r.allow == otherwise_allow) {
        rules.pop();
    }
    if rules.is_empty() && otherwise_allow {
        return Ok(None);
    }

    let mut body = Vec::new();
    let mut to_section_end = Vec::new();
    for rule in rules {
        // r1 = 0 exactly when the device is the rule's (r0 holds the later parts).
        let mut dst = R1;
        let mut compare = |reg: u8, value: u32| {
            body.push(Insn::mov32_reg(dst, reg));
            body.push(Insn::alu32_imm(BPF_XOR, dst, value as i32));
            if dst == R0 {
                body.push(Insn::alu32_reg(BPF_OR, R1, R0));
            }
            dst = R0;
        };
        match rule.kind {
            DeviceKind::All => {}
            DeviceKind::Char => compare(R2, DEVCG_DEV_CHAR as u32),
            DeviceKind::Block => compare(R2, DEVCG_DEV_BLOCK as u32),
        }
        if let Some(major) = rule.major {
            compare(R4, major);
        }
        if let Some(minor) = rule.minor {
            compare(R5, minor);
        }
        debug_assert!(dst == R0, "a rule matching every device was taken out above");
        if rule.allow {
            // Allowed: on to the next access type (patched below; never the very next
            // instruction, as the last rule here denies or the section's deny follows).
            body.push(Insn::jmp_imm(BPF_JNE, R1, 0, 1));
            to_section_end.push(body.len());
            body.push(Insn::ja(0));
        } else {
            body.push(Insn::jmp_imm(BPF_JNE, R1, 0, 2));
            body.extend(Insn::ret(false));
        }
    }
    if !otherwise_allow {
        body.extend(Insn::ret(false));
    }
    for &i in &to_section_end {
        body[i].off = jump(body.len() - i - 1, policy)?;
    }
    Ok(Some(body))
}

/// The `bpf(2)` calls. All of this crate's BPF `unsafe` is here.
mod raw {
    use super::*;

    const BPF_PROG_LOAD: libc::c_int = 5;
    const BPF_PROG_ATTACH: libc::c_int = 8;
    const BPF_PROG_DETACH: libc::c_int = 9;
    const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
    const BPF_CGROUP_DEVICE: u32 = 6;
    const BPF_F_ALLOW_MULTI: u32 = 1 << 1;
    const BPF_F_REPLACE: u32 = 1 << 2;

    /// The `BPF_PROG_LOAD` part of `union bpf_attr` (up to `expected_attach_type`; the
    /// kernel treats the fields after it as zero). Every `__aligned_u64` falls on a multiple
    /// of 8.
    #[repr(C)]
    #[derive(Default)]
    pub(super) struct ProgLoadAttr {
        pub prog_type: u32,
        pub insn_cnt: u32,
        pub insns: u64,
        pub license: u64,
        pub log_level: u32,
        pub log_size: u32,
        pub log_buf: u64,
        pub kern_version: u32,
        pub prog_flags: u32,
        pub prog_name: [u8; 16],
        pub prog_ifindex: u32,
        pub expected_attach_type: u32,
    }

    /// The `BPF_PROG_ATTACH` / `BPF_PROG_DETACH` part of `union bpf_attr`.
    #[repr(C)]
    #[derive(Default)]
    pub(super) struct ProgAttachAttr {
        pub target_fd: u32,
        pub attach_bpf_fd: u32,
        pub attach_type: u32,
        pub attach_flags: u32,
        pub replace_bpf_fd: u32,
    }

    /// No helper is called, so the license need not be GPL-compatible.
    const LICENSE: &std::ffi::CStr = c"MIT OR Apache-2.0";
    const NAME: &[u8] = b"nook_devices";
    const LOG_SIZE: usize = 256 << 10;
    /// How much of the verifier log an error carries (its end).
    const LOG_KEEP: usize = 8 << 10;

    /// `bpf(cmd, attr, size_of(attr))`.
    fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
        // SAFETY: `attr` is a #[repr(C)] prefix of `union bpf_attr` for `cmd`, valid and
        // writable for its size, which is passed as the size; every pointer inside it
        // (instructions, license, log buffer) points to memory the caller keeps alive and,
        // for the log, writable for `log_size` bytes.
        let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>()) };
        if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
    }

    /// Loads `insns` as a cgroup device program. On failure, loads again with the
    /// verifier log on and returns the end of that log in the error.
    pub(super) fn prog_load(insns: &[Insn]) -> Result<OwnedFd> {
        let too_long = |_| Error::Bpf {
            cmd: "BPF_PROG_LOAD",
            source: io::Error::from_raw_os_error(libc::E2BIG),
            log: format!("{} instructions", insns.len()),
        };
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: u32::try_from(insns.len()).map_err(too_long)?,
            insns: insns.as_ptr() as u64,
            license: LICENSE.as_ptr() as u64,
            ..ProgLoadAttr::default()
        };
        attr.prog_name[..NAME.len()].copy_from_slice(NAME);
        let first = match bpf(BPF_PROG_LOAD, &mut attr) {
            Ok(fd) => return Ok(owned(fd)),
            Err(e) => e,
        };
        // Once more with the log. If it does not fit (ENOSPC), the kernel keeps the end of it
        // (Linux 6.4+; the start before), which is where the reason is.
        let mut log = vec![0u8; LOG_SIZE];
        attr.log_level = 1;
        attr.log_size = LOG_SIZE as u32;
        attr.log_buf = log.as_mut_ptr() as u64;
        if let Ok(fd) = bpf(BPF_PROG_LOAD, &mut attr) {
            // Accepted the second time (a transient failure such as ENOMEM).
            return Ok(owned(fd));
        }
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        let text = String::from_utf8_lossy(&log[..end]);
        let text = text.trim_end();
        // The last lines say why; keep the error printable.
        let tail = match text.char_indices().rev().nth(LOG_KEEP) {
            Some((i, _)) => format!("...{}", &text[i..]),
            None => text.to_owned(),
        };
        Err(Error::Bpf { cmd: "BPF_PROG_LOAD", source: first, log: tail })
    }

    /// Attaches `prog` to the cgroup `dir` with `BPF_F_ALLOW_MULTI`, replacing `replace`
    /// (`BPF_F_REPLACE`) when given.
    pub(super) fn attach(dir: BorrowedFd<'_>, prog: BorrowedFd<'_>, replace: Option<BorrowedFd<'_>>) -> Result<()> {
        let mut attr = ProgAttachAttr {
            target_fd: dir.as_raw_fd() as u32,
            attach_bpf_fd: prog.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            attach_flags: BPF_F_ALLOW_MULTI,
            replace_bpf_fd: 0,
        };
        if let Some(old) = replace {
            attr.attach_flags |= BPF_F_REPLACE;
            attr.replace_bpf_fd = old.as_raw_fd() as u32;
        }
        bpf(BPF_PROG_ATTACH, &mut attr).map(drop).map_err(|source| Error::Bpf {
            cmd: "BPF_PROG_ATTACH",
            source,
            log: String::new(),
        })
    }

    /// Detaches `prog` from the cgroup `dir`.
    pub(super) fn detach(dir: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> Result<()> {
        let mut attr = ProgAttachAttr {
            target_fd: dir.as_raw_fd() as u32,
            attach_bpf_fd: prog.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..ProgAttachAttr::default()
        };
        bpf(BPF_PROG_DETACH, &mut attr).map(drop).map_err(|source| Error::Bpf {
            cmd: "BPF_PROG_DETACH",
            source,
            log: String::new(),
        })
    }

    fn owned(fd: libc::c_long) -> OwnedFd {
        // SAFETY: BPF_PROG_LOAD returned a new fd (close-on-exec) that nothing else owns.
        unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) }
    }
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::*;

    const RW: DeviceAccess = DeviceAccess::READ.union(DeviceAccess::WRITE);

    fn rule(allow: bool, kind: DeviceKind, major: Option<u32>, minor: Option<u32>, access: DeviceAccess) -> DeviceRule {
        DeviceRule { allow, kind, major, minor, access }
    }

    /// The kernel's access bits for `access`.
    fn bpf_access(access: DeviceAccess) -> i32 {
        let mut bits = 0;
        if access.contains(DeviceAccess::MKNOD) {
            bits |= DEVCG_ACC_MKNOD;
        }
        if access.contains(DeviceAccess::READ) {
            bits |= DEVCG_ACC_READ;
        }
        if access.contains(DeviceAccess::WRITE) {
            bits |= DEVCG_ACC_WRITE;
        }
        bits
    }

    /// Runs `prog` on a context the way the kernel would, for the opcodes the generator
    /// emits. Panics on anything else, on a jump out of the program and on falling off it.
    fn run(prog: &[Insn], kind: DeviceKind, major: u32, minor: u32, access: DeviceAccess) -> bool {
        let dev_type = match kind {
            DeviceKind::Block => DEVCG_DEV_BLOCK as u32,
            DeviceKind::Char => DEVCG_DEV_CHAR as u32,
            DeviceKind::All => unreachable!("the kernel asks about a block or char device"),
        };
        let ctx = [((bpf_access(access) as u32) << 16) | dev_type, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        for _ in 0..100_000 {
            let insn = prog.get(pc).unwrap_or_else(|| panic!("fell off the program at {pc}"));
            let (dst, src) = insn.dst_src();
            let (dst, src) = (dst as usize, src as usize);
            let imm = insn.imm as i64 as u64;
            let mut next = pc + 1;
            let jump = |cond: bool| if cond { (pc as i64 + 1 + insn.off as i64) as usize } else { pc + 1 };
            match insn.code {
                0x61 => {
                    assert_eq!(src, 1, "loads only from the context");
                    r[dst] = u64::from(ctx[insn.off as usize / 4]);
                }
                0x57 => r[dst] &= imm,
                0x77 => r[dst] >>= imm,
                0xb7 => r[dst] = imm,
                0xbf => r[dst] = r[src],
                // 32-bit ALU: operate on the low halves, zero-extend the result.
                0xbc => r[dst] = u64::from(r[src] as u32),
                0xa4 => r[dst] = u64::from(r[dst] as u32 ^ insn.imm as u32),
                0x4c => r[dst] = u64::from(r[dst] as u32 | r[src] as u32),
                0x05 => next = jump(true),
                0x55 => next = jump(r[dst] != imm),
                0x15 => next = jump(r[dst] == imm),
                0x95 => {
                    assert!(r[0] <= 1, "returns 0 or 1");
                    return r[0] == 1;
                }
                code => panic!("unexpected opcode {code:#x} at {pc}"),
            }
            assert!(next < prog.len(), "jump out of the program at {pc}");
            pc = next;
        }
        panic!("no exit");
    }

    /// What the verifier's CFG check requires: every instruction reachable, every jump in
    /// range, no path running off the end. Also: no jump that goes nowhere.
    fn assert_well_formed(prog: &[Insn]) {
        let mut seen = vec![false; prog.len()];
        let mut todo = vec![0usize];
        while let Some(pc) = todo.pop() {
            if std::mem::replace(&mut seen[pc], true) {
                continue;
            }
            let insn = prog[pc];
            if insn.code == 0x95 {
                continue;
            }
            if insn.code & 0x07 == BPF_JMP {
                assert_ne!(insn.off, 0, "a jump to the next instruction at {pc}");
                let target = pc as i64 + 1 + insn.off as i64;
                assert!((0..prog.len() as i64).contains(&target), "jump out of range at {pc}");
                todo.push(target as usize);
            }
            assert!(pc + 1 < prog.len(), "falls off the end at {pc}");
            todo.push(pc + 1);
        }
        let unreachable: Vec<usize> = (0..prog.len()).filter(|&i| !seen[i]).collect();
        assert!(unreachable.is_empty(), "unreachable instructions {unreachable:?}");
    }

    /// A deterministic pseudo-random generator (no dependency needed).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: usize) -> usize {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((self.0 >> 33) % n as u64) as usize
        }
    }

    const MAJORS: [u32; 4] = [1, 7, 0x7fff_ffff, 0x8000_0001];
    const MINORS: [u32; 3] = [3, 5, u32::MAX];

    fn all_accesses() -> impl Iterator<Item = DeviceAccess> {
        (0u8..8).map(DeviceAccess::from_bits_truncate)
    }

    /// Checks the program against `DevicePolicy::permits` for every request in the domain.
    fn assert_agrees(policy: &DevicePolicy) {
        let prog = program(policy);
        assert_well_formed(&prog);
        for kind in [DeviceKind::Char, DeviceKind::Block] {
            for major in MAJORS {
                for minor in MINORS {
                    for access in all_accesses() {
                        assert_eq!(
                            run(&prog, kind, major, minor, access),
                            policy.permits(kind, major, minor, access),
                            "{kind:?} {major}:{minor} {} under {policy:?}",
                            access.letters()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn kernel_structs_have_the_uapi_layout() {
        assert_eq!(size_of::<Insn>(), 8);
        assert_eq!(offset_of!(raw::ProgLoadAttr, insns), 8);
        assert_eq!(offset_of!(raw::ProgLoadAttr, license), 16);
        assert_eq!(offset_of!(raw::ProgLoadAttr, log_buf), 32);
        assert_eq!(offset_of!(raw::ProgLoadAttr, prog_name), 48);
        assert_eq!(offset_of!(raw::ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(offset_of!(raw::ProgAttachAttr, replace_bpf_fd), 16);
        // r0 = 1 is b7 00 0000 01000000 in the kernel's byte order.
        let mov = Insn::alu64_imm(BPF_MOV, R0, 1);
        assert_eq!((mov.code, mov.dst_src(), mov.imm), (0xb7, (0, 0), 1));
        let ld = Insn::load_u32(R4, R1, CTX_MAJOR);
        if cfg!(target_endian = "little") {
            assert_eq!(ld.regs, 0x14);
        }
    }

    fn program(policy: &DevicePolicy) -> Vec<Insn> {
        device_program(policy).expect("a small policy fits")
    }

    #[test]
    fn empty_policies_are_the_default_only() {
        let allow = DevicePolicy::allow_by_default(vec![]);
        assert_eq!(program(&allow).len(), 6 + 2, "prologue, allow");
        let deny = DevicePolicy::deny_by_default(vec![]);
        assert_eq!(program(&deny).len(), 6 + 3 * (3 + 2) + 2, "prologue, a denying section per type, allow");
        assert_agrees(&allow);
        assert_agrees(&deny);
    }

    #[test]
    fn rules_that_cannot_change_a_verdict_are_left_out() {
        // Checked last and agreeing with the default: nothing to emit.
        let redundant = DevicePolicy::allow_by_default(vec![DeviceRule::allow_char(1, 3, RW)]);
        assert_eq!(program(&redundant), program(&DevicePolicy::allow_by_default(vec![])));
        // Before a rule matching every device: never reached.
        let catch_all = rule(true, DeviceKind::All, None, None, DeviceAccess::all());
        let policy = DevicePolicy::deny_by_default(vec![
            DeviceRule::deny_char(1, 3, RW),
            catch_all,
            DeviceRule::deny_char(1, 5, RW),
        ]);
        let prog = program(&policy);
        let xor_with = |v: i32| prog.iter().any(|i| i.code == BPF_ALU | BPF_XOR | BPF_K && i.imm == v);
        assert!(xor_with(5) && !xor_with(3), "1:5 is checked, 1:3 is not");
        assert_agrees(&policy);
        assert!(!policy.permits(DeviceKind::Char, 1, 5, DeviceAccess::READ));
        assert!(policy.permits(DeviceKind::Char, 1, 3, DeviceAccess::READ));
        // Allowing everything to everyone is the empty program, whatever came before.
        let everything = DevicePolicy::deny_by_default(vec![DeviceRule::deny_char(1, 3, RW), catch_all]);
        assert_eq!(program(&everything), program(&DevicePolicy::allow_by_default(vec![])));
        // Allows checked just before an allow of every device change nothing either.
        let before_catch_all = DevicePolicy::deny_by_default(vec![catch_all, DeviceRule::allow_char(1, 3, RW)]);
        assert_eq!(program(&before_catch_all), program(&DevicePolicy::allow_by_default(vec![])));
    }

    #[test]
    fn oversized_policies_are_refused_before_loading() {
        let rules = (0..10_000).map(|i| DeviceRule::allow_char(1, i, DeviceAccess::all())).collect();
        match device_program(&DevicePolicy::deny_by_default(rules)) {
            Err(Error::Bpf { source, log, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::E2BIG));
                assert!(log.contains("10000 rules"), "{log}");
            }
            other => panic!("10000 rules must not fit one program: {other:?}"),
        }
    }

    #[test]
    fn combined_accesses_are_decided_type_by_type() {
        let policy = DevicePolicy::allow_by_default(vec![DeviceRule::deny_char(1, 3, DeviceAccess::WRITE)]);
        let prog = program(&policy);
        assert!(run(&prog, DeviceKind::Char, 1, 3, DeviceAccess::READ));
        assert!(!run(&prog, DeviceKind::Char, 1, 3, DeviceAccess::WRITE));
        assert!(!run(&prog, DeviceKind::Char, 1, 3, RW), "O_RDWR must not slip past a write deny");
        assert!(run(&prog, DeviceKind::Char, 1, 3, DeviceAccess::empty()));

        let split = DevicePolicy::deny_by_default(vec![
            rule(true, DeviceKind::Char, Some(1), None, DeviceAccess::READ),
            DeviceRule::allow_char(1, 3, DeviceAccess::WRITE),
        ]);
        let prog = program(&split);
        assert!(run(&prog, DeviceKind::Char, 1, 3, RW), "read and write are each allowed by a rule");
        assert!(!run(&prog, DeviceKind::Char, 1, 5, RW));
        assert!(run(&prog, DeviceKind::Char, 1, 5, DeviceAccess::READ));
        assert_agrees(&policy);
        assert_agrees(&split);
    }

    #[test]
    fn numbers_above_i32_max_are_compared_exactly() {
        let big = 0x8000_0001;
        let policy = DevicePolicy::deny_by_default(vec![DeviceRule::allow_char(big, u32::MAX, DeviceAccess::READ)]);
        let prog = program(&policy);
        assert!(prog.iter().any(|i| i.imm == big as i32), "the 32-bit pattern of the number is used");
        assert!(run(&prog, DeviceKind::Char, big, u32::MAX, DeviceAccess::READ));
        assert!(!run(&prog, DeviceKind::Char, 1, u32::MAX, DeviceAccess::READ));
        assert!(!run(&prog, DeviceKind::Char, big, 3, DeviceAccess::READ));
        assert_agrees(&policy);
    }

    /// `count` policies of up to `max_rules` rules over the test domain, the same every run.
    fn random_policies(count: usize, max_rules: usize) -> Vec<DevicePolicy> {
        let mut rng = Lcg(0x6e6f6f6b);
        let kinds = [DeviceKind::All, DeviceKind::Char, DeviceKind::Block];
        (0..count)
            .map(|_| {
                let n = rng.next(max_rules + 1);
                let rules = (0..n)
                    .map(|_| {
                        let kind = kinds[rng.next(3)];
                        let (major, minor) = if kind == DeviceKind::All {
                            (None, None)
                        } else {
                            let major = [None, Some(MAJORS[rng.next(4)])][rng.next(2)];
                            let minor = major.and([None, Some(MINORS[rng.next(3)])][rng.next(2)]);
                            (major, minor)
                        };
                        let access = DeviceAccess::from_bits_truncate(1 + rng.next(7) as u8);
                        rule(rng.next(2) == 0, kind, major, minor, access)
                    })
                    .collect();
                DevicePolicy { default_allow: rng.next(2) == 0, rules }
            })
            .collect()
    }

    #[test]
    fn random_policies_agree_with_permits() {
        for policy in random_policies(300, 6) {
            policy.validate().expect("generated rules are well formed");
            assert_agrees(&policy);
        }
    }

    /// The kernel's verifier (no attaching: nothing changes on the host). Needs root.
    #[test]
    fn the_verifier_accepts_generated_programs_and_explains_a_rejection() {
        nook_testutil::require_root!();
        let mut policies = random_policies(100, 6);
        // Thousands of rules with partial accesses: verification must stay linear (a design
        // that narrows live registers per path ran out of the verifier's budget here).
        let partial = [DeviceAccess::READ, DeviceAccess::WRITE, DeviceAccess::MKNOD, RW];
        policies.push(DevicePolicy::deny_by_default(
            (0..2000u32).map(|i| DeviceRule::allow_char(i % 300, i, partial[i as usize % 4])).collect(),
        ));
        for policy in &policies {
            if let Err(e) = raw::prog_load(&program(policy)) {
                panic!("the verifier rejects the program for {} rules: {e}", policy.rules.len());
            }
        }
        // r0 = 2 is no verdict: the verifier says why.
        let bad = [Insn::alu64_imm(BPF_MOV, R0, 2), Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)];
        match raw::prog_load(&bad) {
            Err(Error::Bpf { cmd: "BPF_PROG_LOAD", source, log }) => {
                assert_eq!(source.raw_os_error(), Some(libc::EINVAL));
                assert!(log.contains("R0"), "the verifier log explains: {log}");
            }
            other => panic!("a program returning 2 must be rejected: {other:?}"),
        }
    }
}
