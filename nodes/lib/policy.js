// @ts-check
'use strict';

/**
 * The zero-trust rule of the "policy check" node, as a pure function: every condition that is set must hold,
 * and anything that cannot be checked (no device, no score, no destination) denies — fail closed.
 */

/**
 * @typedef {{
 *   states: string[];
 *   segments: string[];
 *   window: { days: number[]; fromHour: number; toHour: number; utcOffsetMinutes: number } | null;
 *   maxPerMinute: number | null;
 *   maxScore: number | null;
 *   mud: boolean;
 * }} Rule
 * @typedef {{ name?: string; direction: string; protocol: string; ports: number[] | null; peer: { kind: string; cidr?: string; name?: string } }} AllowEntry
 * @typedef {{ id: string; state: string; segment: string | null; allowList?: AllowEntry[] | null }} DeviceInfo
 * @typedef {{ address?: string; host?: string; port?: number; protocol?: string }} Destination
 * @typedef {{ device: DeviceInfo | undefined; now: number; perMinute: number; score: number | undefined; destination: Destination | undefined }} Context
 * @typedef {{ allow: boolean; reason: string }} Decision
 */

/** @type {Rule} */
const DEFAULT_RULE = {
  states: ['active'],
  segments: [],
  window: null,
  maxPerMinute: null,
  maxScore: null,
  mud: false,
};

/** @param {string} ip */
function ipv4(ip) {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return undefined;
  return (
    ((parts[0] ?? 0) * 2 ** 24 + (parts[1] ?? 0) * 2 ** 16 + (parts[2] ?? 0) * 2 ** 8 + (parts[3] ?? 0)) >>> 0
  );
}

/**
 * @param {string} cidr
 * @param {string} ip
 */
function inCidr(cidr, ip) {
  const [base, bitsText] = cidr.split('/');
  const a = ipv4(ip);
  const b = ipv4(base ?? '');
  const bits = Number(bitsText ?? 32);
  if (a === undefined || b === undefined || !(bits >= 0 && bits <= 32)) return false;
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return (a & mask) >>> 0 === (b & mask) >>> 0;
}

/**
 * The device's allow-list (from its MUD profile) permits a connection it opens to `d`.
 * @param {AllowEntry[]} entries
 * @param {Destination} d
 */
function allowedByMud(entries, d) {
  return entries.some((e) => {
    if (e.direction !== 'from-device') return false;
    if (e.protocol !== 'any' && d.protocol && e.protocol !== d.protocol) return false;
    if (e.ports && (d.port === undefined || !e.ports.includes(d.port))) return false;
    if (e.peer.kind === 'cidr' && e.peer.cidr && d.address) return inCidr(e.peer.cidr, d.address);
    if (e.peer.kind === 'dns' && e.peer.name && d.host)
      return e.peer.name.toLowerCase() === d.host.toLowerCase();
    return false; // controllers, manufacturers: resolved by the gateway's firewall, not here
  });
}

/**
 * @param {Partial<Rule>} partial
 * @param {Context} ctx
 * @returns {Decision}
 */
function evaluate(partial, ctx) {
  const rule = { ...DEFAULT_RULE, ...partial };
  const d = ctx.device;
  if (!d) return { allow: false, reason: 'unknown device' };
  if (rule.states.length > 0 && !rule.states.includes(d.state)) {
    return { allow: false, reason: `device ${d.id} is ${d.state}, not ${rule.states.join(' or ')}` };
  }
  if (rule.segments.length > 0 && !rule.segments.includes(d.segment ?? '')) {
    return {
      allow: false,
      reason: `device ${d.id} is in segment ${d.segment ?? 'none'}, not ${rule.segments.join(' or ')}`,
    };
  }
  if (rule.window) {
    const local = new Date(ctx.now + rule.window.utcOffsetMinutes * 60_000);
    const day = local.getUTCDay();
    const hour = local.getUTCHours();
    const { fromHour, toHour, days } = rule.window;
    const inHours =
      fromHour <= toHour ? hour >= fromHour && hour < toHour : hour >= fromHour || hour < toHour;
    if (!days.includes(day) || !inHours) {
      return { allow: false, reason: `outside the allowed time window (day ${day}, ${hour}:00 local)` };
    }
  }
  if (rule.maxPerMinute !== null && ctx.perMinute > rule.maxPerMinute) {
    return {
      allow: false,
      reason: `${ctx.perMinute} messages in the last minute, more than ${rule.maxPerMinute}`,
    };
  }
  if (rule.maxScore !== null) {
    if (ctx.score === undefined)
      return { allow: false, reason: 'no anomaly score on the message (msg.anomaly.score)' };
    if (ctx.score > rule.maxScore)
      return { allow: false, reason: `anomaly score ${ctx.score} above ${rule.maxScore}` };
  }
  if (rule.mud) {
    if (!ctx.destination) return { allow: false, reason: 'no destination on the message (msg.destination)' };
    if (!d.allowList) return { allow: false, reason: `device ${d.id} has no MUD allow-list` };
    if (!allowedByMud(d.allowList, ctx.destination)) {
      const dst = ctx.destination.host ?? ctx.destination.address ?? '?';
      return { allow: false, reason: `${dst}:${ctx.destination.port ?? '*'} is not in the MUD allow-list` };
    }
  }
  return { allow: true, reason: 'every condition holds' };
}

/** Per-device message counts over the last minute, bounded in devices. */
class RateWindow {
  constructor(maxDevices = 10_000) {
    /** @type {Map<string, number[]>} */
    this.seen = new Map();
    this.maxDevices = maxDevices;
  }

  /**
   * Records one message; returns how many the device sent in the last 60 s, this one included.
   * @param {string} device
   * @param {number} now
   */
  hit(device, now) {
    const list = (this.seen.get(device) ?? []).filter((t) => now - t < 60_000);
    list.push(now);
    this.seen.delete(device);
    this.seen.set(device, list);
    if (this.seen.size > this.maxDevices) {
      const oldest = this.seen.keys().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
    return list.length;
  }
}

module.exports = { evaluate, RateWindow, DEFAULT_RULE, allowedByMud, inCidr };
