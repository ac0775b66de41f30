/*
 * nk-init: the minimal init of nook-ns (`Command::init(true)`), as a program of its own.
 *
 * Built by ns/build.rs as a static, freestanding executable (no libc, raw system calls,
 * x86_64 and aarch64), embedded into the crate and exec'd from a sealed memfd by the
 * child that forked the payload. So PID 1 of a sandbox holds this small image, an empty
 * environment and nothing of the embedding program's memory.
 *
 * argv: nk-init PAYLOAD_PID GATE_FD
 *   or: nk-init               (holding: no payload; `Command::init_hold`)
 *
 *   PAYLOAD_PID  the payload, already forked (our child); it waits before exec until
 *   GATE_FD      receives one byte from us (EOF instead: we never came up, it exits).
 *
 * Every signal is blocked when we start (the mask survives execve), so signals sent to us
 * before the exec are pending, not lost. We:
 *   1. make ourselves non-dumpable (no ptrace, no /proc/1/mem for the unprivileged),
 *   2. reset SIGCHLD to its default action (an inherited SIG_IGN would auto-reap),
 *   3. release the payload through the gate,
 *   4. loop: reap every exited child (the payload's status may already be waiting), exit
 *      with the payload's status (128 + signal when killed) once it is reaped; otherwise
 *      wait for a signal and forward SIGTERM/INT/HUP/USR1/USR2/QUIT to the payload.
 *
 * The forwarded set must match FORWARDED_SIGNALS in ns/src/plan.rs.
 */

typedef unsigned long nk_ulong;
typedef long nk_long;

#define NK_SIGHUP 1
#define NK_SIGINT 2
#define NK_SIGQUIT 3
#define NK_SIGKILL 9
#define NK_SIGUSR1 10
#define NK_SIGUSR2 12
#define NK_SIGTERM 15
#define NK_SIGCHLD 17

#define NK_SIG_SETMASK 2
#define NK_WNOHANG 1
#define NK_ECHILD 10
#define NK_EINTR 4
#define NK_PR_SET_NAME 15
#define NK_PR_SET_DUMPABLE 4

#if defined(__x86_64__)
#define NR_write 1
#define NR_close 3
#define NR_rt_sigaction 13
#define NR_rt_sigprocmask 14
#define NR_wait4 61
#define NR_kill 62
#define NR_rt_sigtimedwait 128
#define NR_prctl 157
#define NR_exit_group 231

static nk_long nk_syscall(nk_long n, nk_long a, nk_long b, nk_long c, nk_long d) {
    register nk_long r10 __asm__("r10") = d;
    nk_long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                     : "rcx", "r11", "memory");
    return ret;
}

__asm__(".text\n"
        ".global _start\n"
        ".type _start,@function\n"
        "_start:\n"
        "  xor %rbp, %rbp\n"
        "  mov %rsp, %rdi\n"
        "  and $-16, %rsp\n"
        "  call nk_main\n"
        "  hlt\n");

#elif defined(__aarch64__)
#define NR_close 57
#define NR_write 64
#define NR_exit_group 94
#define NR_kill 129
#define NR_rt_sigaction 134
#define NR_rt_sigprocmask 135
#define NR_rt_sigtimedwait 137
#define NR_prctl 167
#define NR_wait4 260

static nk_long nk_syscall(nk_long n, nk_long a, nk_long b, nk_long c, nk_long d) {
    register nk_long x8 __asm__("x8") = n;
    register nk_long x0 __asm__("x0") = a;
    register nk_long x1 __asm__("x1") = b;
    register nk_long x2 __asm__("x2") = c;
    register nk_long x3 __asm__("x3") = d;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
    return x0;
}

__asm__(".text\n"
        ".global _start\n"
        ".type _start,%function\n"
        "_start:\n"
        "  mov x29, #0\n"
        "  mov x30, #0\n"
        "  mov x0, sp\n"
        "  and sp, x0, #-16\n"
        "  bl nk_main\n"
        "  brk #0\n");

#else
#error "nk-init has system call stubs for x86_64 and aarch64 only"
#endif

/* The kernel's struct sigaction (with sa_restorer on both architectures). */
struct nk_sigaction {
    nk_ulong handler;
    nk_ulong flags;
    nk_ulong restorer;
    nk_ulong mask;
};

static __attribute__((noreturn)) void nk_exit(int code) {
    for (;;) nk_syscall(NR_exit_group, code, 0, 0, 0);
}

/* A decimal number at least 1; 0 when s is not one. */
static nk_long parse_pos(const char *s) {
    nk_long v = 0;
    if (!s || !*s) return 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 100000000L) return 0;
        v = v * 10 + (*s - '0');
    }
    return v;
}

static int is_forwarded(nk_long sig) {
    return sig == NK_SIGTERM || sig == NK_SIGINT || sig == NK_SIGHUP || sig == NK_SIGUSR1 || sig == NK_SIGUSR2 ||
           sig == NK_SIGQUIT;
}

static nk_ulong bit(int sig) { return 1UL << (sig - 1); }

__attribute__((noreturn, used)) void nk_main(nk_long *sp) {
    nk_long argc = sp[0];
    char **argv = (char **)(sp + 1);

    /* First thing: nobody without CAP_SYS_PTRACE may attach or read our memory. */
    nk_syscall(NR_prctl, NK_PR_SET_DUMPABLE, 0, 0, 0);
    nk_syscall(NR_prctl, NK_PR_SET_NAME, (nk_long) "nk-init", 0, 0);

    /* Keep everything blocked (it already is): signals are taken with sigtimedwait. */
    nk_ulong all = ~0UL;
    nk_syscall(NR_rt_sigprocmask, NK_SIG_SETMASK, (nk_long)&all, 0, 8);
    struct nk_sigaction dfl = {0, 0, 0, 0};
    nk_syscall(NR_rt_sigaction, NK_SIGCHLD, (nk_long)&dfl, 0, 8);

    nk_long payload = argc >= 3 ? parse_pos(argv[1]) : 0;
    nk_long gate = argc >= 3 ? parse_pos(argv[2]) : 0;
    if (payload > 0 && gate > 0) {
        /* Release the payload; if it is gone already, the reap loop below finds it. */
        char go = 'g';
        nk_syscall(NR_write, gate, (nk_long)&go, 1, 0);
        nk_syscall(NR_close, gate, 0, 0, 0);
    }

    nk_ulong waited = bit(NK_SIGCHLD) | bit(NK_SIGTERM) | bit(NK_SIGINT) | bit(NK_SIGHUP) | bit(NK_SIGUSR1) |
                      bit(NK_SIGUSR2) | bit(NK_SIGQUIT);
    for (;;) {
        /* Reap first: the payload may have exited before we were exec'd. */
        for (;;) {
            int status = 0;
            nk_long pid = nk_syscall(NR_wait4, -1, (nk_long)&status, NK_WNOHANG, 0);
            if (pid == -NK_EINTR) continue;
            /* No child at all: the payload's status is gone (or there never was one). A
             * holding init (no payload) keeps waiting. */
            if (pid == -NK_ECHILD && payload > 0) nk_exit(127);
            if (pid <= 0) break;
            if (pid == payload) {
                int sig = status & 0x7f;
                nk_exit(sig == 0 ? (status >> 8) & 0xff : 128 + sig);
            }
        }
        nk_long sig = nk_syscall(NR_rt_sigtimedwait, (nk_long)&waited, 0, 0, 8);
        if (payload > 0 && is_forwarded(sig)) nk_syscall(NR_kill, payload, sig, 0, 0);
        /* Holding: SIGTERM, SIGINT or SIGHUP ends the hold (and, as PID 1, the namespace). */
        if (payload == 0 && (sig == NK_SIGTERM || sig == NK_SIGINT || sig == NK_SIGHUP)) nk_exit(0);
    }
}
