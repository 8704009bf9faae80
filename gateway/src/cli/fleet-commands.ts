/**
 * `portcullis fleet …`: the operator's commands (keygen, sign, publish, status, watch; any MQTT 5 broker) and
 * the gateway's local fleet lock. docs/fleet.md.
 */
import { createHash, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { firstIssue } from '../errors.ts';
import {
  type DocumentBody,
  keyIdOf,
  parseEnvelope,
  type SealedPsk,
  signDocument,
} from '../fleet/document.ts';
import { FleetError } from '../fleet/errors.ts';
import { hpkeKeyId, sealPsk } from '../fleet/hpke.ts';
import { fleetLocalView, setFleetLock } from '../fleet/lock.ts';
import {
  type BrokerOptions,
  type Check,
  checkState,
  collectRetained,
  connectOperator,
  type GatewayView,
  prefixFilters,
  readKnown,
  subscribe,
  writeKnown,
} from '../fleet/operator.ts';
import { fleetTopics, groupTopic } from '../fleet/topics.ts';
import { cliActor, withWritableCore } from './device-commands.ts';
import { EXIT } from './exit-codes.ts';
import type { Io } from './io.ts';

export const DEFAULT_KNOWN_FILE = join(homedir(), '.config', 'portcullis', 'fleet-known.json');

export function fleetKeygenCommand(dir: string, io: Io): number {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keyFile = join(dir, 'operator.key');
  if (existsSync(keyFile)) throw new FleetError('ERR_FLEET_USAGE', `${keyFile} exists: not overwritten`);
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  writeFileSync(keyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
  chmodSync(keyFile, 0o600);
  writeFileSync(join(dir, 'operator.pub'), publicKey.export({ format: 'pem', type: 'spki' }));
  io.out(
    `operator key ${keyIdOf(publicKey)}: ${keyFile} (keep it offline), ${join(dir, 'operator.pub')} (pin it in fleet.operatorKeyFile)`,
  );
  return EXIT.ok;
}

/** The document as the operator writes it: PSKs in clear here, on the operator's machine only. */
const sourceSchema = z.strictObject({
  target: z.union([
    z.strictObject({ gateway: z.string().min(1) }),
    z.strictObject({ group: z.string().min(1) }),
  ]),
  spec: z
    .strictObject({
      devices: z
        .strictObject({
          add: z
            .array(
              z.looseObject({
                id: z.string(),
                pskIdentity: z.string(),
                pskHex: z
                  .string()
                  .regex(/^([0-9a-fA-F]{2})+$/)
                  .optional(),
                pskText: z.string().optional(),
              }),
            )
            .default([]),
        })
        .loose()
        .prefault({}),
    })
    .loose()
    .prefault({}),
});

/**
 * Local files the operator names instead of pasting hashes and base64: `update.file` becomes `update.sha256`,
 * a firmware image's `manifestFile` and `signatureFile` become its `manifest` (base64 of the exact bytes) and
 * `signature`. Paths are relative to the document; the files themselves never go into it.
 */
function resolveLocalFiles(spec: Record<string, unknown>, baseDir: string): void {
  const path = (p: unknown, where: string) => {
    if (typeof p !== 'string' || p.length === 0)
      throw new FleetError('ERR_FLEET_MALFORMED', `${where}: a path`);
    return resolve(baseDir, p);
  };
  const update = spec.update as Record<string, unknown> | undefined;
  if (update && 'file' in update) {
    const sha256 = createHash('sha256')
      .update(readFileSync(path(update.file, 'update.file')))
      .digest('hex');
    if (update.sha256 !== undefined && update.sha256 !== sha256) {
      throw new FleetError('ERR_FLEET_USAGE', `update.sha256 is not the SHA-256 of update.file (${sha256})`);
    }
    delete update.file;
    update.sha256 = sha256;
  }
  const images = (spec.firmware as { images?: Array<Record<string, unknown>> } | undefined)?.images ?? [];
  images.forEach((image, i) => {
    if ('manifestFile' in image) {
      image.manifest = readFileSync(path(image.manifestFile, `firmware.images.${i}.manifestFile`)).toString(
        'base64',
      );
      delete image.manifestFile;
    }
    if ('signatureFile' in image) {
      image.signature = readFileSync(
        path(image.signatureFile, `firmware.images.${i}.signatureFile`),
        'utf8',
      ).trim();
      delete image.signatureFile;
    }
  });
}

/** `24h`, `7d`, `30m`, or an ISO time. */
export function parseExpiry(t: string, now: number): string {
  const rel = /^(\d+)([mhd])$/.exec(t);
  if (rel) {
    const unit = { m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as 'm' | 'h' | 'd'];
    return new Date(now + Number(rel[1]) * unit).toISOString();
  }
  const ms = Date.parse(t);
  if (Number.isNaN(ms))
    throw new FleetError('ERR_FLEET_USAGE', `--expires ${t}: an ISO time or a duration (30m, 24h, 7d)`);
  return new Date(ms).toISOString();
}

interface Recipient {
  prefix: string;
  publicKey: Buffer;
}

/** Recipients from `fleet status --json`: only gateways whose state checked out (identity-signed HPKE key). */
function readRecipients(file: string): Recipient[] {
  const rows = JSON.parse(readFileSync(file, 'utf8')) as Array<{
    prefix: string;
    check: Check;
    state?: { hpke?: { publicKey: string } };
  }>;
  return rows.flatMap((r) => {
    if (!r.state?.hpke || r.check.problems.some((p) => p.includes('HPKE') || p.includes('identity')))
      return [];
    return [{ prefix: r.prefix, publicKey: Buffer.from(r.state.hpke.publicKey, 'base64') }];
  });
}

export async function fleetSignCommand(
  docFile: string,
  o: { key: string; version: number; expires: string; recipients?: string; out?: string },
  io: Io,
): Promise<number> {
  const raw = parseYaml(readFileSync(docFile, 'utf8')) as unknown;
  const src = sourceSchema.safeParse(raw);
  if (!src.success) throw new FleetError('ERR_FLEET_MALFORMED', firstIssue(src.error, 'document'));
  const spec = structuredClone((raw as { spec?: Record<string, unknown> }).spec ?? {}) as Record<
    string,
    unknown
  >;
  resolveLocalFiles(spec, dirname(resolve(docFile)));
  const adds = src.data.spec.devices.add;
  if (adds.length > 0) {
    if (!o.recipients) {
      throw new FleetError(
        'ERR_FLEET_USAGE',
        'device additions need --recipients FILE (from fleet status --json) to seal PSKs to',
      );
    }
    const recipients = readRecipients(o.recipients);
    if (recipients.length === 0)
      throw new FleetError('ERR_FLEET_USAGE', `${o.recipients}: no gateway with a verified HPKE key`);
    const sealedAdds = [];
    for (const d of adds) {
      const { pskHex, pskText, ...rest } = d;
      if ((pskHex === undefined) === (pskText === undefined)) {
        throw new FleetError('ERR_FLEET_MALFORMED', `device ${d.id}: give exactly one of pskHex or pskText`);
      }
      const psk = pskHex !== undefined ? Buffer.from(pskHex, 'hex') : Buffer.from(pskText as string, 'utf8');
      const sealed: SealedPsk[] = [];
      for (const r of recipients) sealed.push(await sealPsk(r.publicKey, psk, d.id, d.pskIdentity));
      psk.fill(0);
      sealedAdds.push({ ...rest, psk: sealed });
    }
    (spec.devices as Record<string, unknown>).add = sealedAdds;
    io.err(
      `sealed ${adds.length} PSK(s) to ${recipients.map((r) => `${r.prefix} (${hpkeKeyId(r.publicKey)})`).join(', ')}`,
    );
  }
  const now = Date.now();
  const body = {
    kind: 'portcullis-desired-state',
    version: o.version,
    issuedAt: new Date(now).toISOString(),
    expires: parseExpiry(o.expires, now),
    target: src.data.target,
    spec,
  } as DocumentBody;
  const env = signDocument(body, createPrivateKey(readFileSync(o.key)));
  const text = `${JSON.stringify(env)}\n`;
  if (o.out) {
    writeFileSync(o.out, text);
    io.err(`signed version ${o.version} with key ${env.keyId}: ${o.out}`);
  } else io.out(text.trimEnd());
  return EXIT.ok;
}

export async function fleetPublishCommand(
  broker: BrokerOptions,
  to: { gateway?: string; group?: string; groupTopic: string },
  signedFile: string,
  io: Io,
): Promise<number> {
  if (Boolean(to.gateway) === Boolean(to.group))
    throw new FleetError('ERR_FLEET_USAGE', 'give exactly one of --gateway or --group');
  const bytes = readFileSync(signedFile);
  parseEnvelope(bytes); // a typo is caught here, not by every gateway
  const topic = to.gateway ? fleetTopics(to.gateway).desired : groupTopic(to.groupTopic, to.group as string);
  const client = await connectOperator(broker);
  try {
    // Retained: a gateway offline now applies it when it is back.
    await client.publishAsync(topic, bytes, { qos: 1, retain: true });
  } finally {
    await client.endAsync();
  }
  io.out(`published to ${topic} (retained)`);
  return EXIT.ok;
}

function row(v: GatewayView, check: Check | null): string[] {
  const s = v.state;
  const online = v.status ? (v.status.online ? 'online' : `OFFLINE (${v.status.cause})`) : '?';
  const applied = s?.fleet.applied.map((a) => `${a.scope}@${a.version}`).join(',') || '-';
  return [
    v.prefix,
    online,
    v.status?.version ?? s?.version ?? '?',
    s ? String(s.devices.count) : '?',
    s ? String(s.alerts.open) : '?',
    s ? `${s.compliance.met} met/${s.compliance.notMet} not` : '?',
    s?.audit ? `${s.audit.seq}:${s.audit.hash.slice(0, 12)}` : '-',
    applied,
    check ? (check.ok ? 'ok' : `PROBLEM: ${check.problems.join('; ')}`) : 'no state',
  ];
}

function table(rows: string[][]): string[] {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  '));
}

export async function fleetStatusCommand(
  broker: BrokerOptions,
  o: { known: string; json: boolean; waitMs: number },
  io: Io,
): Promise<number> {
  const client = await connectOperator(broker);
  let views: GatewayView[];
  try {
    views = await collectRetained(client, 400, o.waitMs);
  } finally {
    await client.endAsync();
  }
  const known = readKnown(o.known);
  const checks = views.map((v) => (v.state ? checkState(v.prefix, v.state, known) : null));
  writeKnown(o.known, known);
  if (o.json) {
    io.out(
      JSON.stringify(
        views.map((v, i) => ({ prefix: v.prefix, status: v.status, state: v.state, check: checks[i] })),
      ),
    );
  } else {
    const header = [
      'GATEWAY',
      'STATUS',
      'VERSION',
      'DEVICES',
      'ALERTS',
      'COMPLIANCE',
      'AUDIT HEAD',
      'APPLIED',
      'CHECK',
    ];
    for (const line of table([header, ...views.map((v, i) => row(v, checks[i] ?? null))])) io.out(line);
    if (views.length === 0) io.out('(no gateway has published presence on this broker)');
  }
  return checks.some((c) => c && !c.ok) ? EXIT.failure : EXIT.ok;
}

export async function fleetWatchCommand(
  broker: BrokerOptions,
  o: { count?: number },
  io: Io,
): Promise<number> {
  const client = await connectOperator(broker);
  let seen = 0;
  const finished = new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    client.on('message', (topic, payload, packet) => {
      // Retained documents are the past: watch shows what arrives from now on.
      if (packet.retain || payload.length === 0) return;
      io.out(`${new Date().toISOString()} ${topic} ${payload.toString('utf8')}`);
      if (o.count !== undefined && ++seen >= o.count) resolve();
    });
    client.on('close', stop);
  });
  await subscribe(client, [
    ...prefixFilters('gateway/alerts'),
    ...prefixFilters('gateway/status'),
    ...prefixFilters('gateway/desired/result'),
  ]);
  io.err('watching alerts, presence and desired-state results (Ctrl-C to stop)');
  await finished;
  await client.endAsync();
  return EXIT.ok;
}

/** The local fleet lock: while set, every remote document is refused (ERR_FLEET_LOCKED). */
export function fleetLockCommand(configPath: string | undefined, on: boolean, io: Io): number {
  return withWritableCore(configPath, (core) => {
    setFleetLock(core, cliActor(), on);
    io.out(on ? 'fleet lock set: remote desired-state documents are refused' : 'fleet lock lifted');
    return EXIT.ok;
  });
}

/** On a gateway: the operator key in force (after a rotation), the lock, and the documents applied per scope. */
export function fleetShowCommand(configPath: string | undefined, json: boolean, io: Io): number {
  return withWritableCore(configPath, (core) => {
    const v = fleetLocalView(core);
    const pinned = core.config.fleet.operatorKeyFile;
    if (json) {
      io.out(JSON.stringify({ operatorKeyFile: pinned ?? null, ...v }));
      return EXIT.ok;
    }
    io.out(`operator key: ${pinned ?? '(none pinned: every document is refused)'}`);
    if (v.operatorKey)
      io.out(
        `  rotated to ${v.operatorKey.keyId} on ${v.operatorKey.since} (from ${v.operatorKey.rotatedFrom})`,
      );
    io.out(v.lock.locked ? `fleet lock: SET by ${v.lock.by} since ${v.lock.since}` : 'fleet lock: not set');
    if (v.applied.length === 0) io.out('applied: none');
    for (const a of v.applied) {
      const labels = Object.entries(a.labels)
        .map(([k, x]) => `${k}=${x}`)
        .join(', ');
      io.out(
        `applied: ${a.scope} version ${a.version} by ${a.keyId} at ${a.appliedAt}${labels ? ` (${labels})` : ''}`,
      );
    }
    if (v.profiles.length > 0) io.out(`profiles defined by documents: ${v.profiles.join(', ')}`);
    // The newest few; `--json` has the newest 50.
    for (const r of v.refusals.slice(0, 5)) {
      io.out(
        `refused: ${r.scope}${r.version !== null ? ` version ${r.version}` : ''} at ${r.at}: ${r.code} ${r.reason}`,
      );
    }
    return EXIT.ok;
  });
}
