-- Unfiled messages of a contact are found through their reply jobs, waiting
-- in the contact's queue (the live-queue index). Indexed by contact, every
-- webhook wrote a leaf of this index at a random place, and under a backlog
-- (every message unfiled) it grew with the backlog: on SQLite, a page
-- written per webhook at each ingest commit.
DROP INDEX messages_unfiled;
