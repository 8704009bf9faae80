/**
 * Sparkplug B 3.0 (`uplink.format: sparkplug-b`) for industrial hosts: the gateway is an Edge Node, each sensor a
 * Device. Payloads are encoded with Eclipse Tahu's `sparkplug-payload`. What the spec asks and this does:
 * - NDEATH is the connection's MQTT Will, carrying `bdSeq`, which increases with every connect; NBIRTH (seq 0)
 *   repeats that `bdSeq` and offers the `Node Control/Rebirth` metric;
 * - a Device is born (DBIRTH) before its first DDATA of each session, and dies (DDEATH) when it is quarantined
 *   or decommissioned;
 * - `seq` runs 0-255 over every NBIRTH/DBIRTH/DDATA/DDEATH of the session, assigned at publish time (messages
 *   wait in the durable queue as they came, so a replay after a reconnect gets the new session's numbers);
 * - an NCMD with `Node Control/Rebirth` = true starts a new session's births.
 * Readings become metrics: a JSON (content format 50, or none) or CBOR (60) object's fields, nested objects as
 * `a/b` folders; numbers are Double, booleans Boolean, strings String; anything else one Bytes metric `payload`.
 * A device whose policy profile has `metrics` gets exactly those (name, field, type): DBIRTH declares them all,
 * DDATA carries them (null where the reading lacks the field or its value does not fit the type), other fields
 * are not sent, and a changed map means a new DBIRTH.
 */
import { createRequire } from 'node:module';
import type { Clock } from '../clock.ts';

interface Metric {
  name: string;
  type: ProfileMetric['type'] | 'Bytes';
  value: number | boolean | string | Uint8Array | null;
}
/** A profile's metric: the Sparkplug name, the path in the reading, the type (config/policy-schema.ts). */
export interface ProfileMetric {
  name: string;
  field: string;
  type:
    | 'Int8'
    | 'Int16'
    | 'Int32'
    | 'Int64'
    | 'UInt8'
    | 'UInt16'
    | 'UInt32'
    | 'UInt64'
    | 'Float'
    | 'Double'
    | 'Boolean'
    | 'String';
}
interface Tahu {
  encodePayload(p: { timestamp: number; seq?: number; metrics: Metric[] }): Uint8Array;
  decodePayload(b: Uint8Array): { metrics?: Array<{ name?: string; value?: unknown }> };
}

const requireCjs = createRequire(import.meta.url);
let tahu: Tahu | undefined;
// protobufjs and Tahu load only for a gateway configured for Sparkplug.
const codec = (): Tahu => {
  tahu ??= (requireCjs('sparkplug-payload') as { get(ns: string): Tahu }).get('spBv1.0');
  return tahu;
};
let cborDecode: ((b: Buffer) => unknown) | undefined;

export const REBIRTH_METRIC = 'Node Control/Rebirth';
/** Sparkplug ids: no MQTT separators or wildcards. */
export const SPARKPLUG_ID = /^[^/#+]{1,128}$/;

export interface SparkplugOptions {
  groupId: string;
  edgeNodeId: string;
  /** The device's profile metrics, if its profile maps them (undefined: every field as it comes). */
  metricsFor?: (deviceId: string) => readonly ProfileMetric[] | undefined;
}

const INT_RANGE: Partial<Record<ProfileMetric['type'], [number, number]>> = {
  Int8: [-128, 127],
  Int16: [-32768, 32767],
  Int32: [-2147483648, 2147483647],
  Int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  UInt8: [0, 255],
  UInt16: [0, 65535],
  UInt32: [0, 4294967295],
  UInt64: [0, Number.MAX_SAFE_INTEGER],
};

/** A field's value as the metric's type, or null when it has none that fits (never a silent wrap-around). */
function typed(value: unknown, type: ProfileMetric['type']): Metric['value'] {
  const range = INT_RANGE[type];
  if (range) {
    return typeof value === 'number' && Number.isInteger(value) && value >= range[0] && value <= range[1]
      ? value
      : null;
  }
  if (type === 'Float' || type === 'Double')
    return typeof value === 'number' && Number.isFinite(value) ? value : null;
  if (type === 'Boolean') return typeof value === 'boolean' ? value : null;
  if (value === undefined || value === null) return null;
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** The reading mapped by a profile's metrics: one metric per entry, in the profile's order. */
export function profileMetrics(
  payload: Buffer,
  contentFormat: number | null,
  map: readonly ProfileMetric[],
): Metric[] {
  const decoded = decodeReading(payload, contentFormat);
  return map.map((m) => {
    let v: unknown = decoded;
    for (const part of m.field.split('/')) {
      v =
        v !== null && typeof v === 'object' && !Array.isArray(v)
          ? (v as Record<string, unknown>)[part]
          : undefined;
    }
    return { name: m.name, type: m.type, value: typed(v, m.type) };
  });
}

function flatten(value: unknown, prefix: string, out: Metric[]): void {
  if (
    value !== null &&
    typeof value === 'object' &&
    !Array.isArray(value) &&
    !(value instanceof Uint8Array)
  ) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}/${k}` : k, out);
    return;
  }
  const name = prefix || 'value';
  if (typeof value === 'number' && Number.isFinite(value)) out.push({ name, type: 'Double', value });
  else if (typeof value === 'boolean') out.push({ name, type: 'Boolean', value });
  else if (typeof value === 'string') out.push({ name, type: 'String', value });
  else out.push({ name, type: 'String', value: JSON.stringify(value) ?? 'null' });
}

/** A JSON or CBOR reading decoded; undefined for anything else or what does not decode. */
function decodeReading(payload: Buffer, contentFormat: number | null): unknown {
  try {
    if (contentFormat === 60) {
      cborDecode ??= (requireCjs('cbor-x') as { decode: (b: Buffer) => unknown }).decode;
      return cborDecode(payload);
    }
    if (contentFormat === 50 || contentFormat === null) return JSON.parse(payload.toString('utf8'));
  } catch {
    return undefined;
  }
  return undefined;
}

/** The reading as metrics (see the module comment); never throws. */
export function toMetrics(payload: Buffer, contentFormat: number | null): Metric[] {
  const decoded = decodeReading(payload, contentFormat);
  if (decoded === undefined || decoded === null || typeof decoded !== 'object' || Array.isArray(decoded)) {
    return [{ name: 'payload', type: 'Bytes', value: new Uint8Array(payload) }];
  }
  const out: Metric[] = [];
  flatten(decoded, '', out);
  return out.slice(0, 1000);
}

export class SparkplugSession {
  private seq = 0;
  private bdSeq = -1;
  /** Devices born in this session, with the metric map (names and types) their DBIRTH declared. */
  private readonly born = new Map<string, string>();

  constructor(
    private readonly o: SparkplugOptions,
    private readonly clock: Clock,
  ) {}

  topic(type: 'NBIRTH' | 'NDEATH' | 'DBIRTH' | 'DDATA' | 'DDEATH' | 'NCMD', device?: string): string {
    return `spBv1.0/${this.o.groupId}/${type}/${this.o.edgeNodeId}${device ? `/${device}` : ''}`;
  }

  private encode(metrics: Metric[], seq: boolean): Buffer {
    const p = { timestamp: this.clock.now(), metrics, ...(seq ? { seq: this.nextSeq() } : {}) };
    return Buffer.from(codec().encodePayload(p));
  }

  private nextSeq(): number {
    const n = this.seq;
    this.seq = (this.seq + 1) % 256;
    return n;
  }

  /** The Will of the next connection: NDEATH with a new bdSeq (NBIRTH repeats it). */
  will(): { topic: string; payload: Buffer } {
    this.bdSeq = (this.bdSeq + 1) % 256;
    return {
      topic: this.topic('NDEATH'),
      payload: this.encode([{ name: 'bdSeq', type: 'UInt64', value: this.bdSeq }], false),
    };
  }

  /** NBIRTH, seq 0: a new session; every Device is born again before its next data. */
  birth(): { topic: string; payload: Buffer } {
    this.seq = 0;
    this.born.clear();
    const payload = this.encode(
      [
        { name: 'bdSeq', type: 'UInt64', value: Math.max(this.bdSeq, 0) },
        { name: REBIRTH_METRIC, type: 'Boolean', value: false },
      ],
      true,
    );
    return { topic: this.topic('NBIRTH'), payload };
  }

  /** DBIRTH first if the device was not born in this session, then DDATA. */
  data(
    deviceId: string,
    payload: Buffer,
    contentFormat: number | null,
  ): Array<{ topic: string; payload: Buffer }> {
    const map = this.o.metricsFor?.(deviceId);
    const metrics = map ? profileMetrics(payload, contentFormat, map) : toMetrics(payload, contentFormat);
    // Generic readings are born once per session; a profile's map is born again when the map changes.
    const declared = map ? map.map((m) => `${m.name}:${m.type}`).join('\n') : '';
    const out: Array<{ topic: string; payload: Buffer }> = [];
    if (this.born.get(deviceId) !== declared) {
      this.born.set(deviceId, declared);
      out.push({ topic: this.topic('DBIRTH', deviceId), payload: this.encode(metrics, true) });
    }
    out.push({ topic: this.topic('DDATA', deviceId), payload: this.encode(metrics, true) });
    return out;
  }

  /** DDEATH for a device born in this session; null otherwise. */
  death(deviceId: string): { topic: string; payload: Buffer } | null {
    if (!this.born.delete(deviceId)) return null;
    return { topic: this.topic('DDEATH', deviceId), payload: this.encode([], true) };
  }

  /** Whether this is an NCMD asking for a rebirth. */
  isRebirth(topic: string, payload: Buffer): boolean {
    if (topic !== this.topic('NCMD')) return false;
    try {
      return (codec().decodePayload(payload).metrics ?? []).some(
        (m) => m.name === REBIRTH_METRIC && m.value === true,
      );
    } catch {
      return false;
    }
  }
}
