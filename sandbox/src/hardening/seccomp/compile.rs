//! Profile → classic BPF (see the module docs of `seccomp` for the layout).

use std::collections::{BTreeMap, HashMap};

use seccompiler::{BpfProgram, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};

use super::{Action, Arch, ArgCondition, CmpOp, Profile, SeccompError, Target, ret};

/// One classic BPF instruction, laid out as `struct sock_filter`.
pub type Instruction = seccompiler::sock_filter;

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
/// `offsetof(struct seccomp_data, nr)` and `arch`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
/// The x32 ABI's marker bit in syscall numbers.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// The kernel's limit (`BPF_MAXINSNS`).
const MAX_LEN: usize = 4096;

const fn stmt(code: u16, k: u32) -> Instruction {
    Instruction { code, jt: 0, jf: 0, k }
}

const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Instruction {
    Instruction { code, jt, jf, k }
}

/// A profile compiled for one [`Target`]: the program nook-ns installs, unchanged, in
/// every spawn that uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledProfile {
    /// The target it was compiled for.
    pub target: Target,
    /// The ABIs the program lets through its architecture check.
    pub arches: Vec<Arch>,
    /// Syscall names skipped because the architecture does not have them.
    pub skipped: Vec<(Arch, String)>,
    /// The program.
    pub instructions: Vec<Instruction>,
    /// Whether a rule returns `SECCOMP_RET_USER_NOTIF` (the installer must then ask for a
    /// listener fd, `SECCOMP_FILTER_FLAG_NEW_LISTENER`).
    pub user_notif: bool,
}

impl CompiledProfile {
    /// The program as `libc::sock_filter`s (what `struct sock_fprog` points at).
    pub fn to_libc(&self) -> Vec<libc::sock_filter> {
        self.instructions.iter().map(|i| libc::sock_filter { code: i.code, jt: i.jt, jf: i.jf, k: i.k }).collect()
    }

    /// The number of instructions.
    pub fn len(&self) -> usize {
        self.instructions.len()
    }

    /// Whether the program is empty (never for a compiled profile).
    pub fn is_empty(&self) -> bool {
        self.instructions.is_empty()
    }
}

/// What matches one syscall in one action group: always, or any of these rules.
enum Chain {
    Always,
    Any(Vec<SeccompRule>),
}

fn condition(arch: Arch, c: &ArgCondition) -> Result<SeccompCondition, SeccompError> {
    let (op, value) = match c.op {
        CmpOp::Eq => (SeccompCmpOp::Eq, c.value),
        CmpOp::Ne => (SeccompCmpOp::Ne, c.value),
        CmpOp::Lt => (SeccompCmpOp::Lt, c.value),
        CmpOp::Le => (SeccompCmpOp::Le, c.value),
        CmpOp::Gt => (SeccompCmpOp::Gt, c.value),
        CmpOp::Ge => (SeccompCmpOp::Ge, c.value),
        CmpOp::MaskedEq { mask } => (SeccompCmpOp::MaskedEq(mask), c.value),
    };
    SeccompCondition::new(c.index, SeccompCmpArgLen::Qword, op, value)
        .map_err(|source| SeccompError::Compile { arch, source })
}

impl Profile {
    /// Compiles the profile for `target` (validating it first). Call once and keep the
    /// result: compiling walks every rule, installing does not.
    pub fn compile(&self, target: &Target) -> Result<CompiledProfile, SeccompError> {
        self.validate()?;
        if target.arch == Arch::X86 {
            return Err(SeccompError::UnsupportedArch { arch: "x86 as the native architecture".into() });
        }
        let mut arches = vec![target.arch];
        arches.extend(target.arch.compat().iter().filter(|a| self.arches.contains(a)));
        let rules: Vec<_> = self.rules.iter().filter(|r| r.applies_to(target)).collect();

        let mut skipped = Vec::new();
        let mut sections = Vec::new();
        for &arch in &arches {
            // Group by action, most restrictive first; per syscall number, the rules.
            let mut groups: BTreeMap<(u8, u16), (Action, BTreeMap<i64, Chain>)> = BTreeMap::new();
            for rule in &rules {
                for name in &rule.names {
                    let Some(nr) = arch.syscall(name) else {
                        skipped.push((arch, name.clone()));
                        continue;
                    };
                    let (_, chains) =
                        groups.entry(rule.action.precedence()).or_insert_with(|| (rule.action, BTreeMap::new()));
                    for alternative in alternatives(&rule.args) {
                        let chain = chains.entry(i64::from(nr)).or_insert_with(|| Chain::Any(Vec::new()));
                        match (chain, alternative.is_empty()) {
                            (Chain::Always, _) => {}
                            (c @ Chain::Any(_), true) => *c = Chain::Always,
                            (Chain::Any(list), false) => {
                                let conds =
                                    alternative.iter().map(|c| condition(arch, c)).collect::<Result<Vec<_>, _>>()?;
                                list.push(
                                    SeccompRule::new(conds).map_err(|source| SeccompError::Compile { arch, source })?,
                                );
                            }
                        }
                    }
                }
            }
            sections.push(section(arch, groups, self.default_action));
        }

        // Architecture dispatch: LD arch; per section JEQ audit → JA section; else kill.
        let head_len = 1 + 2 * sections.len() + 1;
        let mut program = vec![stmt(BPF_LD_W_ABS, DATA_ARCH)];
        let mut start = head_len;
        for (i, (arch, body)) in arches.iter().zip(&sections).enumerate() {
            let ja_at = 1 + 2 * i + 1;
            program.push(jump(BPF_JMP_JEQ_K, arch.audit(), 0, 1));
            program.push(stmt(BPF_JMP_JA, (start - ja_at - 1) as u32));
            start += body.len();
        }
        program.push(stmt(BPF_RET_K, ret::KILL_PROCESS));
        for body in sections {
            program.extend(body);
        }
        if program.len() > MAX_LEN {
            return Err(SeccompError::TooLarge { arch: target.arch, len: program.len() });
        }
        skipped.sort();
        skipped.dedup();
        Ok(CompiledProfile {
            target: *target,
            arches,
            skipped,
            instructions: program,
            user_notif: self.uses_user_notif(),
        })
    }
}

/// A rule's conditions as alternatives: conditions on one argument repeated are ORed (one
/// alternative each, runc's reading of Docker profiles); otherwise one alternative with all.
fn alternatives(args: &[ArgCondition]) -> Vec<Vec<ArgCondition>> {
    let repeated = args.iter().enumerate().any(|(i, a)| args[..i].iter().any(|b| b.index == a.index));
    if repeated { args.iter().map(|a| vec![*a]).collect() } else { vec![args.to_vec()] }
}

/// Jumps to resolve once every block's place is known.
#[derive(Default)]
struct Asm {
    out: Vec<Instruction>,
    labels: Vec<Option<usize>>,
    /// `JA`s: (instruction, label).
    fixups: Vec<(usize, usize)>,
    /// Conditional jumps' 8-bit offsets: (instruction, label, whether `jt` (else `jf`)).
    short: Vec<(usize, usize, bool)>,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }

    fn place(&mut self, label: usize) {
        self.labels[label] = Some(self.out.len());
    }

    /// `JA label` (32-bit offset: any distance).
    fn ja(&mut self, label: usize) {
        self.fixups.push((self.out.len(), label));
        self.out.push(stmt(BPF_JMP_JA, 0));
    }

    /// `JGE k`: to `jt` when the number is at least `k`, else to `jf` (`None`: the next
    /// instruction). Both labels must be placed later, within reach of an 8-bit offset.
    fn jge(&mut self, k: u32, jt: usize, jf: Option<usize>) {
        self.short.push((self.out.len(), jt, true));
        if let Some(jf) = jf {
            self.short.push((self.out.len(), jf, false));
        }
        self.out.push(jump(BPF_JMP_JGE_K, k, 0, 0));
    }

    /// The program with every jump resolved; `None` if a conditional jump does not reach.
    fn finish(mut self) -> Option<Vec<Instruction>> {
        let offset = |labels: &[Option<usize>], at: usize, label: usize| {
            labels[label].expect("every label is placed").checked_sub(at + 1).expect("jumps go forward")
        };
        for (at, label) in self.fixups {
            self.out[at].k = u32::try_from(offset(&self.labels, at, label)).ok()?;
        }
        for (at, label, jt) in self.short {
            let off = u8::try_from(offset(&self.labels, at, label)).ok()?;
            if jt { self.out[at].jt = off } else { self.out[at].jf = off }
        }
        Some(self.out)
    }
}

/// A binary search over ranges of syscall numbers (sorted, contiguous: each starts where
/// the previous ends, the first at 0), each range leading to one of `blocks`.
///
/// [`Tree::direct`]: one `JGE` per node, whose branches go straight to the node of each
/// half or, for a half of one range, to its block; every block written once after the
/// search. A number costs the search's depth in comparisons and one block. It needs every
/// jump to reach with 8-bit offsets (Docker's default profile does, by far); when not,
/// [`Tree::far`]: the same search with a `JA` where the lower half is too long, and the
/// blocks written where their range ends the search (a `JA` to blocks used several times
/// and longer than one instruction). Small programs matter: the kernel converts and JITs
/// the program when it is installed, and runs it for every syscall number and ABI to
/// build its allow cache — the cost of a spawn's install is about linear in its length.
struct Tree<'a> {
    blocks: &'a [Vec<Instruction>],
    /// How many ranges lead to each block.
    uses: Vec<usize>,
}

impl Tree<'_> {
    fn direct(&self, asm: &mut Asm, ranges: &[(u32, usize)]) {
        let labels: Vec<usize> = self.blocks.iter().map(|_| asm.label()).collect();
        if let [(_, block)] = ranges {
            asm.ja(labels[*block]);
        } else {
            self.direct_node(asm, ranges, &labels);
        }
        for (block, code) in self.blocks.iter().enumerate() {
            if self.uses[block] > 0 {
                asm.place(labels[block]);
                asm.out.extend(code.iter().cloned());
            }
        }
    }

    fn direct_node(&self, asm: &mut Asm, ranges: &[(u32, usize)], labels: &[usize]) {
        let (lower, upper) = ranges.split_at(ranges.len() / 2);
        let upper_at = match upper {
            [(_, block)] => labels[*block],
            _ => asm.label(),
        };
        let lower_at = match lower {
            [(_, block)] => Some(labels[*block]),
            _ => None,
        };
        asm.jge(upper[0].0, upper_at, lower_at);
        if lower_at.is_none() {
            self.direct_node(asm, lower, labels);
        }
        if upper.len() > 1 {
            asm.place(upper_at);
            self.direct_node(asm, upper, labels);
        }
    }

    /// Whether [`Tree::far`] writes the block in place of a jump to it.
    fn inline(&self, block: usize) -> bool {
        self.uses[block] == 1 || self.blocks[block].len() == 1
    }

    fn far(&self, asm: &mut Asm, ranges: &[(u32, usize)]) {
        let labels: Vec<usize> = self.blocks.iter().map(|_| asm.label()).collect();
        self.far_node(asm, ranges, &labels);
        for (block, code) in self.blocks.iter().enumerate() {
            if self.uses[block] > 0 && !self.inline(block) {
                asm.place(labels[block]);
                asm.out.extend(code.iter().cloned());
            }
        }
    }

    /// The instructions [`Tree::far_node`] writes for `ranges`.
    fn far_len(&self, ranges: &[(u32, usize)]) -> usize {
        if let [(_, block)] = ranges {
            return if self.inline(*block) { self.blocks[*block].len() } else { 1 };
        }
        let (lower, upper) = ranges.split_at(ranges.len() / 2);
        let lower_len = self.far_len(lower);
        1 + usize::from(lower_len > usize::from(u8::MAX)) + lower_len + self.far_len(upper)
    }

    fn far_node(&self, asm: &mut Asm, ranges: &[(u32, usize)], labels: &[usize]) {
        if let [(_, block)] = ranges {
            if self.inline(*block) {
                asm.out.extend(self.blocks[*block].iter().cloned());
            } else {
                asm.ja(labels[*block]);
            }
            return;
        }
        let (lower, upper) = ranges.split_at(ranges.len() / 2);
        match u8::try_from(self.far_len(lower)) {
            Ok(skip) => {
                asm.out.push(jump(BPF_JMP_JGE_K, upper[0].0, skip, 0));
                self.far_node(asm, lower, labels);
            }
            Err(_) => {
                let upper_label = asm.label();
                asm.out.push(jump(BPF_JMP_JGE_K, upper[0].0, 0, 1));
                asm.ja(upper_label);
                self.far_node(asm, lower, labels);
                asm.place(upper_label);
            }
        }
        self.far_node(asm, upper, labels);
    }
}

/// One architecture's part: load the syscall number, a binary search over ranges of
/// numbers, and per number a block: each action's rules in precedence order (its
/// argument comparisons built by seccompiler, then `RET action`), the default at the end.
/// A binary search keeps both the per-syscall path and the kernel's work at install time
/// short (the kernel runs the filter for every syscall number to build its allow cache).
fn section(
    arch: Arch,
    groups: BTreeMap<(u8, u16), (Action, BTreeMap<i64, Chain>)>,
    default: Action,
) -> Vec<Instruction> {
    let mut per_nr: BTreeMap<i64, Vec<(Action, Chain)>> = BTreeMap::new();
    for (_, (action, chains)) in groups {
        for (nr, chain) in chains {
            per_nr.entry(nr).or_default().push((action, chain));
        }
    }
    // Each number's block, built on its own (its jumps are relative), and identical blocks
    // shared: most are a lone `RET ALLOW`.
    let mut unique: Vec<Vec<Instruction>> = Vec::new();
    let mut index: HashMap<Vec<(u16, u8, u8, u32)>, usize> = HashMap::new();
    let mut intern = |code: Vec<Instruction>| -> usize {
        let key = code.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect();
        *index.entry(key).or_insert_with(|| {
            unique.push(code);
            unique.len() - 1
        })
    };
    let miss = intern(vec![stmt(BPF_RET_K, default.ret())]);
    let mut targets = Vec::new();
    for (nr, chains) in per_nr {
        let mut code = Vec::new();
        let mut ended = false;
        for (action, chain) in chains {
            match chain {
                Chain::Always => {
                    code.push(stmt(BPF_RET_K, action.ret()));
                    ended = true;
                    break;
                }
                Chain::Any(rules) => {
                    for rule in rules {
                        // Falls through on a match; jumps past the RET otherwise.
                        code.extend(BpfProgram::from(rule));
                        code.push(stmt(BPF_RET_K, action.ret()));
                    }
                }
            }
        }
        if !ended {
            code.push(stmt(BPF_RET_K, default.ret()));
        }
        targets.push((nr as u32, intern(code)));
    }
    // Ranges of numbers with the same block (most syscalls are neighbours with the same
    // `RET ALLOW`), the gaps going to the default: far fewer comparisons than numbers.
    let mut ranges: Vec<(u32, usize)> = vec![(0, miss)];
    let mut next = 0u32;
    for (nr, block) in targets {
        if nr != next && ranges.last().is_some_and(|r| r.1 != miss) {
            ranges.push((next, miss));
        }
        match ranges.last_mut() {
            Some(last) if last.0 == nr => last.1 = block,
            Some(last) if last.1 != block => ranges.push((nr, block)),
            _ => {}
        }
        next = nr + 1;
    }
    if ranges.last().is_some_and(|r| r.1 != miss) {
        ranges.push((next, miss));
    }
    let mut uses = vec![0usize; unique.len()];
    for (_, block) in &ranges {
        uses[*block] += 1;
    }
    let tree = Tree { blocks: &unique, uses };
    let assemble = |direct: bool| {
        let mut asm = Asm::default();
        asm.out.push(stmt(BPF_LD_W_ABS, DATA_NR));
        if arch == Arch::X86_64 {
            asm.out.push(jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1));
            asm.out.push(stmt(BPF_RET_K, ret::KILL_PROCESS));
        }
        if direct {
            tree.direct(&mut asm, &ranges)
        } else {
            tree.far(&mut asm, &ranges)
        }
        // seccompiler's rules start with a never-taken `JA` that points one past the
        // rule's `RET`: keep its target inside the program (the kernel refuses jumps past
        // the end).
        asm.out.push(stmt(BPF_RET_K, default.ret()));
        asm.finish()
    };
    assemble(true).or_else(|| assemble(false)).expect("the far search's jumps reach any distance")
}
