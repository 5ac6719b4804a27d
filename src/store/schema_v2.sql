-- Cairn storage, migration 2: word search beside substring search.
--
-- `words` holds the same rows as `search` (same rowids), split into words: names, types and
-- observations as unicode61 tokens, runs of letters and digits (so "@alice", "tea." and
-- "well-known" hold the words alice, tea, well and known). A word index looks a term up in a few short posting
-- lists where the trigram index has to intersect long ones: at 100k entities, milliseconds
-- against tens of milliseconds. Search asks it first (terms at the start of a word) and falls
-- back to the trigram index (terms anywhere) only when no entity matches at a word start.
-- Search only ever asks it for single words and word prefixes, never phrases, so it keeps no
-- positions (`detail = none`), and no prefix indexes: both would cost every write (measured:
-- batch import 30k → 24k facts/s with them) for queries that do not need them.
CREATE VIRTUAL TABLE words USING fts5 (
    graph UNINDEXED, entity UNINDEXED, text,
    tokenize = "unicode61 remove_diacritics 0",
    detail = none
);
INSERT INTO words (rowid, graph, entity, text) SELECT rowid, graph, entity, text FROM search;
