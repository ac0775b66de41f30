use super::*;
use crate::hardening::caps::CapSet;

/// A classic-BPF interpreter for the instructions seccomp filters use; `word` answers the
/// loads from `struct seccomp_data` (`None`: stop there). The return value (`None` if a
/// load was refused) and how many instructions ran.
fn interpret(prog: &[Instruction], word: impl Fn(u32) -> Option<u32>) -> (Option<u32>, usize) {
    let (mut acc, mut pc) = (0u32, 0usize);
    for steps in 1..100_000 {
        let i = &prog[pc];
        pc += 1;
        match i.code {
            0x20 => match word(i.k) {
                Some(w) => acc = w,
                None => return (None, steps),
            },
            0x54 => acc &= i.k,
            0x05 => pc += i.k as usize,
            0x15 | 0x25 | 0x35 | 0x45 => {
                let t = match i.code {
                    0x15 => acc == i.k,
                    0x25 => acc > i.k,
                    0x35 => acc >= i.k,
                    _ => acc & i.k != 0,
                };
                pc += usize::from(if t { i.jt } else { i.jf });
            }
            0x06 => return (Some(i.k), steps),
            c => panic!("instruction {c:#x}"),
        }
    }
    panic!("no return")
}

/// The program run over a `struct seccomp_data` (nr, arch, ip, args): the oracle the
/// compiled programs are checked against.
fn run(prog: &[Instruction], arch: Arch, nr: u32, args: [u64; 6]) -> u32 {
    let word = |off: u32| -> Option<u32> {
        Some(match off {
            0 => nr,
            4 => arch.audit(),
            8 | 12 => 0,
            o if (16..64).contains(&o) => {
                let a = args[((o - 16) / 8) as usize];
                if (o - 16) % 8 == 0 { a as u32 } else { (a >> 32) as u32 }
            }
            o => panic!("load of offset {o}"),
        })
    };
    interpret(prog, word).0.expect("every load answered")
}

/// The kernel's structural checks (`bpf_check_classic`): every jump lands inside the
/// program, it ends in a return, it fits `BPF_MAXINSNS`.
fn check_like_kernel(prog: &[Instruction]) {
    assert!(!prog.is_empty() && prog.len() <= 4096);
    assert_eq!(prog.last().unwrap().code, 0x06);
    for (i, ins) in prog.iter().enumerate() {
        let targets: Vec<usize> = match ins.code {
            0x05 => vec![i + 1 + ins.k as usize],
            0x15 | 0x25 | 0x35 | 0x45 => vec![i + 1 + usize::from(ins.jt), i + 1 + usize::from(ins.jf)],
            _ => vec![],
        };
        for t in targets {
            assert!(t < prog.len(), "instruction {i} jumps to {t} of {}", prog.len());
        }
    }
}

fn nr(arch: Arch, name: &str) -> u32 {
    arch.syscall(name).unwrap_or_else(|| panic!("{name} on {arch:?}"))
}

fn target(arch: Arch, caps: CapSet) -> Target {
    Target { arch, caps, kernel: Some(KernelVersion { major: 6, minor: 1 }) }
}

const EPERM: u32 = ret::ERRNO | 1;
const ENOSYS: u32 = ret::ERRNO | 38;
const CLONE_NEWUSER: u64 = 0x1000_0000;
const CLONE_THREAD_FLAGS: u64 = 0x003d_0f00; // what glibc's pthread_create passes

#[test]
fn default_profile_parses_like_moby() {
    let p = Profile::docker_default();
    assert_eq!(p.default_action, Action::Errno(1));
    assert_eq!(p.arches, vec![Arch::X86_64, Arch::X86, Arch::Aarch64]);
    assert!(p.rules[0].names.len() > 340);
    let clone3 = p.rules.iter().find(|r| r.names == ["clone3"]).unwrap();
    assert_eq!(clone3.action, Action::Errno(38));
    assert_eq!(clone3.excludes.caps, ["CAP_SYS_ADMIN"]);
    let ptrace = p.rules.iter().find(|r| r.names.contains(&"ptrace".to_owned())).unwrap();
    assert_eq!(ptrace.includes.min_kernel, Some(KernelVersion { major: 4, minor: 8 }));
}

#[test]
fn default_compiles_for_x86_64_and_aarch64() {
    for arch in [Arch::X86_64, Arch::Aarch64] {
        let c = Profile::docker_default().compile(&target(arch, CapSet::docker_default())).unwrap();
        assert!(c.len() < 1500, "{arch:?}: {}", c.len());
        check_like_kernel(&c.instructions);
        assert!(!c.user_notif);
        assert_eq!(c.to_libc().len(), c.len());
        // names of other architectures are skipped, not errors
        assert!(c.skipped.contains(&(arch, "chown32".to_owned())));
    }
    let x = Profile::docker_default().compile(&target(Arch::X86_64, CapSet::docker_default())).unwrap();
    assert_eq!(x.arches, vec![Arch::X86_64, Arch::X86]);
    let a = Profile::docker_default().compile(&target(Arch::Aarch64, CapSet::docker_default())).unwrap();
    assert_eq!(a.arches, vec![Arch::Aarch64]);
}

#[test]
fn default_behaves_like_docker() {
    let none = [0u64; 6];
    for arch in [Arch::X86_64, Arch::Aarch64] {
        let c = Profile::docker_default().compile(&target(arch, CapSet::docker_default())).unwrap();
        let r = |name: &str, args: [u64; 6]| run(&c.instructions, arch, nr(arch, name), args);
        for ok in ["read", "write", "openat", "execve", "exit_group", "getpid", "mkdirat", "futex", "ptrace"] {
            assert_eq!(r(ok, none), ret::ALLOW, "{arch:?} {ok}");
        }
        for denied in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "pivot_root",
            "kexec_load",
            "init_module",
            "bpf",
            "perf_event_open",
            "keyctl",
            "open_by_handle_at",
            "reboot",
            "swapon",
            "syslog",
            "settimeofday",
        ] {
            assert_eq!(r(denied, none), EPERM, "{arch:?} {denied}");
        }
        assert_eq!(r("clone3", none), ENOSYS, "{arch:?}: glibc falls back to clone");
        // clone: threads and forks yes, new namespaces no
        assert_eq!(r("clone", [CLONE_THREAD_FLAGS, 0, 0, 0, 0, 0]), ret::ALLOW);
        assert_eq!(r("clone", [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]), ret::ALLOW);
        assert_eq!(r("clone", [CLONE_NEWUSER | libc::SIGCHLD as u64, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(r("clone", [0x2000_0000, 0, 0, 0, 0, 0]), EPERM, "CLONE_NEWNET");
        // socket: everything but AF_VSOCK
        assert_eq!(r("socket", [libc::AF_INET as u64, 1, 0, 0, 0, 0]), ret::ALLOW);
        assert_eq!(r("socket", [libc::AF_VSOCK as u64, 1, 0, 0, 0, 0]), EPERM);
        // personality: the five values
        for v in [0u64, 8, 0x20000, 0x20008, 0xffff_ffff] {
            assert_eq!(r("personality", [v, 0, 0, 0, 0, 0]), ret::ALLOW, "{v:#x}");
        }
        assert_eq!(r("personality", [0x0040_0000, 0, 0, 0, 0, 0]), EPERM, "READ_IMPLIES_EXEC");
        // a syscall of no profile at all, and an unknown number
        assert_eq!(run(&c.instructions, arch, 5000, none), EPERM);
    }
    let c = Profile::docker_default().compile(&target(Arch::X86_64, CapSet::docker_default())).unwrap();
    assert_eq!(run(&c.instructions, Arch::X86_64, nr(Arch::X86_64, "arch_prctl"), none), ret::ALLOW);
    // the 32-bit ABI has its own numbers: its mount is denied, its getpid allowed
    assert_eq!(run(&c.instructions, Arch::X86, nr(Arch::X86, "getpid"), none), ret::ALLOW);
    assert_eq!(run(&c.instructions, Arch::X86, nr(Arch::X86, "mount"), none), EPERM);
    assert_eq!(run(&c.instructions, Arch::X86, nr(Arch::X86, "socketcall"), none), ret::ALLOW);
    // x32 numbers and foreign architectures kill
    assert_eq!(run(&c.instructions, Arch::X86_64, 0x4000_0000 | 39, none), ret::KILL_PROCESS);
    assert_eq!(run(&c.instructions, Arch::Aarch64, 172, none), ret::KILL_PROCESS);
}

#[test]
fn capabilities_adjust_the_default() {
    let none = [0u64; 6];
    let arch = Arch::X86_64;
    let admin = CapSet::docker_default().tweak(&["SYS_ADMIN"], &[] as &[&str]).unwrap();
    let c = Profile::docker_default().compile(&target(arch, admin)).unwrap();
    let r = |name: &str, args| run(&c.instructions, arch, nr(arch, name), args);
    for ok in ["mount", "umount2", "unshare", "setns", "clone3", "sethostname", "bpf", "perf_event_open"] {
        assert_eq!(r(ok, none), ret::ALLOW, "{ok}");
    }
    assert_eq!(r("clone", [CLONE_NEWUSER, 0, 0, 0, 0, 0]), ret::ALLOW);
    assert_eq!(r("reboot", none), EPERM);
    for (cap, call) in [
        ("SYS_PTRACE", "kcmp"),
        ("SYS_MODULE", "init_module"),
        ("SYS_BOOT", "reboot"),
        ("SYS_TIME", "settimeofday"),
        ("SYS_NICE", "mbind"),
        ("SYSLOG", "syslog"),
        ("BPF", "bpf"),
        ("PERFMON", "perf_event_open"),
        ("DAC_READ_SEARCH", "open_by_handle_at"),
        ("SYS_RAWIO", "iopl"),
    ] {
        let caps = CapSet::docker_default().tweak(&[cap], &[] as &[&str]).unwrap();
        let c = Profile::docker_default().compile(&target(arch, caps)).unwrap();
        assert_eq!(run(&c.instructions, arch, nr(arch, call), none), ret::ALLOW, "{cap} {call}");
        let base = Profile::docker_default().compile(&target(arch, CapSet::docker_default())).unwrap();
        assert_eq!(run(&base.instructions, arch, nr(arch, call), none), EPERM, "{call} without {cap}");
    }
    // dropping SYS_CHROOT removes chroot
    let with = Profile::docker_default().compile(&target(arch, CapSet::docker_default())).unwrap();
    assert_eq!(run(&with.instructions, arch, nr(arch, "chroot"), none), ret::ALLOW);
    let caps = CapSet::docker_default().tweak(&[] as &[&str], &["SYS_CHROOT"]).unwrap();
    let without = Profile::docker_default().compile(&target(arch, caps)).unwrap();
    assert_eq!(run(&without.instructions, arch, nr(arch, "chroot"), none), EPERM);
    // before 4.8 ptrace is not allowed without CAP_SYS_PTRACE
    let old = Target { kernel: Some(KernelVersion { major: 4, minor: 4 }), ..target(arch, CapSet::docker_default()) };
    let c = Profile::docker_default().compile(&old).unwrap();
    assert_eq!(run(&c.instructions, arch, nr(arch, "ptrace"), none), EPERM);
}

const DOCKER_SNIPPET: &str = r#"{
    "defaultAction": "SCMP_ACT_ALLOW",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_MIPS"],
    "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "comment": "no dirs"},
        {"name": "kill", "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 9, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
        {"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"},
        {"names": ["gettid"], "action": "SCMP_ACT_TRAP"},
        {"names": ["getuid"], "action": "SCMP_ACT_LOG"},
        {"names": ["getgid"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
        {"names": ["getpid"], "action": "SCMP_ACT_NOTIFY"},
        {"names": ["geteuid"], "action": "SCMP_ACT_KILL"},
        {"names": ["mmap"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 2, "value": 4, "valueTwo": 4, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 20, "op": "SCMP_CMP_EQ"}]},
        {"names": ["lseek"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 3, "op": "SCMP_CMP_GE"}, {"index": 2, "value": 1, "op": "SCMP_CMP_EQ"}]},
        {"names": ["kill"], "action": "SCMP_ACT_ALLOW", "comment": "overlaps the errno rule: errno wins"},
        {"names": ["no_such_syscall"], "action": "SCMP_ACT_ERRNO"}
    ]
}"#;

#[test]
fn docker_format_every_action_and_operator() {
    let p = Profile::from_docker_json(DOCKER_SNIPPET.as_bytes()).unwrap();
    assert_eq!(p.default_action, Action::Allow);
    assert_eq!(p.arches, vec![Arch::X86_64, Arch::X86]);
    assert_eq!(p.rules[0].action, Action::Errno(13));
    assert_eq!(p.rules[1].names, ["kill"]);
    assert_eq!(p.rules[1].action, Action::Errno(1), "errno without errnoRet is EPERM");
    assert_eq!(p.rules[5].action, Action::Trace(7));
    assert_eq!(p.rules[7].action, Action::KillThread);
    assert_eq!(p.rules[8].args, [ArgCondition::new(2, CmpOp::MaskedEq { mask: 4 }, 4)]);
    assert!(p.uses_user_notif());

    let arch = Arch::X86_64;
    let c = p.compile(&target(arch, CapSet::docker_default())).unwrap();
    check_like_kernel(&c.instructions);
    assert!(c.user_notif);
    assert_eq!(c.skipped, [(Arch::X86_64, "no_such_syscall".to_owned()), (Arch::X86, "no_such_syscall".to_owned())]);
    let r = |name: &str, args: [u64; 6]| run(&c.instructions, arch, nr(arch, name), args);
    let z = [0u64; 6];
    assert_eq!(r("mkdir", z), ret::ERRNO | 13);
    assert_eq!(r("mkdirat", z), ret::ERRNO | 13);
    assert_eq!(r("kill", [1, 9, 0, 0, 0, 0]), EPERM);
    assert_eq!(r("kill", [1, 15, 0, 0, 0, 0]), ret::ALLOW);
    assert_eq!(r("getppid", z), ret::KILL_PROCESS);
    assert_eq!(r("gettid", z), ret::TRAP);
    assert_eq!(r("getuid", z), ret::LOG);
    assert_eq!(r("getgid", z), ret::TRACE | 7);
    assert_eq!(r("getpid", z), ret::USER_NOTIF);
    assert_eq!(r("geteuid", z), ret::KILL_THREAD);
    assert_eq!(r("mmap", [0, 0, 7, 0, 0, 0]), EPERM, "PROT_EXEC set");
    assert_eq!(r("mmap", [0, 0, 3, 0, 0, 0]), ret::ALLOW);
    // same argument twice: either value
    assert_eq!(r("ioctl", [0, 10, 0, 0, 0, 0]), EPERM);
    assert_eq!(r("ioctl", [0, 20, 0, 0, 0, 0]), EPERM);
    assert_eq!(r("ioctl", [0, 30, 0, 0, 0, 0]), ret::ALLOW);
    // different arguments: both
    assert_eq!(r("lseek", [3, 0, 1, 0, 0, 0]), EPERM);
    assert_eq!(r("lseek", [2, 0, 1, 0, 0, 0]), ret::ALLOW);
    assert_eq!(r("lseek", [3, 0, 0, 0, 0, 0]), ret::ALLOW);
    assert_eq!(r("lseek", [u64::MAX, 0, 1, 0, 0, 0]), EPERM, "64-bit comparison");
    assert_eq!(r("read", z), ret::ALLOW);
    // the 32-bit ABI gets the same rules under its own numbers
    assert_eq!(run(&c.instructions, Arch::X86, nr(Arch::X86, "mkdir"), z), ret::ERRNO | 13);
    assert_eq!(run(&c.instructions, Arch::X86, nr(Arch::X86, "read"), z), ret::ALLOW);
    // x32 cannot reach mkdir under another number, even with a default allow
    assert_eq!(run(&c.instructions, arch, 0x4000_0000 | 83, z), ret::KILL_PROCESS);
}

#[test]
fn docker_format_errors_are_typed() {
    let bad = |json: &str| Profile::from_docker_json(json.as_bytes()).unwrap_err();
    assert!(matches!(bad("{"), SeccompError::Json { .. }));
    assert!(matches!(bad(r#"{"defaultAction": "SCMP_ACT_NOPE"}"#),
        SeccompError::UnknownAction { field, value } if field == "defaultAction" && value == "SCMP_ACT_NOPE"));
    assert!(matches!(
        bad(r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#),
        SeccompError::ArgIndex { index: 6, .. }
    ));
    assert!(matches!(
        bad(r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}"#),
        SeccompError::UnknownOperator { field, .. } if field == "syscalls[0].args"
    ));
    assert!(matches!(
        bad(r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}"#),
        SeccompError::ErrnoOutOfRange { value: 70000 }
    ));
    assert!(matches!(
        bad(r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
            "includes": {"minKernel": "five"}}]}"#),
        SeccompError::KernelVersion { .. }
    ));
    let mut p = Profile::new(Action::Errno(5000));
    assert!(matches!(p.validate(), Err(SeccompError::ErrnoOutOfRange { value: 5000 })));
    p.default_action = Action::Allow;
    p.rule(SyscallRule::new(["read"], Action::Errno(1)).arg(ArgCondition::new(9, CmpOp::Eq, 0)));
    assert!(matches!(p.compile(&target(Arch::X86_64, CapSet::empty())), Err(SeccompError::ArgIndex { .. })));
}

const OCI_SNIPPET: &str = r#"{
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 38,
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
    "flags": ["SECCOMP_FILTER_FLAG_LOG"],
    "syscalls": [
        {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["openat"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 2, "value": 3, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["getpid"], "action": "SCMP_ACT_NOTIFY"},
        {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS"}
    ]
}"#;

#[test]
fn oci_format() {
    let p = Profile::from_oci_json(OCI_SNIPPET.as_bytes()).unwrap();
    assert_eq!(p.default_action, Action::Errno(38));
    assert_eq!(p.arches, vec![Arch::X86_64, Arch::Aarch64]);
    assert_eq!(p.rules.len(), 4);
    assert_eq!(p.rules[1].args, [ArgCondition::new(2, CmpOp::MaskedEq { mask: 3 }, 0)]);
    for arch in [Arch::X86_64, Arch::Aarch64] {
        let c = p.compile(&target(arch, CapSet::empty())).unwrap();
        check_like_kernel(&c.instructions);
        assert_eq!(c.arches, vec![arch], "x86 not listed: not included");
        let r = |name: &str, args: [u64; 6]| run(&c.instructions, arch, nr(arch, name), args);
        let z = [0u64; 6];
        assert_eq!(r("read", z), ret::ALLOW);
        assert_eq!(r("openat", [0, 0, libc::O_RDONLY as u64, 0, 0, 0]), ret::ALLOW);
        assert_eq!(r("openat", [0, 0, libc::O_RDWR as u64, 0, 0, 0]), ENOSYS);
        assert_eq!(r("getpid", z), ret::USER_NOTIF);
        assert_eq!(r("kill", z), ret::KILL_PROCESS);
        assert_eq!(r("mkdirat", z), ENOSYS);
    }
    let c = p.compile(&target(Arch::X86_64, CapSet::empty())).unwrap();
    assert_eq!(run(&c.instructions, Arch::X86, 20, [0; 6]), ret::KILL_PROCESS);
    // the same through oci-spec's typed value
    let typed: oci_spec::runtime::LinuxSeccomp = serde_json::from_str(OCI_SNIPPET).unwrap();
    assert_eq!(Profile::from_oci(&typed).unwrap(), p);
    assert!(matches!(Profile::from_oci_json(b"{\"defaultAction\": 3}"), Err(SeccompError::Json { .. })));
}

#[test]
fn unconditional_rule_wins_over_conditional_of_the_same_action() {
    let mut p = Profile::new(Action::Allow);
    p.rule(SyscallRule::new(["kill"], Action::Errno(1)).arg(ArgCondition::new(1, CmpOp::Eq, 9)));
    p.rule(SyscallRule::new(["kill"], Action::Errno(1)));
    let c = p.compile(&target(Arch::X86_64, CapSet::empty())).unwrap();
    assert_eq!(run(&c.instructions, Arch::X86_64, nr(Arch::X86_64, "kill"), [0, 15, 0, 0, 0, 0]), EPERM);
}

#[test]
fn default_compiled_is_cached() {
    let t = target(Arch::X86_64, CapSet::docker_default());
    let a = default_compiled(&t).unwrap();
    let b = default_compiled(&t).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    let other = default_compiled(&target(Arch::Aarch64, CapSet::docker_default())).unwrap();
    assert_ne!(a.instructions, other.instructions);
}

#[test]
fn kernel_versions() {
    assert_eq!(KernelVersion::parse("6.1.0-13-amd64"), Some(KernelVersion { major: 6, minor: 1 }));
    assert_eq!(KernelVersion::parse("4.8"), Some(KernelVersion { major: 4, minor: 8 }));
    assert_eq!(KernelVersion::parse("5.15rc2"), Some(KernelVersion { major: 5, minor: 15 }));
    assert_eq!(KernelVersion::parse("x"), None);
    assert!(KernelVersion::running().is_some());
}

/// The profile's meaning, straight from the model: the most restrictive action of the
/// rules that apply, name the number and whose conditions hold (conditions on one argument
/// repeated are alternatives), else the default.
fn oracle(p: &Profile, t: &Target, arch: Arch, nr: u32, args: [u64; 6]) -> u32 {
    let mut best: Option<Action> = None;
    for r in p.rules.iter().filter(|r| r.applies_to(t)) {
        if !r.names.iter().any(|n| arch.syscall(n) == Some(nr)) {
            continue;
        }
        let repeated = r.args.iter().enumerate().any(|(i, a)| r.args[..i].iter().any(|b| b.index == a.index));
        let holds = |c: &ArgCondition| c.holds(args[usize::from(c.index)]);
        let hit = if repeated { r.args.iter().any(holds) } else { r.args.iter().all(holds) };
        if hit && best.is_none_or(|b| r.action.precedence() < b.precedence()) {
            best = Some(r.action);
        }
    }
    best.unwrap_or(p.default_action).ret()
}

#[test]
fn every_syscall_number_matches_the_model() {
    let argsets = [[0u64; 6], [CLONE_NEWUSER, 1, 0, 0, 0, 0], [40, 9, 7, 0, 0, 0], [0xffff_ffff, 0, 3, 0, 0, 0]];
    let snippet = Profile::from_docker_json(DOCKER_SNIPPET.as_bytes()).unwrap();
    for (p, caps) in [
        (Profile::docker_default(), CapSet::docker_default()),
        (Profile::docker_default(), CapSet::all()),
        (Profile::docker_default(), CapSet::empty()),
        (&snippet, CapSet::empty()),
    ] {
        for native in [Arch::X86_64, Arch::Aarch64] {
            let t = target(native, caps);
            let c = p.compile(&t).unwrap();
            check_like_kernel(&c.instructions);
            for &arch in &c.arches {
                for nr in 0..512 {
                    for args in argsets {
                        assert_eq!(
                            run(&c.instructions, arch, nr, args),
                            oracle(p, &t, arch, nr, args),
                            "{native:?}/{arch:?} nr {nr} args {args:?}"
                        );
                    }
                }
            }
        }
    }
}

/// The kernel's walk when it builds its allow cache at install time
/// (`seccomp_is_const_allow`): the program run on the number and architecture alone,
/// giving up (`None`) at any load of an argument. Also how many instructions it went through.
fn run_without_args(prog: &[Instruction], arch: Arch, nr: u32) -> (Option<u32>, usize) {
    interpret(prog, |off| match off {
        0 => Some(nr),
        4 => Some(arch.audit()),
        _ => None,
    })
}

#[test]
fn default_program_is_short_and_cacheable_by_the_kernel() {
    let p = Profile::docker_default();
    for native in [Arch::X86_64, Arch::Aarch64] {
        let t = target(native, CapSet::docker_default());
        let c = p.compile(&t).unwrap();
        // The search jumps straight to each block: ~2 instructions per syscall number range.
        assert!(c.len() < if native == Arch::X86_64 { 400 } else { 200 }, "{native:?}: {}", c.len());
        for &arch in &c.arches {
            for nr in 0..512 {
                let has_args = p
                    .rules
                    .iter()
                    .filter(|r| r.applies_to(&t))
                    .any(|r| !r.args.is_empty() && r.names.iter().any(|n| arch.syscall(n) == Some(nr)));
                let (verdict, steps) = run_without_args(&c.instructions, arch, nr);
                // A binary search: the kernel's walk per number is the search's depth.
                assert!(steps <= 16, "{arch:?} nr {nr}: {steps} instructions");
                if !has_args {
                    assert_eq!(verdict, Some(oracle(p, &t, arch, nr, [0; 6])), "{arch:?} nr {nr}");
                }
            }
        }
    }
}

#[test]
fn a_profile_too_large_for_short_jumps_compiles_with_long_ones() {
    // Every other x86_64 number allowed, one argument rule on many numbers apart (a block
    // several ranges share, jumped to) and one on a single number (a block of several
    // instructions written in place): hundreds of ranges, beyond 8-bit jump offsets.
    let mut p = Profile::new(Action::Errno(1));
    let names: Vec<String> = syscalls::x86_64::Sysno::iter().map(|s| s.name().to_owned()).collect();
    let even: Vec<&String> = names.iter().filter(|n| nr(Arch::X86_64, n).is_multiple_of(2)).collect();
    let sparse: Vec<&String> = names.iter().filter(|n| nr(Arch::X86_64, n) % 6 == 1).collect();
    let single = names.iter().find(|n| nr(Arch::X86_64, n) == 201).unwrap();
    p.rule(SyscallRule::new(even, Action::Allow));
    p.rule(SyscallRule::new(sparse.clone(), Action::Allow).arg(ArgCondition::new(0, CmpOp::Eq, 7)));
    p.rule(SyscallRule::new([single], Action::Errno(9)).arg(ArgCondition::new(1, CmpOp::Gt, 8)));
    p.arches = vec![Arch::X86_64];
    let t = target(Arch::X86_64, CapSet::empty());
    let c = p.compile(&t).unwrap();
    check_like_kernel(&c.instructions);
    // The far search: most ranges end in a `RET` of their own (the direct one has a few).
    let returns = c.instructions.iter().filter(|i| i.code == 0x06).count();
    assert!(returns > 200, "{returns} returns in {}", c.len());
    for nr in 0..512 {
        for args in [[0u64; 6], [7, 0, 0, 0, 0, 0], [7, 9, 0, 0, 0, 0]] {
            assert_eq!(run(&c.instructions, Arch::X86_64, nr, args), oracle(&p, &t, Arch::X86_64, nr, args), "nr {nr}");
        }
    }
    assert_eq!(run(&c.instructions, Arch::X86_64, self::nr(Arch::X86_64, sparse[0]), [7, 0, 0, 0, 0, 0]), ret::ALLOW);
    assert_eq!(run(&c.instructions, Arch::X86_64, 201, [0, 9, 0, 0, 0, 0]), ret::ERRNO | 9);
    assert_eq!(run(&c.instructions, Arch::X86_64, 201, [0, 8, 0, 0, 0, 0]), ret::ERRNO | 1);
}
