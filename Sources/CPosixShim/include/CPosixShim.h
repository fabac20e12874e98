#ifndef PEERSHARE_CPOSIXSHIM_H
#define PEERSHARE_CPOSIXSHIM_H

#include <stddef.h>

/// syncfs(2) is a GNU extension that Swift's Glibc module does not import; this exposes it.
int peershare_syncfs(int fd);

/// Starts writeback of a file's byte range without waiting for it (Linux
/// sync_file_range with SYNC_FILE_RANGE_WRITE; a no-op returning 0 elsewhere). It makes no
/// promise of durability: an fsync is still needed. It spreads the disk writes of a file
/// that grows over minutes instead of leaving them all to that final fsync.
int peershare_start_writeback(int fd, long long offset, long long length);

/// Turns direct I/O (O_DIRECT: writes go from the caller's buffer to the disk, bypassing
/// the page cache) on or off for an open file. Returns 0 on success, -1 where the file
/// system or the platform does not support it (every platform but Linux). Direct writes
/// need buffers, sizes and offsets aligned to `PEERSHARE_DIRECT_IO_ALIGNMENT`.
int peershare_set_direct_io(int fd, int on);

/// The alignment direct I/O needs here: 4096 bytes covers the logical block size of every
/// disk and file system Linux runs PeerShare on.
#define PEERSHARE_DIRECT_IO_ALIGNMENT 4096

/// mallopt(M_ARENA_MAX, count) on glibc (a no-op returning 0 elsewhere): glibc gives each
/// thread that contends for malloc its own arena, and chunk buffers allocated on one
/// thread and freed on another leave each arena holding freed memory. Returns 1 on success.
int peershare_limit_malloc_arenas(int count);

/// Opens a pseudo-terminal pair (posix_openpt, grantpt, unlockpt, ptsname_r: X/Open calls
/// the Glibc module does not import). Returns the master's descriptor and writes the
/// slave's path into `name`; -1 on failure. The tests use it to give a child a terminal.
int peershare_open_pty(char *name, size_t length);

#endif
