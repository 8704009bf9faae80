import { existsSync, readFileSync } from 'node:fs';
import type { Core } from '../core.ts';

/**
 * `declared`: a property of the code (its tests show it), not something the running gateway can observe; the
 * finding says so and why, so a reader can tell measured answers from claimed ones.
 */
export type Status = 'met' | 'not met' | 'n.a.' | 'declared';

export interface Finding {
  standard: 'ETSI EN 303 645' | 'NIST IR 8259A';
  provision: string;
  title: string;
  status: Status;
  /** What was looked at, from live state. */
  evidence: string[];
}

export interface ComplianceReport {
  generatedAt: string;
  version: string;
  findings: Finding[];
  summary: Record<Status, number>;
}

const etsi = (provision: string, title: string, status: Status, evidence: string[]): Finding => ({
  standard: 'ETSI EN 303 645',
  provision,
  title,
  status,
  evidence,
});
const nist = (provision: string, title: string, status: Status, evidence: string[]): Finding => ({
  standard: 'NIST IR 8259A',
  provision,
  title,
  status,
  evidence,
});

/** What only a look at the running system can tell (the kernel's firewall, the firmware): gathered before assess. */
export interface LiveEvidence {
  /** The ruleset in force in the kernel, read back (SegmentationService.inForce). */
  firewall?: { state: 'in-force' | 'differs' | 'none-applied' | 'unreadable'; detail: string };
  /** UEFI Secure Boot as the firmware reports it; null where there is no EFI. */
  secureBoot?: boolean | null;
}

const SECURE_BOOT_VAR = '/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c';

/** UEFI Secure Boot from its EFI variable (4 attribute bytes, then 1 = on); null without EFI. */
export function secureBootState(path = SECURE_BOOT_VAR): boolean | null {
  try {
    return readFileSync(path)[4] === 1;
  } catch {
    return null;
  }
}

/** Reads what assess needs from outside the database: the kernel's firewall (when enforced) and Secure Boot. */
export async function gatherLiveEvidence(core: Core): Promise<LiveEvidence> {
  return {
    firewall: core.config.firewall.enforce ? await core.segmentation.inForce() : undefined,
    secureBoot: secureBootState(),
  };
}

/** What the findings are computed from: the store now, and what gatherLiveEvidence read. */
function gatherFacts(core: Core, live: LiveEvidence) {
  const { config, store } = core;
  const users = store.users.list();
  const mfa = users.filter((u) => u.totpEnrolledAt).length;
  const argon = users.filter((u) => u.passwordHash.startsWith('$argon2id$')).length;
  const devices = store.devices.list();
  const byState = store.devices.countByState();
  const decommissioned = devices.filter((d) => d.state === 'decommissioned');
  const erased = decommissioned.filter((d) =>
    core.identity.show(d.id).credentials.every((c) => c.erased || c.kind !== 'psk'),
  );
  const audit = core.audit.verify();
  // Identification: every device that may still talk holds at least one credential that is not erased.
  const unidentified = devices
    .filter((d) => d.state !== 'decommissioned')
    .filter((d) => !core.identity.show(d.id).credentials.some((c) => !c.erased))
    .map((d) => d.id);
  const uplink = config.uplink;
  const wildcard = (h: string) => h === '0.0.0.0' || h === '::';
  const lastRuleset = store.rulesets.lastApplied();
  return {
    core,
    live,
    config,
    store,
    users,
    mfa,
    argon,
    devices,
    byState,
    decommissioned,
    erased,
    audit,
    unidentified,
    uplink,
    wildcard,
    lastRuleset,
  };
}

type Facts = ReturnType<typeof gatherFacts>;

function passwordsFinding(f: Facts): Finding {
  const { users, mfa, argon } = f;
  return etsi(
    '5.1',
    'No universal default passwords',
    users.length === 0 || argon === users.length ? 'met' : 'not met',
    [
      users.length === 0
        ? 'no account yet: the first one needs the one-time setup code shown on the console'
        : `${users.length} account(s), ${argon} with argon2id password hashes, ${mfa} with TOTP second factor`,
      'no default account or password exists in the image or the store',
      'failed logins: throttled per address and audited; an account locks after 5 failures, but its owner with password and code from an address without recent failures still gets in',
    ],
  );
}

function disclosureFinding(f: Facts): Finding {
  const { config } = f;
  return etsi(
    '5.2',
    'Means to manage reports of vulnerabilities',
    config.compliance.vulnerabilityDisclosureUrl ? 'met' : 'not met',
    [
      config.compliance.vulnerabilityDisclosureUrl
        ? `disclosure policy: ${config.compliance.vulnerabilityDisclosureUrl}`
        : 'compliance.vulnerabilityDisclosureUrl is not configured',
    ],
  );
}

function updatesFinding(f: Facts): Finding {
  const { core, config } = f;
  const pinned = config.updates.publicKeyFile;
  const lastUpdate = core.store.updates.history(1)[0];
  return etsi('5.3', 'Keep software updated', pinned ? 'met' : 'not met', [
    pinned
      ? `signed gateway updates: release key pinned (${pinned}), A/B install with health check and automatic rollback`
      : 'signed gateway updates are available but no release key is pinned (updates.publicKeyFile): nothing can be installed',
    config.keystore.backend === 'tpm2'
      ? 'anti-rollback: version floor in the database, checked against a TPM NV counter'
      : 'anti-rollback: version floor in the database (no TPM counter with the software keystore)',
    lastUpdate
      ? `last update: ${lastUpdate.version} ${lastUpdate.status} at ${lastUpdate.createdAt}`
      : 'no update applied yet',
    `sensor firmware: ${core.store.firmware.images().length} vendor-signed image(s), ${core.store.firmware.campaigns().length} campaign(s) (canary, halt on failures)`,
  ]);
}

function storageFinding(f: Facts): Finding {
  const { config } = f;
  return etsi(
    '5.4',
    'Securely store sensitive security parameters',
    config.keystore.backend === 'tpm2' ? 'met' : 'not met',
    [
      `keystore backend: ${config.keystore.backend}${config.keystore.backend === 'tpm2' ? ' (data key sealed in the TPM; uplink and identity keys TPM-resident)' : ' (key files mode 0600, not hardware-protected)'}`,
      'sensor PSKs and TOTP secrets are stored wrapped under the data key, never in the clear',
    ],
  );
}

function commsFinding(f: Facts): Finding {
  const { config, store, uplink } = f;
  // uplink.certFile may name a certificate still being signed (the uplink waits for it): only one that is there
  // makes mutual TLS.
  const commsOk = Boolean(uplink?.certFile && existsSync(uplink.certFile));
  // A legacy sensor admitted with a key under 128 bits is a weak link on the sensor side, whatever the uplink.
  const weak = store.credentials.listActiveWeak();
  const commsStatus: Status = weak.length > 0 ? 'not met' : !uplink ? 'n.a.' : commsOk ? 'met' : 'not met';
  return etsi('5.5', 'Communicate securely', commsStatus, [
    'sensors: DTLS 1.2 only (AEAD suites, no plaintext CoAP listener)',
    weak.length > 0
      ? `weak sensor keys: ${weak.length} active PSK(s) under 128 bits (legacy, --allow-weak-psk): ${weak.map((w) => w.deviceId).join(', ')}`
      : 'sensor PSKs: all at least 128 bits',
    uplink
      ? `uplink: ${new URL(uplink.url).protocol}// with ${commsOk ? 'a client certificate (mutual TLS)' : 'no client certificate yet'}`
      : 'uplink not configured',
    `technician UI: HTTPS on ${config.ui.host}:${config.ui.port}`,
  ]);
}

function surfaceFinding(f: Facts): Finding {
  const { live, config, wildcard, lastRuleset } = f;
  // In force means read back from the kernel now, not the config flag: a ruleset that was flushed or never
  // applied leaves the host open whatever the config says.
  const inKernel = live.firewall;
  const surfaceOk = config.firewall.enforce && inKernel?.state === 'in-force' && !wildcard(config.ui.host);
  return etsi('5.6', 'Minimize exposed attack surfaces', surfaceOk ? 'met' : 'not met', [
    !config.firewall.enforce
      ? 'firewall: not enforced (firewall.enforce is off)'
      : inKernel
        ? `firewall: ${inKernel.detail}${lastRuleset && inKernel.state === 'in-force' ? `, applied ${lastRuleset.createdAt}` : ''}`
        : 'firewall: enforced by configuration, but the kernel was not read for this report',
    `UI listens on ${config.ui.host}${wildcard(config.ui.host) ? ' (every interface)' : ''}`,
    `${config.segments.length} segment(s); sensors reach only DTLS, DHCP and DNS on the gateway`,
  ]);
}

function integrityFinding(f: Facts): Finding {
  const { live, audit } = f;
  const secureBoot = live.secureBoot;
  return etsi('5.7', 'Ensure software integrity', secureBoot === true && audit.ok ? 'met' : 'not met', [
    secureBoot === true
      ? 'UEFI Secure Boot is on (read from the firmware): the boot chain is verified'
      : secureBoot === false
        ? 'UEFI Secure Boot is off (read from the firmware): the running release is not verified at boot'
        : 'no UEFI Secure Boot state (no EFI firmware, or not read for this report): the running release is not verified at boot',
    'updates are verified before install (Ed25519 release signature, SHA-256 of every file)',
    `audit log hash chain: ${audit.ok ? `intact (${audit.entries} entries)` : `broken at seq ${audit.firstBadSeq}`}`,
  ]);
}

function resilienceFinding(f: Facts): Finding {
  const { config, store, uplink } = f;
  return etsi(
    '5.9',
    'Make systems resilient to outages',
    config.store.synchronous === 'full' ? 'met' : 'not met',
    [
      `store synchronous=${config.store.synchronous}`,
      uplink
        ? `uplink queue: durable, ${store.queue.depth()} message(s) waiting; up to ${uplink.queue.maxMessages} kept during outages`
        : `uplink queue: durable, ${store.queue.depth()} message(s) waiting; no uplink configured yet (nothing leaves the gateway)`,
    ],
  );
}

function telemetryFinding(f: Facts): Finding {
  const { config, store } = f;
  return etsi('5.10', 'Examine system telemetry data', config.anomaly.enabled ? 'met' : 'not met', [
    `behaviour monitoring ${config.anomaly.enabled ? 'on' : 'off'}; ${store.alerts.list({ open: true }).length} open alert(s)`,
  ]);
}

function deletionFinding(f: Facts): Finding {
  const { decommissioned, erased } = f;
  return etsi(
    '5.11',
    'Make it easy for users to delete user data',
    erased.length === decommissioned.length ? 'met' : 'not met',
    [
      `decommission revokes and crypto-erases credentials: ${decommissioned.length} decommissioned device(s), ${erased.length} fully erased`,
    ],
  );
}

function inputFinding(): Finding {
  return etsi('5.13', 'Validate input data', 'declared', [
    'declared, not measured: input validation is a property of the code, which the running gateway cannot observe; its test suite shows it',
    'configuration, API bodies, MUD files and replay events are schema-validated (zod) and refused whole when invalid',
    'the DTLS/CoAP parser is fuzzed in the test suite (100,000 mutated handshakes)',
  ]);
}

/**
 * A self-assessment of the running configuration and store against ETSI EN 303 645 and NIST IR 8259A. Every
 * status is computed from live state (`live`: what gatherLiveEvidence read from the kernel and firmware), or is
 * `declared` with its reason; where Portcullis does not do what a provision asks, it says "not met".
 */
export function assess(core: Core, live: LiveEvidence = {}): ComplianceReport {
  const f = gatherFacts(core, live);
  const { users, mfa, devices, byState, unidentified, config, audit } = f;
  const passwords = passwordsFinding(f);
  const disclosure = disclosureFinding(f);
  const updates = updatesFinding(f);
  const storage = storageFinding(f);
  const comms = commsFinding(f);
  const surface = surfaceFinding(f);
  const integrity = integrityFinding(f);
  const resilience = resilienceFinding(f);
  const telemetry = telemetryFinding(f);
  const deletion = deletionFinding(f);
  const input = inputFinding();
  const surfaceOk = surface.status === 'met';
  const findings: Finding[] = [
    passwords,
    disclosure,
    updates,
    storage,
    comms,
    surface,
    integrity,
    resilience,
    telemetry,
    deletion,
    input,
    nist('1', 'Device identification', unidentified.length === 0 ? 'met' : 'not met', [
      unidentified.length === 0
        ? `${devices.length} device(s); every one not decommissioned holds a credential of its own (PSK, certificate or raw public key)`
        : `${unidentified.length} device(s) not decommissioned without a usable credential: ${unidentified.slice(0, 10).join(', ')}`,
      `states: ${Object.entries(byState)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    ]),
    nist('2', 'Device configuration', users.length > 0 ? 'met' : 'not met', [
      `configuration validated at start; changed only by ${users.length} authorised account(s) and the console`,
    ]),
    nist('3', 'Data protection', storage.status === 'met' && comms.status !== 'not met' ? 'met' : 'not met', [
      ...storage.evidence.slice(0, 1),
      ...comms.evidence.slice(0, 3),
    ]),
    nist(
      '4',
      'Logical access to interfaces',
      users.length > 0 && mfa === users.length && surfaceOk ? 'met' : 'not met',
      [
        `${mfa} of ${users.length} account(s) with MFA; roles admin/technician/auditor enforced server-side`,
        ...surface.evidence.slice(0, 1),
      ],
    ),
    nist('5', 'Software update', updates.status, updates.evidence),
    nist('6', 'Cybersecurity state awareness', audit.ok && config.anomaly.enabled ? 'met' : 'not met', [
      ...integrity.evidence.slice(1),
      ...telemetry.evidence,
    ]),
  ];
  const summary: Record<Status, number> = { met: 0, 'not met': 0, 'n.a.': 0, declared: 0 };
  for (const finding of findings) summary[finding.status]++;
  return {
    generatedAt: new Date(core.clock.now()).toISOString(),
    version: core.status().version,
    findings,
    summary,
  };
}

const htmlEscape = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** A self-contained, printable HTML report (no scripts, no external resources). */
export function toHtml(r: ComplianceReport): string {
  const rows = r.findings
    .map(
      (f) =>
        `<tr class="${f.status.replace(/\W/g, '')}"><td>${htmlEscape(f.standard)} ${htmlEscape(f.provision)}</td><td>${htmlEscape(f.title)}</td><td>${htmlEscape(f.status)}</td><td><ul>${f.evidence.map((e) => `<li>${htmlEscape(e)}</li>`).join('')}</ul></td></tr>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Portcullis compliance self-assessment</title>
<style>body{font:14px/1.4 sans-serif;margin:2em}table{border-collapse:collapse;width:100%}td,th{border:1px solid #999;padding:.4em;vertical-align:top;text-align:left}.met td:nth-child(3){color:#064}.notmet td:nth-child(3){color:#900;font-weight:bold}@media print{body{margin:0}}</style>
</head><body>
<h1>Portcullis compliance self-assessment</h1>
<p>Version ${htmlEscape(r.version)}, generated ${htmlEscape(r.generatedAt)} from the running configuration. Met: ${r.summary.met}, not met: ${r.summary['not met']}, not applicable: ${r.summary['n.a.']}, declared (not measurable at run time): ${r.summary.declared}.</p>
<table><thead><tr><th>Provision</th><th>Title</th><th>Status</th><th>Evidence</th></tr></thead><tbody>
${rows}
</tbody></table></body></html>
`;
}

export function toText(r: ComplianceReport): string {
  const lines = r.findings.map(
    (f) =>
      `${`${f.standard} ${f.provision}`.padEnd(22)} ${f.status.padEnd(8)} ${f.title}\n${f.evidence.map((e) => `${' '.repeat(32)}${e}`).join('\n')}`,
  );
  return `${lines.join('\n')}\nmet ${r.summary.met}, not met ${r.summary['not met']}, n.a. ${r.summary['n.a.']}, declared ${r.summary.declared}`;
}
