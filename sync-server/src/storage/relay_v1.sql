-- The relay's storage, migration 1. Documents as change logs (the same layout a replica's log
-- has, so a relay file from before the relay had a schema of its own converts in place),
-- and access tokens. Nothing is derived: the relay never reads a graph, it only relays it.

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Every document's changes, in arrival order; a change is logged only once its dependencies are.
CREATE TABLE IF NOT EXISTS changes (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    doc   BLOB    NOT NULL,   -- 16-byte automerge-repo document id
    hash  BLOB    NOT NULL,   -- 32-byte change hash
    deps  BLOB    NOT NULL,   -- concatenated 32-byte hashes of the change's dependencies
    agent TEXT    NOT NULL,   -- the writer the change names (for operators reading the file)
    at    INTEGER NOT NULL,   -- change time, ms since the Unix epoch
    bytes BLOB                -- the encoded change; NULL once folded into a snapshot
);
CREATE UNIQUE INDEX IF NOT EXISTS changes_by_hash ON changes (doc, hash);
CREATE INDEX IF NOT EXISTS changes_by_doc ON changes (doc, seq);

-- A saved document holding every change of `doc` up to and including `upto_seq`.
CREATE TABLE IF NOT EXISTS snapshots (
    doc      BLOB PRIMARY KEY,
    upto_seq INTEGER NOT NULL,
    bytes    BLOB    NOT NULL
);

-- Access tokens: only the SHA-256 of each secret is kept.
CREATE TABLE IF NOT EXISTS tokens (
    id         TEXT PRIMARY KEY,
    hash       TEXT NOT NULL,
    graphs     TEXT NOT NULL,     -- JSON list of graph names, or ["*"]
    role       TEXT NOT NULL,     -- read | write
    label      TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);

-- A relay file from before the relay had a schema of its own was a replica file: drop the
-- replica's derived tables, which a relay never filled.
DROP TABLE IF EXISTS entities;
DROP TABLE IF EXISTS observations;
DROP TABLE IF EXISTS relations;
DROP TABLE IF EXISTS search;
DROP TABLE IF EXISTS words;
DROP TABLE IF EXISTS events;
DROP TABLE IF EXISTS cursors;
