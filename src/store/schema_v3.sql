-- Cairn storage, migration 3: the quarantine.
--
-- Since version 3 every change from outside is checked against the schema before it is
-- stored (`src/integrity/`). A file written before then may already hold changes the check
-- refuses (from a relay or a bundle that let them through). Each graph of such a file is
-- sifted once when a replica first opens it: what the check refuses, and what builds on it,
-- moves from `changes` into this table (bytes kept, so nothing is destroyed), its events go,
-- and the graph's index is rebuilt from what is left. Reads never see it again;
-- `cairn check` lists it.
CREATE TABLE IF NOT EXISTS quarantine (
    doc            BLOB    NOT NULL,   -- 16-byte document id
    hash           BLOB    NOT NULL,   -- 32-byte change hash
    seq            INTEGER NOT NULL,   -- its position in the log it was taken out of
    agent          TEXT    NOT NULL,   -- the writer the change names
    at             INTEGER NOT NULL,   -- change time, ms since the Unix epoch
    rule           TEXT,               -- the rule it broke; NULL: it builds on a refused change
    detail         TEXT    NOT NULL,
    bytes          BLOB    NOT NULL,   -- the encoded change
    quarantined_at INTEGER NOT NULL,
    PRIMARY KEY (doc, hash)
);
