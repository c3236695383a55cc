-- guestauth schema 7: reserved for the passkeys branch (issue 19), which
-- merges its own 0007 in place of this file. Changes nothing.
SELECT 1;
