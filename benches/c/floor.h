/* What floor.c and floor_run.c share: the hardening a floor applies and the OCI floor. */
#ifndef NK_FLOOR_H
#define NK_FLOOR_H

#include <stdint.h>

struct sock_filter;

/*
 * The default hardening of nook-sandbox, as system calls (NULL: none): masked directories
 * (the first gets a read-only empty tmpfs, the others a bind of it), masked files (a bind
 * of /dev/null), read-only paths (a recursive bind onto itself made read-only with
 * mount_setattr), the bounding set cut to `caps` (one PR_CAPBSET_DROP per capability up
 * to `last_cap`), capset to `caps` with nothing inheritable, the ambient set cleared,
 * no_new_privs, and the seccomp program installed last before the exec. A negative
 * `last_cap` leaves out the capability steps and no_new_privs, an empty filter seccomp.
 */
struct nk_harden {
    const char *const *mask_dirs;
    int nmask_dirs;
    const char *const *mask_files;
    int nmask_files;
    const char *const *read_only;
    int nread_only;
    const struct sock_filter *filter;
    int filter_len;
    uint64_t caps;
    int last_cap;
};

long nk_floor_oci(const char *rootfs, const char *hostname, const char *const *dirs, int ndirs,
                  const char *const *files, const char *const *values, int nfiles, const struct nk_harden *harden);

#endif
