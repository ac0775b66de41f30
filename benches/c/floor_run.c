/*
 * nk-floor-run: the OCI floor (nk_floor_oci in floor.c) in a process of its own, as an OCI
 * runtime's `run` is one: what the `oci` bench's `run_true/c_floor` row launches per run.
 *
 *   nk-floor-run ROOTFS HOSTNAME CAPS LAST_CAP [-d DIR]... [-w FILE VALUE]... [-m DIR]...
 *                [-f FILE]... [-r PATH]...
 *
 * CAPS: the capabilities kept (hexadecimal bit mask); LAST_CAP: /proc/sys/kernel/cap_last_cap.
 * -d: a cgroup directory to make (in order); -w: a cgroup file to write; -m / -f: a masked
 * directory / file; -r: a read-only path. Exits 0 when /bin/true exited 0.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "floor.h"

#define MAX 64

int main(int argc, char **argv) {
    const char *dirs[MAX], *files[MAX], *values[MAX], *mdirs[MAX], *mfiles[MAX], *ro[MAX];
    int nd = 0, nw = 0, nm = 0, nf = 0, nr = 0;
    if (argc < 5) {
        fprintf(stderr, "usage: %s ROOTFS HOSTNAME CAPS LAST_CAP [-d DIR]... [-w FILE VALUE]... [-m DIR]... "
                        "[-f FILE]... [-r PATH]...\n", argv[0]);
        return 2;
    }
    for (int i = 5; i < argc; i++) {
        const char *opt = argv[i];
        if (i + 1 >= argc) goto bad;
        if (!strcmp(opt, "-w")) {
            if (i + 2 >= argc || nw == MAX) goto bad;
            files[nw] = argv[i + 1];
            values[nw++] = argv[i + 2];
            i += 2;
            continue;
        }
        const char **list = !strcmp(opt, "-d") ? dirs : !strcmp(opt, "-m") ? mdirs : !strcmp(opt, "-f") ? mfiles
                          : !strcmp(opt, "-r") ? ro : NULL;
        int *n = list == dirs ? &nd : list == mdirs ? &nm : list == mfiles ? &nf : &nr;
        if (!list || *n == MAX) goto bad;
        list[(*n)++] = argv[++i];
    }
    struct nk_harden h = {mdirs, nm, mfiles, nf, ro, nr, NULL, 0, strtoull(argv[3], NULL, 16), atoi(argv[4])};
    long r = nk_floor_oci(argv[1], argv[2], dirs, nd, files, values, nw, &h);
    if (r != 0) fprintf(stderr, "nk-floor-run: %ld\n", r);
    return r != 0;
bad:
    fprintf(stderr, "nk-floor-run: bad arguments\n");
    return 2;
}
