#define _GNU_SOURCE
#include <unistd.h>
#include "CPosixShim.h"

int peershare_syncfs(int fd) {
    return syncfs(fd);
}
