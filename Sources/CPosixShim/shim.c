#define _GNU_SOURCE
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include "CPosixShim.h"

int peershare_syncfs(int fd) {
    return syncfs(fd);
}

int peershare_limit_malloc_arenas(int count) {
#if defined(__GLIBC__)
    return mallopt(M_ARENA_MAX, count);
#else
    (void)count;
    return 0;
#endif
}
