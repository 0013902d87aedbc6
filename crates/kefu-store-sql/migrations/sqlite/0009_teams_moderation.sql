-- Queues by team (skill): the team a handed-off conversation was routed to (NULL: the general queue), and the
-- teams each staff member works in (a JSON array of names; empty: a generalist).
ALTER TABLE conversations ADD COLUMN team TEXT;
ALTER TABLE staff_users ADD COLUMN teams TEXT NOT NULL DEFAULT '[]';
CREATE INDEX conversations_queue ON conversations(tenant_id, status, handler, team);
-- A tenant's own sensitive-word list (JSON: the list's text and its default action), set through the admin API;
-- it is added to the server's list.
ALTER TABLE tenants ADD COLUMN moderation_config TEXT;
