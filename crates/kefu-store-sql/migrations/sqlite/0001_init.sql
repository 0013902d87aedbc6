-- Foundation schema. Ids are UUID text, times are epoch milliseconds, JSON is text: the same column types on
-- SQLite and PostgreSQL so one set of queries serves both backends.
CREATE TABLE tenants (
    id TEXT PRIMARY KEY NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    customer_secret TEXT NOT NULL,
    model_config TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    revoked BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);
CREATE INDEX api_keys_tenant ON api_keys(tenant_id);

CREATE TABLE staff_users (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    email TEXT NOT NULL,
    display_name TEXT,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, email)
);

CREATE TABLE customers (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    external_id TEXT,
    display_name TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, external_id)
);

CREATE TABLE conversations (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    customer_id TEXT NOT NULL REFERENCES customers(id),
    channel TEXT NOT NULL,
    status TEXT NOT NULL,
    flagged BOOLEAN NOT NULL DEFAULT FALSE,
    subject TEXT,
    metadata TEXT NOT NULL,
    last_seq BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    closed_at BIGINT
);
CREATE INDEX conversations_tenant ON conversations(tenant_id, created_at);

CREATE TABLE messages (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    seq BIGINT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    idempotency_key TEXT,
    reply_to_seq BIGINT,
    model TEXT,
    prompt_tokens BIGINT,
    completion_tokens BIGINT,
    latency_ms BIGINT,
    fallback BOOLEAN NOT NULL DEFAULT FALSE,
    reply_pending BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    UNIQUE (conversation_id, seq),
    UNIQUE (conversation_id, idempotency_key)
);
CREATE INDEX messages_pending ON messages(created_at) WHERE reply_pending;
CREATE INDEX messages_reply ON messages(conversation_id, reply_to_seq);

CREATE TABLE conversation_events (
    tenant_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
