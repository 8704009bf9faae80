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
  {
    version: 5,
    name: 'segmentation',
    sql: `
      -- sensors: DTLS/DHCP/DNS to the gateway only; management: may reach the UI; protected: reached by no one.
      ALTER TABLE segments ADD COLUMN role TEXT NOT NULL DEFAULT 'sensors'
        CHECK (role IN ('sensors', 'protected', 'management'));
      ALTER TABLE segments ADD COLUMN interface TEXT;

      -- The address the firewall knows the device by (a DHCP reservation or static address), IPv4.
      ALTER TABLE devices ADD COLUMN address TEXT;
      ALTER TABLE devices ADD COLUMN quarantine_mode TEXT CHECK (quarantine_mode IN ('observe', 'isolate'));
      ALTER TABLE devices ADD COLUMN quarantine_reason TEXT;
      ALTER TABLE devices ADD COLUMN quarantined_at TEXT;
      -- The state a release returns the device to.
      ALTER TABLE devices ADD COLUMN state_before_quarantine TEXT;
      CREATE UNIQUE INDEX devices_address ON devices(address) WHERE address IS NOT NULL;

      -- A device's allow-list (from a MUD file or by hand): whom it may open connections to and who may open
      -- connections to it. Entries are JSON (see segmentation/allowlist.ts); replaced whole, never patched.
      CREATE TABLE allowlists (
        device_id TEXT PRIMARY KEY REFERENCES devices(id),
        source TEXT NOT NULL CHECK (source IN ('mud', 'manual')),
        mud_url TEXT,
        manufacturer TEXT,
        entries TEXT NOT NULL,
        created_at TEXT NOT NULL
      ) STRICT;

      -- MUD 'controller' classes (a URI) and the addresses that serve them on this site.
      CREATE TABLE mud_controllers (
        uri TEXT NOT NULL,
        address TEXT NOT NULL,
        PRIMARY KEY (uri, address)
      ) STRICT;

      -- Every ruleset applied or tried: the last 'applied' one is what a failed apply rolls back to.
      CREATE TABLE firewall_rulesets (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        hash TEXT NOT NULL,
        iptables TEXT NOT NULL,
        ipsets TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('applied', 'failed', 'rolled-back')),
        error TEXT,
        actor TEXT NOT NULL,
        created_at TEXT NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 6,
    name: 'behaviour monitoring',
    sql: `
      -- Each device's learned behaviour (the detector's own layout, versioned inside the blob).
      CREATE TABLE anomaly_baselines (
        device_id TEXT PRIMARY KEY,
        state BLOB NOT NULL,
        updated_at TEXT NOT NULL
      ) STRICT;

      -- Automatic rate limits: messages per second a device may send until a time (or a person lifts it).
      CREATE TABLE device_rate_limits (
        device_id TEXT PRIMARY KEY REFERENCES devices(id),
        per_second REAL NOT NULL CHECK (per_second > 0),
        until TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_at TEXT NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 7,
    name: 'technician UI accounts and sessions',
    sql: `
      ALTER TABLE users ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE users ADD COLUMN locked_until TEXT;
      ALTER TABLE users ADD COLUMN totp_enrolled_at TEXT;
      -- The TOTP time step last accepted: a code is good once.
      ALTER TABLE users ADD COLUMN totp_last_step INTEGER;
      -- SHA-256 (hex) of each unused recovery code, JSON.
      ALTER TABLE users ADD COLUMN recovery_codes TEXT;

      -- Only a hash of the session token is stored: a copy of the database does not log anyone in.
      CREATE TABLE ui_sessions (
        token_hash TEXT PRIMARY KEY,
        username TEXT NOT NULL REFERENCES users(username),
        mfa_passed INTEGER NOT NULL DEFAULT 0,
        csrf TEXT NOT NULL,
        created_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        reauth_at TEXT
      ) STRICT;
      CREATE INDEX ui_sessions_user ON ui_sessions(username);

      -- First-boot setup: proof of physical presence (the code on the console and the label), used once.
      CREATE TABLE setup_code (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        code_hash TEXT NOT NULL,
        created_at TEXT NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 8,
    name: 'control API tokens for policy flows',
    sql: `
      -- Tokens the Node-RED nodes present on the control socket; only a hash is stored.
      CREATE TABLE control_tokens (
        name TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        scopes TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        revoked_at TEXT
      ) STRICT;
    `,
  },
  {
    version: 9,
    name: 'device activity series for the UI charts',
    sql: `
      -- One row per device per bucket (15 minutes): what the device page charts. Pruned after 7 days.
      CREATE TABLE device_activity (
        device_id TEXT NOT NULL,
        bucket_start TEXT NOT NULL,
        messages INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        auth_failures INTEGER NOT NULL,
        max_score REAL NOT NULL,
        PRIMARY KEY (device_id, bucket_start)
      ) STRICT, WITHOUT ROWID;
    `,
  },
  {
    version: 10,
    name: 'gateway updates: history and the anti-rollback floor',
    sql: `
      CREATE TABLE update_history (
        id INTEGER PRIMARY KEY,
        version TEXT NOT NULL,
        previous TEXT,
        status TEXT NOT NULL CHECK (status IN ('installed', 'rolled-back', 'refused')),
        actor TEXT NOT NULL,
        error TEXT,
        created_at TEXT NOT NULL
      ) STRICT;
      -- The highest version ever installed and kept: bundles at or below it are refused (anti-rollback).
      CREATE TABLE update_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        highest_version TEXT NOT NULL,
        updated_at TEXT NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 11,
    name: 'sensor firmware: vendor keys, images, campaigns',
    sql: `
      -- The key a vendor signs firmware manifests with, per device class (= device type).
      CREATE TABLE firmware_vendor_keys (
        vendor TEXT NOT NULL,
        device_class TEXT NOT NULL,
        public_key TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (vendor, device_class)
      ) STRICT;
      -- One row per image, stored once under its SHA-256 (firmware/<digest> in the data directory).
      CREATE TABLE firmware_images (
        digest TEXT PRIMARY KEY,
        vendor TEXT NOT NULL,
        device_class TEXT NOT NULL,
        version TEXT NOT NULL,
        size INTEGER NOT NULL,
        severity REAL NOT NULL,
        manifest TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (vendor, device_class, version)
      ) STRICT;
      CREATE TABLE firmware_campaigns (
        id INTEGER PRIMARY KEY,
        image TEXT NOT NULL REFERENCES firmware_images(digest),
        state TEXT NOT NULL CHECK (state IN ('running', 'paused', 'halted', 'completed')),
        settings TEXT NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      ) STRICT;
      CREATE TABLE firmware_campaign_devices (
        campaign_id INTEGER NOT NULL REFERENCES firmware_campaigns(id),
        device_id TEXT NOT NULL,
        stage TEXT NOT NULL CHECK (stage IN ('canary', 'rest')),
        status TEXT NOT NULL CHECK (status IN ('pending', 'notified', 'fetching', 'succeeded', 'failed')),
        from_version TEXT,
        error TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (campaign_id, device_id)
      ) STRICT;
      CREATE INDEX firmware_campaign_devices_device ON firmware_campaign_devices(device_id, status);
    `,
  },
  {
    version: 12,
    name: 'the TPM rollback counter value the update floor was recorded with',
    sql: `
      ALTER TABLE update_state ADD COLUMN counter TEXT;
    `,
  },
  {
    version: 13,
    name: 'keyed audit head, its counter, and signed audit checkpoints',
    sql: `
      -- mac: HMAC over (seq, hash, counter) under a key from the keystore, so the head cannot be set from the
      -- database alone; counter: the keystore's monotonic counter (TPM NV on tpm2) the head was bound to.
      ALTER TABLE audit_head ADD COLUMN mac TEXT;
      ALTER TABLE audit_head ADD COLUMN counter INTEGER;
      -- Statements signed by the gateway identity key that the log reached (seq, hash); exported to the SIEM.
      CREATE TABLE audit_checkpoints (
        id INTEGER PRIMARY KEY,
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL,
        counter INTEGER NOT NULL,
        ts TEXT NOT NULL,
        signature TEXT NOT NULL
      ) STRICT;
      CREATE INDEX audit_checkpoints_seq ON audit_checkpoints(seq);
    `,
  },
  {
    version: 15,
    name: 'revocation lists per trust anchor',
    sql: `
      -- The newest CRL each manufacturer CA published (verified against it before it is stored), and where the
      -- gateway fetches the next one. One row per anchor; the DER is kept whole so it can be verified again.
      CREATE TABLE trust_anchor_crls (
        anchor_name TEXT PRIMARY KEY REFERENCES trust_anchors(name),
        crl_der BLOB,
        this_update TEXT,
        next_update TEXT,
        crl_number TEXT,
        revoked_count INTEGER NOT NULL DEFAULT 0,
        url TEXT,
        refresh_seconds INTEGER CHECK (refresh_seconds IS NULL OR refresh_seconds >= 1),
        updated_at TEXT NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 16,
    name: 'legacy PSKs shorter than 128 bits, admitted only on request, are marked weak',
    sql: `
      ALTER TABLE credentials ADD COLUMN weak INTEGER NOT NULL DEFAULT 0 CHECK (weak IN (0, 1));
    `,
  },
  {
    version: 18,
    name: 'fleet plane: applied desired-state versions, the rotated operator key, the local fleet lock',
    sql: `
      -- Versions only go up per scope (the gateway's own topic, each group): an older or replayed document is
      -- refused even after a restart.
      CREATE TABLE fleet_applied (
        scope TEXT PRIMARY KEY,
        version INTEGER NOT NULL CHECK (version >= 1),
        hash TEXT NOT NULL,
        key_id TEXT NOT NULL,
        applied_at TEXT NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}'
      ) STRICT;
      CREATE TABLE fleet_trust (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        key_spki TEXT NOT NULL,
        key_id TEXT NOT NULL,
        pinned_from TEXT NOT NULL,
        since TEXT NOT NULL
      ) STRICT;
      CREATE TABLE fleet_lock (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        locked_by TEXT NOT NULL,
        locked_at TEXT NOT NULL
      ) STRICT;
      -- The audit stream resumes after the last sequence number the fleet's collector acknowledged.
      CREATE TABLE fleet_streams (
        name TEXT PRIMARY KEY,
        acked_seq INTEGER NOT NULL CHECK (acked_seq >= 0)
      ) STRICT;
    `,
  },
  {
    version: 19,
    name: 'devices take a policy profile and may override its fields (docs/policy.md)',
    sql: `
      -- The profile is named, not copied: editing the profile in the configuration applies to its devices.
      ALTER TABLE devices ADD COLUMN policy_profile TEXT;
      -- JSON object of profile fields that replace the profile's for this device (checked by the policy service).
      ALTER TABLE devices ADD COLUMN policy_overrides TEXT NOT NULL DEFAULT '{}';
    `,
  },
  {
    version: 20,
    name: 'accounts: a password set by an admin must be changed at the next login; sessions remember their address',
    sql: `
      ALTER TABLE users ADD COLUMN password_change_required INTEGER NOT NULL DEFAULT 0
        CHECK (password_change_required IN (0, 1));
      -- Shown on the sessions list (which browser is this?) so a person can revoke the one they do not know.
      ALTER TABLE ui_sessions ADD COLUMN address TEXT;
    `,
  },
  {
    version: 24,
    name: 'fleet plane: policy profiles defined by documents, what each applied document changed, recent refusals',
    sql: `
      -- Profiles a signed document defined (docs/fleet.md); the configuration's own profiles are never in here
      -- and cannot be redefined remotely.
      CREATE TABLE fleet_profiles (
        name TEXT PRIMARY KEY,
        fields TEXT NOT NULL,
        key_id TEXT NOT NULL,
        defined_at TEXT NOT NULL
      ) STRICT;
      -- The fleet page shows what the last document of each scope changed.
      ALTER TABLE fleet_applied ADD COLUMN changes TEXT NOT NULL DEFAULT '{}';
      -- The last refused documents with their reasons (the repository keeps the newest 50).
      CREATE TABLE fleet_refusals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        scope TEXT NOT NULL,
        version INTEGER,
        claimed_key_id TEXT,
        code TEXT NOT NULL,
        reason TEXT NOT NULL,
        at TEXT NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 25,
    name: 'identity_version: a change counter moved only by writes that sessions, the CRL, the firewall and pulls depend on',
    sql: `
      -- The gateway's reviews (sessions, CRL, firewall, pull sources) used PRAGMA data_version, which every
      -- commit of another connection moves — the uplink queue's too once its writes have a connection of their
      -- own (issue 23). Triggers bump this one row instead, in whichever process writes (the CLI's
      -- decommission as well), and only for what the reviews read: not last_seen, the queue, audit or alerts.
      CREATE TABLE identity_version (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL
      ) STRICT;
      INSERT INTO identity_version (id, version) VALUES (1, 0);
      CREATE TRIGGER identity_version_devices_insert AFTER INSERT ON devices
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_devices_delete AFTER DELETE ON devices
        BEGIN UPDATE identity_version SET version = version + 1; END;
      -- Every column but last_seen, first_seen, firmware_version and updated_at (a reading moves last_seen).
      CREATE TRIGGER identity_version_devices_update AFTER UPDATE OF
          id, name, type, credential_kind, segment, state, address, quarantine_mode, quarantine_reason,
          quarantined_at, state_before_quarantine, policy_profile, policy_overrides ON devices
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_credentials_insert AFTER INSERT ON credentials
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_credentials_update AFTER UPDATE ON credentials
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_credentials_delete AFTER DELETE ON credentials
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_trust_anchors_insert AFTER INSERT ON trust_anchors
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_trust_anchors_update AFTER UPDATE ON trust_anchors
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_trust_anchors_delete AFTER DELETE ON trust_anchors
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_trust_anchor_crls_insert AFTER INSERT ON trust_anchor_crls
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_trust_anchor_crls_update AFTER UPDATE ON trust_anchor_crls
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_trust_anchor_crls_delete AFTER DELETE ON trust_anchor_crls
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_device_rate_limits_insert AFTER INSERT ON device_rate_limits
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_device_rate_limits_update AFTER UPDATE ON device_rate_limits
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_device_rate_limits_delete AFTER DELETE ON device_rate_limits
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_pull_sources_insert AFTER INSERT ON pull_sources
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_pull_sources_update AFTER UPDATE ON pull_sources
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_pull_sources_delete AFTER DELETE ON pull_sources
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_segments_insert AFTER INSERT ON segments
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_segments_update AFTER UPDATE ON segments
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_segments_delete AFTER DELETE ON segments
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_allowlists_insert AFTER INSERT ON allowlists
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_allowlists_update AFTER UPDATE ON allowlists
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_allowlists_delete AFTER DELETE ON allowlists
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_mud_controllers_insert AFTER INSERT ON mud_controllers
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_mud_controllers_update AFTER UPDATE ON mud_controllers
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_mud_controllers_delete AFTER DELETE ON mud_controllers
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_fleet_profiles_insert AFTER INSERT ON fleet_profiles
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_fleet_profiles_update AFTER UPDATE ON fleet_profiles
        BEGIN UPDATE identity_version SET version = version + 1; END;
      CREATE TRIGGER identity_version_fleet_profiles_delete AFTER DELETE ON fleet_profiles
        BEGIN UPDATE identity_version SET version = version + 1; END;
    `,
  },
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;
