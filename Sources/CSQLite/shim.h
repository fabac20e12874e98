#ifndef PEERSHARE_CSQLITE_SHIM_H
#define PEERSHARE_CSQLITE_SHIM_H
#include <sqlite3.h>

// SQLITE_TRANSIENT is a macro wrapping a function-pointer cast, which Swift cannot import.
static inline sqlite3_destructor_type peershare_sqlite_transient(void) {
    return SQLITE_TRANSIENT;
}

// sqlite3_db_config is variadic, which Swift cannot call. A reader sets this so that closing
// its connection never checkpoints the WAL into the database file (peershare-inspect).
static inline int peershare_sqlite_no_checkpoint_on_close(sqlite3 *db) {
    return sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)0);
}
#endif
