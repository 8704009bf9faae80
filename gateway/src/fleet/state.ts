/**
 * The gateway's presence and reported state documents (docs/fleet.md). Built from the same services the UI and
 * the CLI read; the audit head is the newest signed checkpoint (gateway/src/audit), so an outside party holds a
 * head the gateway cannot later deny.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import type { AuditCheckpoint } from '../audit/index.ts';
import { assess } from '../compliance/index.ts';
import type { Core } from '../core.ts';
import type { UplinkStatus } from '../uplink/index.ts';
import { VERSION } from '../version.ts';

export const STATUS_FORMAT = 'portcullis-status/1';
export const STATE_FORMAT = 'portcullis-state/1';
/** Above this many bytes of JSON the device list is sent gzipped (base64): a site of 1,000 sensors. */
export const DEVICE_LIST_GZIP_BYTES = 32 * 1024;

export interface PresenceDocument {
  format: typeof STATUS_FORMAT;
  online: boolean;
  version: string;
  /** Online: since when. Offline (the Will): when the session that ended began; (a clean stop): when it stopped. */
  since: string;
  cause: 'birth' | 'will' | 'stopped';
}

export function presence(online: boolean, since: number, cause: PresenceDocument['cause']): PresenceDocument {
  return { format: STATUS_FORMAT, online, version: VERSION, since: new Date(since).toISOString(), cause };
}

export interface DeviceSummary {
  id: string;
  state: string;
  credentialKind: string;
  firmwareVersion: string | null;
  segment: string | null;
  lastSeen: string | null;
  name: string | null;
  type: string | null;
}

export interface StateDocument {
  format: typeof STATE_FORMAT;
  prefix: string;
  version: string;
  publishedAt: string;
  keystore: { backend: string; hardwareBacked: boolean };
  uplink: { state: string; queueDepth: number; dropped: number; refused: number } | null;
  firewall: { enforce: boolean; inForce: string | null };
  devices: {
    count: number;
    byState: Record<string, number>;
    /** Either the list, or (when large) `listGzip`: base64 of gzip(JSON of the list). */
    list?: DeviceSummary[];
    listGzip?: string;
  };
  compliance: { met: number; notMet: number; notApplicable: number; notMetProvisions: string[] };
  alerts: { open: number; high: number };
  certificates: Array<{ name: string; notAfter: string }>;
  /** The newest signed audit checkpoint: ECDSA P-256 by the identity key (docs/audit.md for the message). */
  audit: AuditCheckpoint | null;
  identityCertificate: string;
  /** The HPKE key operators seal PSKs to, vouched for by the identity key (fleet/hpke.ts). */
  hpke: { publicKey: string; keyId: string; signature: string };
  fleet: {
    operatorKeyId: string | null;
    locked: boolean;
    applied: Array<{ scope: string; version: number; keyId: string; appliedAt: string }>;
    labels: Record<string, string>;
    /** Policy profiles documents defined (the configuration's own are not listed). */
    profiles: string[];
    /** The newest refused document: an operator sees a refusal in `fleet status --json` too. */
    lastRefused: { scope: string; version: number | null; code: string; at: string } | null;
  };
}

function notAfter(name: string, pem: string): { name: string; notAfter: string } | null {
  try {
    return { name, notAfter: new Date(new X509Certificate(pem).validTo).toISOString() };
  } catch {
    return null;
  }
}

export type ComplianceSummary = StateDocument['compliance'];

/** The compliance self-assessment, summarised (it walks the whole audit chain: the agent caches it). */
export function complianceSummary(core: Core): ComplianceSummary {
  const report = assess(core);
  return {
    met: report.summary.met,
    notMet: report.summary['not met'],
    notApplicable: report.summary['n.a.'],
    notMetProvisions: report.findings.filter((f) => f.status === 'not met').map((f) => f.provision),
  };
}

export interface StateInputs {
  core: Core;
  prefix: string;
  uplink: UplinkStatus | undefined;
  audit: AuditCheckpoint | null;
  hpke: { publicKey: string; keyId: string; signature: string };
  operatorKeyId: string | null;
  labels: Record<string, string>;
  compliance: ComplianceSummary;
}

export function buildState(i: StateInputs): StateDocument {
  const { core } = i;
  const status = core.status();
  const lastRefused = core.store.fleet.refusals()[0];
  const devices: DeviceSummary[] = core.identity.list().map((d) => ({
    id: d.id,
    state: d.state,
    credentialKind: d.credentialKind,
    firmwareVersion: d.firmwareVersion,
    segment: d.segment,
    lastSeen: d.lastSeen,
    name: d.name,
    type: d.type,
  }));
  const listJson = JSON.stringify(devices);
  const alerts = core.store.alerts.openSummary();
  const identityCertificate = core.keystore?.identityCertificate() ?? '';
  const certificates = [notAfter('identity', identityCertificate)];
  const certFile = core.config.uplink?.certFile;
  if (certFile) {
    try {
      certificates.push(notAfter('uplink', readFileSync(certFile, 'utf8')));
    } catch {
      // not there yet (awaiting signature): nothing to report
    }
  }
  return {
    format: STATE_FORMAT,
    prefix: i.prefix,
    version: VERSION,
    publishedAt: new Date(core.clock.now()).toISOString(),
    keystore: status.keystore,
    uplink: i.uplink
      ? {
          state: i.uplink.state,
          queueDepth: i.uplink.queueDepth,
          dropped: i.uplink.dropped,
          refused: i.uplink.refused,
        }
      : null,
    firewall: status.firewall,
    devices: {
      count: devices.length,
      byState: status.devices,
      ...(Buffer.byteLength(listJson) > DEVICE_LIST_GZIP_BYTES
        ? { listGzip: gzipSync(listJson).toString('base64') }
        : { list: devices }),
    },
    compliance: i.compliance,
    alerts: { open: alerts.open, high: alerts.high },
    certificates: certificates.filter((c): c is { name: string; notAfter: string } => c !== null),
    audit: i.audit,
    identityCertificate,
    hpke: i.hpke,
    fleet: {
      operatorKeyId: i.operatorKeyId,
      locked: core.store.fleet.lock().locked,
      applied: core.store.fleet
        .allApplied()
        .map((a) => ({ scope: a.scope, version: a.version, keyId: a.keyId, appliedAt: a.appliedAt })),
      labels: i.labels,
      profiles: core.store.fleet.profiles().map((p) => p.name),
      lastRefused: lastRefused
        ? {
            scope: lastRefused.scope,
            version: lastRefused.version,
            code: lastRefused.code,
            at: lastRefused.at,
          }
        : null,
    },
  };
}
