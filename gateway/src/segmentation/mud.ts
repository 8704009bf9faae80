import { z } from 'zod';
import { parseJsonWith } from '../json.ts';
import { parseIpv4Network } from '../net/ipv4.ts';
import type { AllowEntry, AllowList, Peer } from './allowlist.ts';
import { SegmentationError } from './errors.ts';

/**
 * RFC 8520 MUD files → an allow-list. Only what Portcullis can enforce exactly is accepted; anything else is
 * refused as a whole (ERR_MUD_UNSUPPORTED), so a device never runs with part of its manufacturer's intent.
 * Objects are loose where RFC 8520 allows extra metadata, strict inside matches (an unknown match would
 * otherwise be silently ignored and allow more than the file meant).
 */

const nullList = z.tuple([z.null()]);

const portMatch = z.union([
  z.strictObject({ operator: z.literal('eq'), port: z.number().int().min(0).max(65535) }),
  z.strictObject({
    operator: z.enum(['lte', 'gte', 'neq']),
    port: z.number().int().min(0).max(65535),
  }),
  z.strictObject({
    'lower-port': z.number().int().min(0).max(65535),
    'upper-port': z.number().int().min(0).max(65535),
  }),
]);

const l4 = z.strictObject({
  'source-port': portMatch.optional(),
  'destination-port': portMatch.optional(),
  'ietf-mud:direction-initiated': z.enum(['from-device', 'to-device']).optional(),
});

const l3 = (family: 'ipv4' | 'ipv6') =>
  z.strictObject({
    protocol: z.number().int().min(0).max(255).optional(),
    [`destination-${family}-network`]: z.string().optional(),
    [`source-${family}-network`]: z.string().optional(),
    'ietf-acldns:dst-dnsname': z.string().min(1).max(253).optional(),
    'ietf-acldns:src-dnsname': z.string().min(1).max(253).optional(),
  });

const mudMatch = z.strictObject({
  manufacturer: z.string().min(1).optional(),
  'same-manufacturer': nullList.optional(),
  model: z.string().min(1).optional(),
  'local-networks': nullList.optional(),
  controller: z.string().min(1).optional(),
  'my-controller': nullList.optional(),
});

const ace = z.object({
  name: z.string().min(1).max(128),
  matches: z.strictObject({
    ipv4: l3('ipv4').optional(),
    ipv6: l3('ipv6').optional(),
    tcp: l4.optional(),
    udp: l4.optional(),
    icmp: z.strictObject({ type: z.number().int().optional(), code: z.number().int().optional() }).optional(),
    'ietf-mud:mud': mudMatch.optional(),
  }),
  actions: z.strictObject({ forwarding: z.enum(['accept', 'drop', 'reject']) }),
});

const acl = z.object({
  name: z.string().min(1),
  type: z.enum(['ipv4-acl-type', 'ipv6-acl-type']),
  aces: z.object({ ace: z.array(ace) }),
});

const policy = z.object({
  'access-lists': z.object({ 'access-list': z.array(z.object({ name: z.string().min(1) })) }),
});

export const mudFileSchema = z.object({
  'ietf-mud:mud': z.object({
    'mud-version': z.literal(1),
    'mud-url': z.url({ protocol: /^https$/, error: 'must be an https:// URL' }),
    'last-update': z.string(),
    'is-supported': z.boolean(),
    'from-device-policy': policy.optional(),
    'to-device-policy': policy.optional(),
  }),
  'ietf-access-control-list:acls': z.object({ acl: z.array(acl) }),
});

type Ace = z.infer<typeof ace>;
type PortMatch = z.infer<typeof portMatch>;

/** Ranges wider than this become too many set entries; a MUD file that needs them is refused. */
const MAX_PORTS_PER_ACE = 256;

function unsupported(where: string, what: string): SegmentationError {
  return new SegmentationError('ERR_MUD_UNSUPPORTED', `${where}: ${what}`);
}

function portsOf(m: PortMatch, where: string): number[] {
  if ('operator' in m) {
    if (m.operator !== 'eq') throw unsupported(where, `port operator "${m.operator}" is not supported`);
    if (m.port === 0) throw unsupported(where, 'port 0');
    return [m.port];
  }
  const lo = m['lower-port'];
  const hi = m['upper-port'];
  if (lo < 1 || hi < lo) throw unsupported(where, `port range ${lo}-${hi} is empty or starts at 0`);
  if (hi - lo + 1 > MAX_PORTS_PER_ACE) {
    throw unsupported(where, `port range ${lo}-${hi} is wider than ${MAX_PORTS_PER_ACE} ports`);
  }
  return Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
}

const PROTOCOLS: Record<number, AllowEntry['protocol']> = { 1: 'icmp', 6: 'tcp', 17: 'udp' };

/**
 * One ACE → one allow entry, or null when it only describes the reply path of a connection the other
 * direction opens (connection tracking already lets replies through).
 */
function entryFor(a: Ace, side: 'from-device' | 'to-device', family: 'ipv4' | 'ipv6', where: string) {
  if (a.actions.forwarding !== 'accept') {
    throw unsupported(where, `action "${a.actions.forwarding}" (Portcullis denies by default; only accept)`);
  }
  const m = a.matches;
  const l3m = m[family] as Record<string, unknown> | undefined;
  if (m[family === 'ipv4' ? 'ipv6' : 'ipv4'])
    throw unsupported(where, `${family} ACL with another family's match`);
  if (m.tcp && m.udp) throw unsupported(where, 'both tcp and udp matches');
  const l4m = m.tcp ?? m.udp;
  const declared = l3m?.protocol as number | undefined;
  let protocol: AllowEntry['protocol'] = m.tcp ? 'tcp' : m.udp ? 'udp' : m.icmp ? 'icmp' : 'any';
  if (declared !== undefined) {
    const p = PROTOCOLS[declared];
    if (!p) throw unsupported(where, `IP protocol ${declared}`);
    if (protocol !== 'any' && p !== protocol)
      throw unsupported(where, `protocol ${declared} contradicts its ${protocol} match`);
    protocol = p;
  }
  if (m.icmp && (m.icmp.type !== undefined || m.icmp.code !== undefined)) {
    throw unsupported(where, 'ICMP type/code matches');
  }
  // Who opens the connection: the MUD field when present, else the side the policy is attached to.
  const initiated = l4m?.['ietf-mud:direction-initiated'] ?? side;
  if (initiated !== side) return null;
  // The peer's port (from-device) or the device's port (to-device): the connection's destination port.
  const dstPort = l4m?.['destination-port'];
  const srcPort = l4m?.['source-port'];
  if (srcPort) throw unsupported(where, 'a source-port match on the side that opens the connection');
  const ports = dstPort ? portsOf(dstPort, where) : null;

  const peers: Peer[] = [];
  const peerDir = side === 'from-device' ? 'dst' : 'src';
  const otherDir = side === 'from-device' ? 'src' : 'dst';
  const net = l3m?.[`${peerDir === 'dst' ? 'destination' : 'source'}-${family}-network`] as
    | string
    | undefined;
  const devNet = l3m?.[`${otherDir === 'dst' ? 'destination' : 'source'}-${family}-network`];
  const dns = l3m?.[`ietf-acldns:${peerDir}-dnsname`] as string | undefined;
  if (devNet !== undefined || l3m?.[`ietf-acldns:${otherDir}-dnsname`] !== undefined) {
    throw unsupported(where, "a match on the device's own address");
  }
  if (net !== undefined) {
    if (family === 'ipv6') throw unsupported(where, 'IPv6 networks (segments are IPv4)');
    const n = parseIpv4Network(net);
    if (!n) throw new SegmentationError('ERR_MUD_INVALID', `${where}: "${net}" is not an IPv4 network`);
    peers.push({ kind: 'cidr', cidr: net });
  }
  if (dns !== undefined) peers.push({ kind: 'dns', name: dns.toLowerCase() });
  const mm = m['ietf-mud:mud'];
  if (mm?.['local-networks']) peers.push({ kind: 'local-networks' });
  if (mm?.['same-manufacturer']) peers.push({ kind: 'same-manufacturer' });
  if (mm?.manufacturer) peers.push({ kind: 'manufacturer', authority: mm.manufacturer.toLowerCase() });
  if (mm?.model) peers.push({ kind: 'model', mudUrl: mm.model });
  if (mm?.controller) peers.push({ kind: 'controller', uri: mm.controller });
  if (mm?.['my-controller']) peers.push({ kind: 'my-controller' });
  if (peers.length === 0) throw unsupported(where, 'no peer (an ACE must name whom the device talks to)');
  if (peers.length > 1) throw unsupported(where, 'more than one peer match in one ACE');
  return { name: a.name, direction: side, protocol, ports, peer: peers[0] as Peer } satisfies AllowEntry;
}

/** Parses a MUD file (JSON text) into an allow-list for `deviceId`; throws on anything not enforceable. */
export function parseMud(text: string, deviceId: string): AllowList {
  const parsed = parseJsonWith(mudFileSchema, text, 'file');
  if (!parsed.ok) {
    throw new SegmentationError(
      'ERR_MUD_INVALID',
      parsed.notJson ? `not JSON: ${parsed.problem}` : parsed.problem,
    );
  }
  const mud = parsed.data['ietf-mud:mud'];
  const acls = new Map(parsed.data['ietf-access-control-list:acls'].acl.map((a) => [a.name, a]));
  const entries: AllowEntry[] = [];
  for (const side of ['from-device', 'to-device'] as const) {
    const names = mud[`${side}-policy`]?.['access-lists']['access-list'] ?? [];
    for (const { name } of names) {
      const list = acls.get(name);
      if (!list)
        throw new SegmentationError(
          'ERR_MUD_INVALID',
          `${side}-policy names ACL "${name}", which is not defined`,
        );
      const family = list.type === 'ipv4-acl-type' ? 'ipv4' : 'ipv6';
      for (const a of list.aces.ace) {
        const e = entryFor(a, side, family, `ACL ${name} ACE ${a.name}`);
        if (e) entries.push(e);
      }
    }
  }
  const url = new URL(mud['mud-url']);
  return {
    deviceId,
    source: 'mud',
    mudUrl: mud['mud-url'],
    manufacturer: url.host.toLowerCase(),
    entries: dedupe(entries),
  };
}

/** IPv4 and IPv6 ACLs often say the same thing by name; keep one of each. */
function dedupe(entries: AllowEntry[]): AllowEntry[] {
  const seen = new Set<string>();
  return entries.filter((e) => {
    const key = JSON.stringify({ ...e, name: '' });
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
