-- Cairn storage, migration 1. Ground truth: `changes` + `snapshots`. Everything else is derived
-- from them and rebuilt by `Replica::reindex`.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- The append-only change log of every document in the file. `seq` orders changes by arrival in
-- this file; a change is logged only once all its dependencies are, so every prefix of the log is
-- causally closed. Compaction folds old changes into `snapshots` and clears their `bytes`, but
-- keeps the row (hash, deps, agent, time) so that versions and history stay answerable.
CREATE TABLE changes (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    doc   BLOB    NOT NULL,   -- 16-byte automerge-repo document id
    hash  BLOB    NOT NULL,   -- 32-byte change hash
    deps  BLOB    NOT NULL,   -- concatenated 32-byte hashes of the change's dependencies
    agent TEXT    NOT NULL,
    at    INTEGER NOT NULL,   -- change time, ms since the Unix epoch
    bytes BLOB                -- the encoded change; NULL once folded into a snapshot
);
CREATE UNIQUE INDEX changes_by_hash ON changes (doc, hash);
CREATE INDEX changes_by_doc ON changes (doc, seq);

-- A saved document holding every change of `doc` up to and including `upto_seq`.
CREATE TABLE snapshots (
    doc      BLOB PRIMARY KEY,
    upto_seq INTEGER NOT NULL,
    bytes    BLOB    NOT NULL
);

-- Derived: one row per visible entity of a graph.
CREATE TABLE entities (
    id         INTEGER PRIMARY KEY,
    graph      TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    type       TEXT    NOT NULL,
    has_record INTEGER NOT NULL,  -- 0 when only concurrent additions kept a deleted entity alive
    created_by TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    conflicts  TEXT,              -- JSON list of losing concurrent types, NULL if none
    fts        INTEGER,           -- rowid of the entity's name-and-type row in `search`
    UNIQUE (graph, name)
);

-- Derived: observations and relations, one row per present key.
CREATE TABLE observations (
    graph      TEXT    NOT NULL,
    entity     TEXT    NOT NULL,
    text       TEXT    NOT NULL,
    by         TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    valid_from INTEGER,
    valid_to   INTEGER,
    ord        INTEGER NOT NULL DEFAULT 0, -- position within the write that recorded it
    fts        INTEGER,           -- rowid of the observation's row in `search`
    PRIMARY KEY (graph, entity, text)
) WITHOUT ROWID;

CREATE TABLE relations (
    graph      TEXT    NOT NULL,
    src        TEXT    NOT NULL,
    rtype      TEXT    NOT NULL,
    dst        TEXT    NOT NULL,
    by         TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    valid_from INTEGER,
    valid_to   INTEGER,
    PRIMARY KEY (graph, src, rtype, dst)
) WITHOUT ROWID;
CREATE INDEX relations_by_dst ON relations (graph, dst);

-- Derived: full-text search. One row per entity (its name and type) and one per observation,
-- so that adding an observation indexes that observation alone. The trigram tokenizer gives the
-- reference memory server's case-insensitive substring matching, ranked by BM25.
CREATE VIRTUAL TABLE search USING fts5 (
    graph UNINDEXED, entity UNINDEXED, text,
    tokenize = 'trigram case_sensitive 0'
);

-- Derived: entity-level history, one row per (change, entity) it touched.
CREATE TABLE events (
    id     INTEGER PRIMARY KEY,
    seq    INTEGER NOT NULL,     -- changes.seq
    graph  TEXT    NOT NULL,
    entity TEXT    NOT NULL,
    what   TEXT    NOT NULL,     -- JSON of model::What
    agent  TEXT    NOT NULL,
    at     INTEGER NOT NULL
);
CREATE INDEX events_by_entity ON events (graph, entity, seq);
CREATE INDEX events_by_seq ON events (graph, seq);

-- Per agent: the log position of its previous read, to report what it has not seen.
CREATE TABLE cursors (
    graph TEXT    NOT NULL,
    agent TEXT    NOT NULL,
    seq   INTEGER NOT NULL,
    PRIMARY KEY (graph, agent)
) WITHOUT ROWID;
