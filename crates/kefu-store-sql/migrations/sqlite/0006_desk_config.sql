-- A tenant's desk settings (business hours) as JSON text, like model_config.
ALTER TABLE tenants ADD COLUMN desk_config TEXT;
