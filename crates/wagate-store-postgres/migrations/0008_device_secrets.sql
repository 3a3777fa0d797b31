-- What a device signs in with (a Cloud API number's token, app secret and verify token),
-- sealed by the gateway with a key that is not in this database: the store only keeps the
-- bytes. Apart from `devices` so the secret is never read with the device's settings; gone
-- with the device.
CREATE TABLE device_secrets (
    device_uid TEXT COLLATE "C" PRIMARY KEY REFERENCES devices (uid),
    sealed     BYTEA NOT NULL,
    updated_at BIGINT NOT NULL
);
