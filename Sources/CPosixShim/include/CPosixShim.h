#ifndef PEERSHARE_CPOSIXSHIM_H
#define PEERSHARE_CPOSIXSHIM_H

/// syncfs(2) is a GNU extension that Swift's Glibc module does not import; this exposes it.
int peershare_syncfs(int fd);

/// mallopt(M_ARENA_MAX, count) on glibc (a no-op returning 0 elsewhere): glibc gives each
/// thread that contends for malloc its own arena, and chunk buffers allocated on one
/// thread and freed on another leave each arena holding freed memory. Returns 1 on success.
int peershare_limit_malloc_arenas(int count);

#endif
