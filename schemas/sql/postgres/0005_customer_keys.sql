-- 0005 customer_keys: customers' data keys (crypto-shredding, README "Personal data"). The
-- customer fields of events are stored encrypted under them. Unlike `events`, rows here may
-- be deleted: erasing a customer's data deletes the customer's row, and the events keep their
-- ciphertext and their hashes, so `verify` still passes. No trigger guards this table.

CREATE TABLE customer_keys (
    customer_id text PRIMARY KEY,
    key bytea NOT NULL CHECK (octet_length(key) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE customer_keys IS 'closeloop: customers'' data keys; deleting a row erases that customer''s personal data in the events';
