-- Images sent in conversations (customers' photos, agents' screenshots). Kept in the database, the source of
-- truth, so every node of a PostgreSQL deployment serves them; size is capped by the API.
CREATE TABLE attachments (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    content_type TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    data BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX attachments_conversation ON attachments(tenant_id, conversation_id);
