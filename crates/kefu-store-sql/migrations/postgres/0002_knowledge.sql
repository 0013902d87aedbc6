-- Knowledge base: documents, chunks, vectors, the change log search indexes follow, import jobs.
CREATE TABLE kb_documents (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    collection TEXT NOT NULL,
    source TEXT NOT NULL,
    title TEXT NOT NULL,
    format TEXT NOT NULL,
    lang TEXT NOT NULL,
    tags TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    chunk_count BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, collection, source)
);
CREATE INDEX kb_documents_tenant ON kb_documents(tenant_id, updated_at);

CREATE TABLE kb_chunks (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    document_id TEXT NOT NULL REFERENCES kb_documents(id) ON DELETE CASCADE,
    ord BIGINT NOT NULL,
    headings TEXT NOT NULL,
    text TEXT NOT NULL,
    location TEXT NOT NULL,
    lang TEXT NOT NULL,
    tags TEXT NOT NULL,
    tokens BIGINT NOT NULL,
    content_hash TEXT NOT NULL,
    faq TEXT
);
CREATE INDEX kb_chunks_document ON kb_chunks(document_id, ord);

-- Vectors per chunk and embedding model: n × dim little-endian f32 (chunk vector, then FAQ questions).
CREATE TABLE kb_vectors (
    chunk_id TEXT NOT NULL REFERENCES kb_chunks(id) ON DELETE CASCADE,
    model TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (chunk_id, model)
);

-- The change log. kb_log_head's single row is updated in every writing transaction: it serialises writers, so
-- seq order is commit order and a follower that has applied seq N has seen every change before it.
CREATE TABLE kb_log_head (id INTEGER PRIMARY KEY NOT NULL, seq BIGINT NOT NULL);
INSERT INTO kb_log_head (id, seq) VALUES (1, 0);
CREATE TABLE kb_changes (
    seq BIGINT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    document_id TEXT NOT NULL,
    op TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE kb_jobs (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    status TEXT NOT NULL,
    total BIGINT NOT NULL,
    done BIGINT NOT NULL,
    report TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
