-- Cairn storage, migration 5: full-text merges in fewer, larger steps.
--
-- Every commit adds a small segment to each FTS5 index, and FTS5 merges segments level by
-- level. With its default `automerge = 4`, a level of four segments starts an incremental
-- merge that the following commits carry out, a few hundred pages each: at 100k entities one
-- single write in fifty wrote 360+ pages and took 15-25 ms (BENCHMARKS.md, issue 17). With 16,
-- a level merges when it holds sixteen: fewer levels, so fewer merges over the index's life,
-- and on a 100k graph the p99 of a single durable write fell from ~20 ms to ~2 ms. The price:
-- segments stay unmerged longer, so the file is larger (the 100k bench graph: 232 -> 271 MiB)
-- and a term's look-up reads more of them. The setting lives in the file (each index's
-- `_config` table), so every process writing it merges alike.
INSERT INTO search (search, rank) VALUES ('automerge', 16);
INSERT INTO words (words, rank) VALUES ('automerge', 16);
