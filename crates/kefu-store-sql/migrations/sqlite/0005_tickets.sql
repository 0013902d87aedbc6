-- Tickets: numbered per tenant, with a status workflow and SLA clock (see kefu-store's tickets.rs), and notes
-- (internal, or replies the customer sees). `version` makes concurrent updates safe without row locks.
CREATE TABLE tickets (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    number BIGINT NOT NULL,
    conversation_id TEXT,
    customer_id TEXT,
    subject TEXT NOT NULL,
    description TEXT NOT NULL,
    department TEXT,
    priority TEXT NOT NULL,
    status TEXT NOT NULL,
    source TEXT NOT NULL,
    created_by TEXT,
    assignee_id TEXT,
    external_ref TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    first_response_due_at BIGINT NOT NULL,
    resolution_due_at BIGINT NOT NULL,
    first_responded_at BIGINT,
    resolved_at BIGINT,
    paused_ms BIGINT NOT NULL DEFAULT 0,
    paused_since BIGINT,
    version BIGINT NOT NULL DEFAULT 0,
    UNIQUE (tenant_id, number)
);
CREATE INDEX tickets_tenant ON tickets(tenant_id, status, created_at);
CREATE INDEX tickets_conversation ON tickets(tenant_id, conversation_id);

CREATE TABLE ticket_notes (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    ticket_id TEXT NOT NULL REFERENCES tickets(id),
    author_id TEXT,
    body TEXT NOT NULL,
    internal BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX ticket_notes_ticket ON ticket_notes(ticket_id, created_at);
