-- The relay's storage, migration 2: which credential owns each actor id. The first token to
-- write under an actor owns it; a change under that actor from any other token is refused
-- (rule "actor", docs/security.md). Actors of changes stored before this migration have no
-- owner until someone writes under them again.

CREATE TABLE IF NOT EXISTS actors (
    actor      BLOB PRIMARY KEY,  -- the Automerge actor id
    credential TEXT NOT NULL,     -- the token id that first wrote under it
    bound_at   INTEGER NOT NULL   -- ms since the Unix epoch
);
