DROP TABLE idempotency_keys;
DROP TABLE vendor_accounts;
DROP TABLE enrollments;
DROP TABLE customers;
DROP TABLE partner_accounts;
DROP TABLE api_keys;
DROP TABLE tenants;
