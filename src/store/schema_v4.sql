-- Cairn storage, migration 4: the supersede link in the derived index.
--
-- A fact record may name the fact it replaced (`replaces`, docs/schema.md, "The supersede
-- link"). The index keeps it beside each observation (the old text, same entity) and relation
-- (the old `[from, type, to]` as the JSON array serde_json writes), so that reads can tell a
-- superseded fact from an expired one, report concurrent supersedes of one fact as a conflict,
-- and a write can refuse to supersede a fact twice. Files written before hold no links: no
-- record written before this version has one (readers ignored the field), so nothing is
-- rebuilt.
ALTER TABLE observations ADD COLUMN replaces TEXT;
ALTER TABLE relations ADD COLUMN replaces TEXT;
CREATE INDEX observations_by_replaces ON observations (graph, entity, replaces) WHERE replaces IS NOT NULL;
CREATE INDEX relations_by_replaces ON relations (graph, replaces) WHERE replaces IS NOT NULL;
