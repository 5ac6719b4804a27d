-- The relay's storage in PostgreSQL, migration 1: what several relay nodes share. Documents as
-- change logs, access tokens and actor bindings (the SQLite relay's `relay_v1.sql` and
-- `relay_v2.sql`, in one step). Nothing is derived: a relay never reads a graph.

-- One row per document: `version` counts the transactions that added changes to it. The row is
-- locked by each writer until it commits, so a document's versions become visible in order: a
-- node that holds every change up to version v loads exactly what it lacks with `version > v`.
CREATE TABLE IF NOT EXISTS cairn_docs (
    doc     BYTEA  PRIMARY KEY,   -- 16-byte automerge-repo document id
    version BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS cairn_changes (
    seq     BIGSERIAL PRIMARY KEY,
    doc     BYTEA  NOT NULL,      -- 16-byte automerge-repo document id
    version BIGINT NOT NULL,      -- the document's version that added it
    hash    BYTEA  NOT NULL,      -- 32-byte change hash
    deps    BYTEA  NOT NULL,      -- concatenated 32-byte hashes of the change's dependencies
    agent   TEXT   NOT NULL,      -- the writer the change names (for operators)
    at      BIGINT NOT NULL,      -- change time, ms since the Unix epoch
    bytes   BYTEA  NOT NULL,      -- the encoded change
    UNIQUE (doc, hash)
);
CREATE INDEX IF NOT EXISTS cairn_changes_by_version ON cairn_changes (doc, version);

-- Access tokens: only the SHA-256 of each secret is kept.
CREATE TABLE IF NOT EXISTS cairn_tokens (
    id         TEXT PRIMARY KEY,
    hash       TEXT   NOT NULL,
    graphs     TEXT   NOT NULL,   -- JSON list of graph names, or ["*"]
    role       TEXT   NOT NULL,   -- read | write
    label      TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    agents     TEXT               -- JSON list of agent-name patterns; NULL: any
);

-- Which credential owns each actor id (rule "actor", docs/security.md).
CREATE TABLE IF NOT EXISTS cairn_actors (
    actor      BYTEA  PRIMARY KEY,
    credential TEXT   NOT NULL,
    bound_at   BIGINT NOT NULL
);
