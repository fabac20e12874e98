#ifndef PEERSHARE_CSQLITE_SHIM_H
#define PEERSHARE_CSQLITE_SHIM_H
#include <sqlite3.h>

// SQLITE_TRANSIENT is a macro wrapping a function-pointer cast, which Swift cannot import.
static inline sqlite3_destructor_type peershare_sqlite_transient(void) {
    return SQLITE_TRANSIENT;
}
#endif
