/**
 * Numbered, forward-only migrations. Never edit one that has shipped: add the next number instead.
 * Each runs in its own transaction together with the `user_version` bump.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
      CREATE TABLE segments (
        name TEXT PRIMARY KEY,
        vlan_id INTEGER CHECK (vlan_id IS NULL OR vlan_id BETWEEN 1 AND 4094),
        parent_interface TEXT,
        subnet TEXT,
        gateway_address TEXT,
        default_policy TEXT NOT NULL DEFAULT 'deny' CHECK (default_policy IN ('deny', 'allow')),
        created_at TEXT NOT NULL
      ) STRICT;

      CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        name TEXT,
        type TEXT,
        credential_kind TEXT NOT NULL CHECK (credential_kind IN ('psk', 'x509', 'rpk')),
        segment TEXT REFERENCES segments(name),
        state TEXT NOT NULL CHECK (state IN ('pending', 'active', 'quarantined', 'decommissioned')),
        first_seen TEXT,
        last_seen TEXT,
        firmware_version TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      ) STRICT;

      -- lookup: the PSK identity, or the SHA-256 fingerprint of a certificate / raw public key.
      -- secret_wrapped: the secret encrypted under the keystore's data key; erased on decommission.
      CREATE TABLE credentials (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL REFERENCES devices(id),
        kind TEXT NOT NULL CHECK (kind IN ('psk', 'x509', 'rpk')),
        lookup TEXT NOT NULL,
        secret_wrapped BLOB,
        created_at TEXT NOT NULL,
        revoked_at TEXT,
        UNIQUE (kind, lookup)
      ) STRICT;
      CREATE INDEX credentials_device ON credentials(device_id);

      CREATE TABLE users (
        username TEXT PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('admin', 'technician', 'auditor')),
        password_hash TEXT NOT NULL,
        totp_secret_wrapped BLOB,
        created_at TEXT NOT NULL,
        disabled_at TEXT
      ) STRICT;

      CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        device_id TEXT,
        severity TEXT NOT NULL CHECK (severity IN ('low', 'medium', 'high')),
        kind TEXT NOT NULL,
        explanation TEXT NOT NULL,
        evidence TEXT NOT NULL,
        dedupe_key TEXT NOT NULL,
        count INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        acknowledged_by TEXT,
        acknowledged_at TEXT
      ) STRICT;
      CREATE INDEX alerts_open ON alerts(dedupe_key) WHERE acknowledged_at IS NULL;

      CREATE TABLE uplink_queue (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        device_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        properties TEXT NOT NULL,
        enqueued_at TEXT NOT NULL
      ) STRICT;
      CREATE INDEX uplink_queue_device ON uplink_queue(device_id, id);

      CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
      ) STRICT;
      -- The head lets verification notice a truncated tail, which the chain alone cannot show.
      CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL
      ) STRICT;
      -- Append-only at the engine level, so no code path can rewrite history by accident.
      CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
      CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
    `,
  },
  {
    version: 2,
    name: 'trust anchors for certificate devices',
    sql: `
      -- Manufacturer CAs: a sensor chaining to one of these becomes a pending device on first contact.
      CREATE TABLE trust_anchors (
        name TEXT PRIMARY KEY,
        certificate_pem TEXT NOT NULL,
        fingerprint TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 3,
    name: 'downlink queue',
    sql: `
      -- Commands from the cloud waiting for their device's next message (delivered in its CoAP response).
      CREATE TABLE downlink_queue (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        device_id TEXT NOT NULL,
        payload BLOB NOT NULL,
        content_format INTEGER,
        received_at TEXT NOT NULL
      ) STRICT;
      CREATE INDEX downlink_queue_device ON downlink_queue(device_id, id);
    `,
  },
  {
    version: 4,
    name: 'pull-mode sensors',
    sql: `
      -- Sensors that are CoAP servers: the gateway is the DTLS client and polls this resource.
      CREATE TABLE pull_sources (
        device_id TEXT PRIMARY KEY REFERENCES devices(id),
        url TEXT NOT NULL,
        -- The identity the gateway presents to this sensor (sensors often all expect the same one).
        psk_identity TEXT NOT NULL,
        interval_seconds INTEGER NOT NULL CHECK (interval_seconds >= 1),
        created_at TEXT NOT NULL
      ) STRICT;
    `,
  },
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;
