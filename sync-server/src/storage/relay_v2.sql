-- The relay's storage, migration 2: which credential owns each actor id. The first token to
-- write under an actor owns it; a change under that actor from any other token is refused
-- (rule "actor", docs/security.md). Actors of changes stored before this migration have no
-- owner until someone writes under them again.

-- The agent names a token may write as (a JSON list of patterns, `*` matching any run of
-- characters); NULL: any name, self-declared (rule "agent", docs/security.md).
ALTER TABLE tokens ADD COLUMN agents TEXT;

CREATE TABLE IF NOT EXISTS actors (
    actor      BLOB PRIMARY KEY,  -- the Automerge actor id
    credential TEXT NOT NULL,     -- the token id that first wrote under it
    bound_at   INTEGER NOT NULL   -- ms since the Unix epoch
);

-- Documents stored before the relay checked changes against the schema are sifted once, when
-- first loaded: what the check refuses (and what builds on it) moves from `changes` into
-- `quarantine`, so the relay never forwards it (docs/schema.md, "What a change may do").
CREATE TABLE IF NOT EXISTS sifted (
    doc BLOB PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS quarantine (
    doc            BLOB    NOT NULL,
    hash           BLOB    NOT NULL,
    agent          TEXT    NOT NULL,
    at             INTEGER NOT NULL,
    rule           TEXT,              -- NULL: it builds on a refused change
    detail         TEXT    NOT NULL,
    bytes          BLOB    NOT NULL,
    quarantined_at INTEGER NOT NULL,
    PRIMARY KEY (doc, hash)
);
