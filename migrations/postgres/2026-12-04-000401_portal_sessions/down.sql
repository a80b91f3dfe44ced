DROP TABLE portal_sessions;
DROP TABLE portal_signing_keys;
