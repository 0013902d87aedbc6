-- A tenant's trained intent classifiers, numbered per tenant and kept in the database (the source of truth), so
-- every node serves the same model; `tenants.intent_model` is the version in use (NULL: none).
CREATE TABLE intent_models (
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    version INTEGER NOT NULL,
    info TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    data BLOB NOT NULL,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, version)
);
ALTER TABLE tenants ADD COLUMN intent_model INTEGER;
