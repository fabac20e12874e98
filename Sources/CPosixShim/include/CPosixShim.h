#ifndef PEERSHARE_CPOSIXSHIM_H
#define PEERSHARE_CPOSIXSHIM_H

/// syncfs(2) is a GNU extension that Swift's Glibc module does not import; this exposes it.
int peershare_syncfs(int fd);

#endif
