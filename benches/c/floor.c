/*
 * The C floor for the nook benchmarks (benches/main.rs): nook-ns (processes, namespaces),
 * nook-cgroup (nk_floor_cgroup) and nook-unionfs (nk_floor_overlay, at the end).
 *
 * Each function makes the system calls that nook-ns must make for the same result, and
 * nothing else: no sync socket, no error pipe, no pidfd, no plan, no signal-handler reset.
 * Where a namespace kind needs more than a clone flag, the floor does what nook does:
 *   - user:   the parent writes uid_map and gid_map ("0 <euid> 1") while the child waits on a
 *             pipe, then the child becomes root of the namespace (setgroups, setresgid,
 *             setresuid), as nook's default plan does;
 *   - mount:  the child makes "/" recursively private (nook's default root propagation);
 *   - cgroup: the child unshares it (nook enters it after the sync point);
 *   - time:   the child unshares it and enters it through /proc/self/ns/time_for_children
 *             (nook does so to be able to write clock offsets first).
 * Children are created with raw clone3 (fork semantics, like nook's general path), or with
 * glibc's clone(CLONE_VM | CLONE_VFORK) on a private stack (the *_vfork_* functions, like
 * nook's vfork-style path and posix_spawn), and reaped with waitpid.
 * Every function returns the wait status (0 when the child exited 0) or -errno.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/sysmacros.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "floor.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

extern char **environ;

/* struct clone_args, version 0 (64 bytes) is enough: no cgroup, no set_tid. */
struct nk_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

static long nk_clone3(unsigned long flags) {
    struct nk_clone_args a;
    memset(&a, 0, sizeof a);
    a.flags = flags;
    a.exit_signal = SIGCHLD;
    return syscall(SYS_clone3, &a, sizeof a);
}

static long wait_for(pid_t pid) {
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return -errno;
    }
    return status;
}

static int write_map(pid_t pid, const char *file, unsigned id) {
    char path[64], text[32];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    int len = snprintf(text, sizeof text, "0 %u 1\n", id);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    ssize_t n = write(fd, text, (size_t)len);
    int err = errno;
    close(fd);
    return n == len ? 0 : -err;
}

/* Runs in the child: the per-kind work nook's child plan does. Exits on failure. */
static void child_setup(unsigned long flags, int sync_fd) {
    if (flags & CLONE_NEWUSER) {
        char b;
        if (read(sync_fd, &b, 1) != 1) _exit(120);
        if (syscall(SYS_setgroups, 0, NULL) || syscall(SYS_setresgid, 0, 0, 0) ||
            syscall(SYS_setresuid, 0, 0, 0))
            _exit(121);
    }
    if ((flags & CLONE_NEWCGROUP) && unshare(CLONE_NEWCGROUP)) _exit(122);
    if (flags & CLONE_NEWTIME) {
        if (unshare(CLONE_NEWTIME)) _exit(123);
        int fd = open("/proc/self/ns/time_for_children", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || setns(fd, CLONE_NEWTIME)) _exit(124);
        close(fd);
    }
    if ((flags & CLONE_NEWNS) && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) _exit(125);
}

static long spawn_wait(unsigned long flags, const char *exec_path) {
    int sync[2] = {-1, -1};
    int user = (flags & CLONE_NEWUSER) != 0;
    if (user && pipe2(sync, O_CLOEXEC)) return -errno;
    long pid = nk_clone3(flags & ~(unsigned long)(CLONE_NEWCGROUP | CLONE_NEWTIME));
    if (pid == 0) {
        if (user) close(sync[1]);
        child_setup(flags, sync[0]);
        if (exec_path) {
            char *argv[] = {(char *)exec_path, NULL};
            execve(exec_path, argv, environ);
            _exit(127);
        }
        _exit(0);
    }
    int err = errno;
    if (user) close(sync[0]);
    if (pid < 0) {
        if (user) close(sync[1]);
        return -err;
    }
    if (user) {
        int e = write_map((pid_t)pid, "uid_map", geteuid());
        if (e == 0) e = write_map((pid_t)pid, "gid_map", getegid());
        if (e == 0 && write(sync[1], "x", 1) != 1) e = -errno;
        close(sync[1]);
        if (e) {
            wait_for((pid_t)pid);
            return e;
        }
    }
    return wait_for((pid_t)pid);
}

/* clone3 with the namespace flags (plus what each kind needs, see above), child _exit(0), wait. */
long nk_floor_clone_wait(unsigned long flags) { return spawn_wait(flags, NULL); }

/* The same, but the child execs `path` (argv = { path }, the parent's environment). */
long nk_floor_clone_exec_wait(unsigned long flags, const char *path) { return spawn_wait(flags, path); }

struct vfork_arg {
    unsigned long flags;
    const char *path;
};

static int vfork_child(void *p) {
    const struct vfork_arg *a = p;
    child_setup(a->flags, -1);
    if (a->path) {
        char *argv[] = {(char *)a->path, NULL};
        execve(a->path, argv, environ);
        _exit(127);
    }
    _exit(0);
}

static long vfork_spawn_wait(unsigned long flags, const char *exec_path) {
    /* user needs the parent to act while the child waits; time needs an unshared mm */
    if (flags & (CLONE_NEWUSER | CLONE_NEWTIME)) return -EINVAL;
    const size_t size = 256 * 1024;
    void *stack = mmap(NULL, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
    if (stack == MAP_FAILED) return -errno;
    struct vfork_arg a = {flags, exec_path};
    int pid = clone(vfork_child, (char *)stack + size,
                    CLONE_VM | CLONE_VFORK | SIGCHLD | (int)(flags & ~(unsigned long)CLONE_NEWCGROUP), &a);
    int err = errno;
    munmap(stack, size);
    if (pid < 0) return -err;
    return wait_for(pid);
}

/* clone(CLONE_VM | CLONE_VFORK) with the namespace flags, child execs `path`, wait. */
long nk_floor_vfork_exec_wait(unsigned long flags, const char *path) { return vfork_spawn_wait(flags, path); }

/* glibc fork(), child _exit(0), waitpid. */
long nk_floor_fork_wait(void) {
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    if (pid < 0) return -errno;
    return wait_for(pid);
}

/* glibc fork(), child execve(path), waitpid. */
long nk_floor_fork_exec_wait(const char *path) {
    pid_t pid = fork();
    if (pid == 0) {
        char *argv[] = {(char *)path, NULL};
        execve(path, argv, environ);
        _exit(127);
    }
    if (pid < 0) return -errno;
    return wait_for(pid);
}

/* setns into target_fd and back into orig_fd (both of kind nstype). */
long nk_floor_setns_roundtrip(int target_fd, int orig_fd, int nstype) {
    if (setns(target_fd, nstype)) return -errno;
    if (setns(orig_fd, nstype)) return -errno;
    return 0;
}

/* value: one line, or several separated by '\n', each written by its own write(2) through
 * one open file (cgroupfs parses each write separately; nook writes a run of device rules
 * to one file the same way). */
static int write_value(const char *path, const char *value) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int err = 0;
    while (*value && !err) {
        const char *end = strchr(value, '\n');
        size_t len = end ? (size_t)(end - value) : strlen(value);
        ssize_t n = write(fd, value, len);
        if (n != (ssize_t)len) err = -(n < 0 ? errno : EIO);
        value += len + (end ? 1 : 0);
    }
    close(fd);
    return err;
}

/*
 * A cgroup created, limited and deleted with the system calls the kernel needs: mkdir each
 * of dirs[0..ndirs) in order (each one below an existing cgroup, e.g. below the caller's
 * own cgroup in one hierarchy), write values[i] to files[i] (full paths; one write each,
 * as cgroupfs parses each write separately), then rmdir the dirs in reverse order. The
 * caller picks the lists: one directory per hierarchy of the requested controllers for
 * "the same result", or every directory nook creates for "the same system calls as nook".
 * Returns 0 or -errno; on failure what was created is removed again.
 */
long nk_floor_cgroup(const char *const *dirs, int ndirs, const char *const *files, const char *const *values,
                     int nfiles) {
    int made = 0, err = 0;
    for (; made < ndirs; made++) {
        if (mkdir(dirs[made], 0777)) {
            err = -errno;
            break;
        }
    }
    for (int i = 0; err == 0 && i < nfiles; i++) err = write_value(files[i], values[i]);
    while (made > 0) {
        if (rmdir(dirs[--made]) && err == 0) err = -errno;
    }
    return err;
}

/*
 * nook-unionfs: mount an overlay with the new mount API, one fsconfig("lowerdir+") per layer
 * (in the order given, which is the order the kernel stacks them), optionally an upper and
 * work dir, then move it onto `target` and unmount it. Returns 0 or -errno.
 */
#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x00000001
#endif
#ifndef FSMOUNT_CLOEXEC
#define FSMOUNT_CLOEXEC 0x00000001
#endif
#ifndef FSCONFIG_SET_STRING
#define FSCONFIG_SET_STRING 1
#endif
#ifndef FSCONFIG_CMD_CREATE
#define FSCONFIG_CMD_CREATE 6
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif

long nk_floor_overlay(const char *const *lowers, int nlowers, const char *upper, const char *work,
                      const char *target) {
    long err = 0;
    int fs = (int)syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC);
    if (fs < 0)
        return -errno;
    for (int i = 0; i < nlowers && !err; i++)
        if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "lowerdir+", lowers[i], 0) < 0)
            err = -errno;
    if (!err && upper && syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "upperdir", upper, 0) < 0)
        err = -errno;
    if (!err && work && syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "workdir", work, 0) < 0)
        err = -errno;
    if (!err && syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        err = -errno;
    int mnt = -1;
    if (!err && (mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, 0)) < 0)
        err = -errno;
    close(fs);
    if (!err && syscall(SYS_move_mount, mnt, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        err = -errno;
    if (mnt >= 0)
        close(mnt);
    if (!err && umount2(target, 0) < 0)
        err = -errno;
    return err;
}

/*
 * nook-sandbox's one-shot (benches/sandbox.rs): the kernel work of the same result, and
 * nothing else. The cgroup's directories are made and limited (as nk_floor_cgroup); a child
 * is cloned into new pid, mount, IPC and UTS namespaces — born in the cgroup2 directory, if
 * one is given, by clone3's CLONE_INTO_CGROUP, and moving itself into each v1 directory by
 * writing 0 to its `tasks` file (opened by the parent before the clone), as nook's children
 * do: the cheapest ways the kernel offers (the parent writing the pid to cgroup.procs takes
 * the cgroup threadgroup lock, which waits for an RCU grace period after a pause). Then, in
 * `stage` (an empty directory), it builds the root file system — "/" recursively private, a
 * tmpfs holding the overlay's upper and work directories, an overlay with the host's "/" as
 * its lower layer, /proc, a tmpfs /dev with binds of the six standard device nodes, a
 * read-only /sys — pivots into it, detaches the old root, applies `harden` (if not NULL:
 * struct nk_harden) and execs /bin/true (as PID 1: no init) with an empty environment. The
 * parent waits and removes the directories. Returns the wait status or -errno.
 */
struct nk_clone_args_v2 {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
    uint64_t set_tid, set_tid_size, cgroup;
};
#define NK_CLONE_INTO_CGROUP 0x200000000ULL
#define NK_MAX_V1 16

#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
struct nk_mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};

static void harden_child(const struct nk_harden *h) {
    for (int i = 0; i < h->nmask_dirs; i++) {
        int e = i == 0 ? mount("tmpfs", h->mask_dirs[0], "tmpfs", MS_RDONLY, "size=0,mode=000")
                       : mount(h->mask_dirs[0], h->mask_dirs[i], NULL, MS_BIND, NULL);
        if (e) _exit(140);
    }
    for (int i = 0; i < h->nmask_files; i++)
        if (mount("/dev/null", h->mask_files[i], NULL, MS_BIND, NULL)) _exit(141);
    for (int i = 0; i < h->nread_only; i++) {
        struct nk_mount_attr a = {.attr_set = 0x1 /* MOUNT_ATTR_RDONLY */};
        if (mount(h->read_only[i], h->read_only[i], NULL, MS_BIND | MS_REC, NULL)) _exit(142);
        if (syscall(SYS_mount_setattr, AT_FDCWD, h->read_only[i], 0x8000 /* AT_RECURSIVE */, &a, sizeof a))
            _exit(143);
    }
    if (h->last_cap < 0) goto seccomp; /* capabilities left as they are */
    for (int cap = 0; cap <= h->last_cap; cap++)
        if (!(h->caps >> cap & 1) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)) _exit(144);
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {{(uint32_t)h->caps, (uint32_t)h->caps, 0},
                                             {(uint32_t)(h->caps >> 32), (uint32_t)(h->caps >> 32), 0}};
    if (syscall(SYS_capset, &hdr, data)) _exit(145);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)) _exit(146);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) _exit(147);
seccomp:
    if (h->filter_len == 0) return; /* no seccomp */
    struct sock_fprog prog = {(unsigned short)h->filter_len, (struct sock_filter *)h->filter};
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog)) _exit(148);
}

static void sandbox_child(const char *stage, const int *tasks, int ntasks, const struct nk_harden *h) {
    char path[4096];
    static const char *const nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
    char *const argv[] = {"/bin/true", NULL};
    char *const envp[] = {NULL};
    for (int i = 0; i < ntasks; i++)
        if (write(tasks[i], "0", 1) != 1) _exit(119);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) _exit(121);
    if (mount("tmpfs", stage, "tmpfs", 0, "mode=0755")) _exit(122);
    if (chdir(stage) || mkdir("upper", 0755) || mkdir("work", 0755) || mkdir("root", 0755)) _exit(123);
    snprintf(path, sizeof path, "lowerdir=/,upperdir=%s/upper,workdir=%s/work", stage, stage);
    if (mount("overlay", "root", "overlay", 0, path)) _exit(124);
    if (chdir("root")) _exit(125);
    if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) _exit(126);
    if (mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=0755")) _exit(127);
    for (unsigned i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
        char host[64];
        snprintf(path, sizeof path, "dev/%s", nodes[i]);
        snprintf(host, sizeof host, "/dev/%s", nodes[i]);
        int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
        if (fd < 0) _exit(128);
        close(fd);
        if (mount(host, path, NULL, MS_BIND, NULL)) _exit(129);
    }
    if (mount("sysfs", "sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) _exit(130);
    if (syscall(SYS_pivot_root, ".", ".")) _exit(131);
    if (umount2(".", MNT_DETACH) || chdir("/")) _exit(132);
    if (h) harden_child(h);
    execve(argv[0], argv, envp);
    _exit(133);
}

/* What a floor's child does once in its cgroup and namespaces (it never returns). */
typedef void (*floor_child_fn)(const void *arg, const int *tasks, int ntasks);

/* The cgroup part shared by the floors: make dirs[] and write files[] (nk_floor_cgroup),
 * clone3 with `flags` into them (born in the cgroup2 directory, joining the v1 ones by
 * their `tasks` files in the child), run `child`, wait, remove the directories. */
static long floor_in_cgroup(const char *const *dirs, int ndirs, const char *const *files, const char *const *values,
                            int nfiles, uint64_t flags, floor_child_fn child, const void *arg) {
    int made = 0, tasks[NK_MAX_V1], ntasks = 0, v2 = -1;
    long err = 0;
    for (; made < ndirs; made++) {
        if (mkdir(dirs[made], 0777)) {
            err = -errno;
            break;
        }
    }
    for (int i = 0; err == 0 && i < nfiles; i++) err = write_value(files[i], values[i]);
    for (int i = 0; err == 0 && i < ndirs; i++) {
        char file[4096];
        snprintf(file, sizeof file, "%s/tasks", dirs[i]);
        int fd = open(file, O_WRONLY | O_CLOEXEC);
        if (fd >= 0 && ntasks < NK_MAX_V1) {
            tasks[ntasks++] = fd;
        } else if (fd >= 0) {
            close(fd);
            err = -E2BIG;
        } else if (errno == ENOENT && v2 < 0) {
            v2 = open(dirs[i], O_DIRECTORY | O_CLOEXEC);
            if (v2 < 0) err = -errno;
        } else {
            err = -errno;
        }
    }
    if (err == 0) {
        struct nk_clone_args_v2 a;
        memset(&a, 0, sizeof a);
        a.flags = flags;
        a.exit_signal = SIGCHLD;
        if (v2 >= 0) {
            a.flags |= NK_CLONE_INTO_CGROUP;
            a.cgroup = (uint64_t)v2;
        }
        long pid = syscall(SYS_clone3, &a, sizeof a);
        if (pid == 0) child(arg, tasks, ntasks);
        err = pid < 0 ? -errno : wait_for((pid_t)pid);
    }
    for (int i = 0; i < ntasks; i++) close(tasks[i]);
    if (v2 >= 0) close(v2);
    while (made > 0) {
        if (rmdir(dirs[--made]) && err == 0) err = -errno;
    }
    return err;
}

struct sandbox_arg {
    const char *stage;
    const struct nk_harden *harden;
};

static void sandbox_entry(const void *arg, const int *tasks, int ntasks) {
    const struct sandbox_arg *a = arg;
    sandbox_child(a->stage, tasks, ntasks, a->harden);
}

long nk_floor_sandbox(const char *stage, const char *const *dirs, int ndirs, const char *const *files,
                      const char *const *values, int nfiles, const struct nk_harden *harden) {
    struct sandbox_arg a = {stage, harden};
    return floor_in_cgroup(dirs, ndirs, files, values, nfiles, CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS,
                           sandbox_entry, &a);
}

/*
 * An OCI runtime's `run` of `runc spec`'s default config with `/bin/true` (the `oci` bench's
 * bundle), as system calls: clone3 into new pid, network, IPC, UTS and mount namespaces and
 * the cgroup (dirs/files: as nk_floor_sandbox), then in the child: "/" recursively slave
 * (runc's default root propagation), the bundle's rootfs bound onto itself, /proc, a tmpfs
 * /dev with devpts, /dev/shm and /dev/mqueue, a read-only /sys, the six standard device
 * nodes made with mknod (as runc does as root) and the /dev/fd, stdin, stdout, stderr and
 * ptmx links, the host name, pivot_root and the old root detached, then `harden` (the
 * config's masked and read-only paths, its three capabilities, no_new_privs; no seccomp), the
 * RLIMIT_NOFILE of the config, and the exec. `nk-floor-run` (floor_run.c) runs it in a
 * process of its own, as an OCI runtime is.
 */
struct oci_arg {
    const char *rootfs;
    const char *hostname;
    const struct nk_harden *harden;
};

static void oci_child(const void *arg, const int *tasks, int ntasks) {
    const struct oci_arg *a = arg;
    static const struct {
        const char *name;
        unsigned major, minor;
    } nodes[] = {{"dev/null", 1, 3}, {"dev/zero", 1, 5}, {"dev/full", 1, 7},
                 {"dev/random", 1, 8}, {"dev/urandom", 1, 9}, {"dev/tty", 5, 0}};
    static const char *const links[][2] = {{"/proc/self/fd", "dev/fd"},        {"/proc/self/fd/0", "dev/stdin"},
                                           {"/proc/self/fd/1", "dev/stdout"}, {"/proc/self/fd/2", "dev/stderr"},
                                           {"pts/ptmx", "dev/ptmx"}};
    char *const argv[] = {"/bin/true", NULL};
    char *const envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", NULL};
    for (int i = 0; i < ntasks; i++)
        if (write(tasks[i], "0", 1) != 1) _exit(119);
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL)) _exit(150);
    if (mount(a->rootfs, a->rootfs, NULL, MS_BIND | MS_REC, NULL) || chdir(a->rootfs)) _exit(151);
    if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) _exit(152);
    if (mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k")) _exit(153);
    if (mkdir("dev/pts", 0755) ||
        mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"))
        _exit(154);
    if (mkdir("dev/shm", 0755) ||
        mount("shm", "dev/shm", "tmpfs", MS_NOSUID | MS_NOEXEC | MS_NODEV, "mode=1777,size=65536k"))
        _exit(155);
    if (mkdir("dev/mqueue", 0755) || mount("mqueue", "dev/mqueue", "mqueue", MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL))
        _exit(156);
    if (mount("sysfs", "sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) _exit(157);
    for (unsigned i = 0; i < sizeof nodes / sizeof nodes[0]; i++)
        if (mknod(nodes[i].name, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor))) _exit(158);
    for (unsigned i = 0; i < sizeof links / sizeof links[0]; i++)
        if (symlink(links[i][0], links[i][1])) _exit(159);
    if (sethostname(a->hostname, strlen(a->hostname))) _exit(160);
    if (syscall(SYS_pivot_root, ".", ".")) _exit(131);
    if (umount2(".", MNT_DETACH) || chdir("/")) _exit(132);
    if (a->harden) harden_child(a->harden);
    struct rlimit nofile = {1024, 1024};
    if (setrlimit(RLIMIT_NOFILE, &nofile)) _exit(161);
    execve(argv[0], argv, envp);
    _exit(133);
}

long nk_floor_oci(const char *rootfs, const char *hostname, const char *const *dirs, int ndirs,
                  const char *const *files, const char *const *values, int nfiles, const struct nk_harden *harden) {
    struct oci_arg a = {rootfs, hostname, harden};
    return floor_in_cgroup(dirs, ndirs, files, values, nfiles,
                           CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNS, oci_child, &a);
}
