/**
 * The operator's side of the fleet plane (`portcullis fleet …`): a short MQTT 5 session to any broker with the
 * operator's client certificate, reading the gateways' retained presence and state, and checking what can be
 * checked from outside: the identity signature on the audit head and on the HPKE key, and the audit head
 * against the highest one this operator saw before (a known-gateways file, trust on first use).
 */
import { createHash, verify, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import mqtt from 'mqtt';
import { verifyCheckpoint } from '../audit/index.ts';
import { FleetError } from './errors.ts';
import { hpkeBindingMessage } from './hpke.ts';
import type { PresenceDocument, StateDocument } from './state.ts';

export interface BrokerOptions {
  url: string;
  ca: string;
  cert: string;
  key: string;
  clientId?: string;
}

export async function connectOperator(o: BrokerOptions): Promise<mqtt.MqttClient> {
  const client = mqtt.connect(o.url, {
    protocolVersion: 5,
    clientId: o.clientId ?? `portcullis-operator-${process.pid}-${Date.now().toString(36)}`,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    ca: readFileSync(o.ca),
    cert: readFileSync(o.cert),
    key: readFileSync(o.key),
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
  } as mqtt.IClientOptions);
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', (err) =>
      reject(new FleetError('ERR_FLEET_BROKER', `broker ${o.url}: ${err.message}`)),
    );
    client.once('close', () =>
      reject(new FleetError('ERR_FLEET_BROKER', `broker ${o.url}: connection closed`)),
    );
  });
  client.removeAllListeners('error');
  client.on('error', () => {});
  return client;
}

/** Topic filters for prefixes of one or two levels (`site-1`, `acme/site-1`). */
export const prefixFilters = (suffix: string) => [`+/${suffix}`, `+/+/${suffix}`];

export function subscribe(client: mqtt.MqttClient, topics: string[]): Promise<void> {
  return new Promise((resolve, reject) =>
    client.subscribe(topics, { qos: 1 }, (err) =>
      err ? reject(new FleetError('ERR_FLEET_BROKER', `subscribe: ${err.message}`)) : resolve(),
    ),
  );
}

export interface GatewayView {
  prefix: string;
  status?: PresenceDocument;
  state?: StateDocument;
}

/**
 * Collects the retained presence and state documents: they arrive right after SUBACK; the collection ends
 * `quietMs` after the last one (or at `maxMs`).
 */
export async function collectRetained(
  client: mqtt.MqttClient,
  quietMs = 400,
  maxMs = 5000,
): Promise<GatewayView[]> {
  const views = new Map<string, GatewayView>();
  let timer: NodeJS.Timeout | undefined;
  let done: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  const bump = () => {
    clearTimeout(timer);
    timer = setTimeout(done, quietMs);
  };
  client.on('message', (topic, payload) => {
    const m = /^(.+)\/gateway\/(status|state)$/.exec(topic);
    if (!m || payload.length === 0) return;
    const prefix = m[1] as string;
    const v = views.get(prefix) ?? { prefix };
    try {
      const doc = JSON.parse(payload.toString('utf8'));
      if (m[2] === 'status') v.status = doc as PresenceDocument;
      else v.state = doc as StateDocument;
      views.set(prefix, v);
    } catch {
      // not a document of ours: ignored
    }
    bump();
  });
  await subscribe(client, [...prefixFilters('gateway/status'), ...prefixFilters('gateway/state')]);
  bump();
  const cap = setTimeout(done, maxMs);
  await finished;
  clearTimeout(cap);
  clearTimeout(timer);
  return [...views.values()].sort((a, b) => a.prefix.localeCompare(b.prefix));
}

/** What this operator has seen of each gateway before: the identity it pinned and the highest audit head. */
export interface KnownGateway {
  identitySha256: string;
  audit: { seq: number; hash: string; counter: number; ts: string } | null;
}
export type KnownGateways = Record<string, KnownGateway>;

export function readKnown(file: string): KnownGateways {
  if (!existsSync(file)) return {};
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as KnownGateways;
  } catch {
    throw new FleetError('ERR_FLEET_USAGE', `${file} is not a known-gateways file (JSON)`);
  }
}

export function writeKnown(file: string, known: KnownGateways): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(known, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}

export interface Check {
  ok: boolean;
  /** Problems an operator must look at (a truncated log, a changed identity, a bad signature). */
  problems: string[];
}

function certSha256(pem: string): string | null {
  try {
    return createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');
  } catch {
    return null;
  }
}

/**
 * Checks a gateway's state against its own identity certificate and against `known` (updated in place: the
 * identity pinned on first sight, the audit head raised). A head below the highest seen, or another hash at the
 * same sequence number, or a lower counter, is a truncated, rewritten or rolled-back audit log.
 */
export function checkState(prefix: string, state: StateDocument, known: KnownGateways): Check {
  const problems: string[] = [];
  const fp = certSha256(state.identityCertificate);
  if (!fp) return { ok: false, problems: ['no valid identity certificate in the state'] };
  const before = known[prefix];
  if (before && before.identitySha256 !== fp) {
    problems.push(
      `identity certificate changed (was sha256 ${before.identitySha256.slice(0, 16)}…): not trusted`,
    );
    return { ok: false, problems };
  }
  const hpkeOk = (() => {
    try {
      return verify(
        'sha256',
        hpkeBindingMessage(prefix, state.hpke.publicKey),
        new X509Certificate(state.identityCertificate).publicKey,
        Buffer.from(state.hpke.signature, 'base64'),
      );
    } catch {
      return false;
    }
  })();
  if (!hpkeOk) problems.push('the HPKE key is not signed by the identity key');
  const head = state.audit;
  if (!head) problems.push('no signed audit head');
  else if (!verifyCheckpoint(head, state.identityCertificate))
    problems.push('the audit head signature does not verify');
  else if (before?.audit) {
    const b = before.audit;
    if (head.seq < b.seq) {
      problems.push(
        `audit log truncated: the signed head is at entry ${head.seq}, but this gateway signed entry ${b.seq} on ${b.ts}`,
      );
    } else if (head.seq === b.seq && head.hash !== b.hash) {
      problems.push(`audit log rewritten: entry ${head.seq} has another hash than the one signed on ${b.ts}`);
    } else if (head.counter < b.counter) {
      problems.push(`audit log rolled back: counter ${head.counter} is below ${b.counter} seen on ${b.ts}`);
    }
  }
  const ok = problems.length === 0;
  // Only a head that checked out raises what is known; a bad one never lowers it.
  known[prefix] = {
    identitySha256: fp,
    audit:
      ok && head
        ? { seq: head.seq, hash: head.hash, counter: head.counter, ts: head.ts }
        : (before?.audit ?? null),
  };
  return { ok, problems };
}
