-- Schema version 8: a shared folder as one swarm (issue 19, docs/PROTOCOL.md "Folders").

-- What the manifest describes: one file, or a folder whose entries follow. For a folder,
-- file_name is the folder's name, file_size the files' total, file_sha256 the content
-- hash (the files' bytes concatenated in manifest order).
ALTER TABLE manifest ADD COLUMN kind TEXT NOT NULL DEFAULT 'file' CHECK (kind IN ('file', 'folder'));

-- A folder's entries in manifest order: every regular file (empty ones included) and every
-- empty folder. Paths are relative, NFC, components joined by '/', each checked before it
-- was stored (docs/PROTOCOL.md). A file's chunks are first_chunk .. first_chunk + n - 1,
-- where n is its size in chunks; empty files and folders have none.
CREATE TABLE folder_entries (
    position    INTEGER PRIMARY KEY CHECK (position >= 0),
    path        TEXT    NOT NULL UNIQUE,
    is_folder   INTEGER NOT NULL CHECK (is_folder IN (0, 1)),
    size        INTEGER NOT NULL CHECK (size >= 0 AND (is_folder = 0 OR size = 0)),
    executable  INTEGER NOT NULL CHECK (executable IN (0, 1)),
    first_chunk INTEGER CHECK (first_chunk >= 0)
);
