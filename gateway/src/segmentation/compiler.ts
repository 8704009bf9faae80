import { createHash } from 'node:crypto';
import type { SegmentConfig } from '../config/schema.ts';
import { formatNetwork, type Ipv4Network, ipsetNetwork, isHostOf, parseIpv4Network } from '../net/ipv4.ts';
import type { Device } from '../store/index.ts';
import type { AllowEntry, AllowList, Peer } from './allowlist.ts';
import { SegmentationError } from './errors.ts';
import { segmentInterface } from './segments.ts';

/** A network the config or allow-list schema has already validated. */
function validNetwork(s: string): Ipv4Network {
  const n = parseIpv4Network(s);
  if (!n) throw new SegmentationError('ERR_FIREWALL_COMPILE', `${s} is not an IPv4 network`);
  return n;
}

export interface CompileInput {
  segments: readonly SegmentConfig[];
  ports: { dtls: number; ui: number };
  wanInterface?: string | undefined;
  dtlsRateLimit: { perSecond: number; burst: number };
  devices: readonly Device[];
  allowLists: readonly AllowList[];
  controllers: readonly { uri: string; address: string }[];
  /** DNS names from allow-lists → their IPv4 addresses (already resolved; missing = unresolved). */
  dns: ReadonlyMap<string, readonly string[]>;
}

export type IpSetType = 'hash:ip' | 'hash:net' | 'hash:ip,port,net';

export interface IpSet {
  name: string;
  type: IpSetType;
  entries: string[];
}

export interface CompiledRuleset {
  /** An `iptables-restore` document for the filter table, written the way `iptables-save` prints it. */
  iptables: string;
  /** An `ipset restore` document creating and filling every set the rules use. */
  ipsets: string;
  sets: IpSet[];
  /** SHA-256 of both documents: the ruleset's identity in the audit log. */
  hash: string;
  /** Things that allow less than someone may expect (unresolved names, devices without a valid address). */
  warnings: string[];
}

/** Every set has room for this many entries; memory is only spent on entries that exist. */
export const SET_MAX_ELEMENTS = 1_048_576;

/** Prefix of every set Portcullis owns; sets with it that the ruleset no longer uses are destroyed. */
export const SET_PREFIX = 'pc-';

export const SET = {
  quarantine: 'pc-quarantine',
  isolate: 'pc-isolate',
  /**
   * Source addresses blocked for a while (failed-authentication response, docs/policy.md): entries carry their
   * own timeout in the kernel. Not compiled from the store and never swapped: a re-apply keeps the entries.
   */
  blocked: 'pc-blocked',
  /** device, proto:port, peer network — for entries with ports (the common case). */
  from: 'pc-from',
  to: 'pc-to',
} as const;

/**
 * Entries without ports (a protocol, or anything, to a peer) cannot share one set: this kernel has no
 * hash:net,net, and a port range would be 65,535 entries. They are grouped by (direction, protocol, peer):
 * each group is a device set, a peer set and one rule. Groups grow with distinct peers (a MUD file's model,
 * a manufacturer, a controller class), not with devices. Set names derive from the group's key, so a name
 * always means the same group and a swap never pairs old rules with new members.
 */
interface Group {
  key: string;
  direction: 'from-device' | 'to-device';
  protocol: AllowEntry['protocol'];
  devices: Set<string>;
  peers: Set<string>;
}

function groupSetNames(key: string, direction: Group['direction']): { devices: string; peers: string } {
  const h = createHash('sha256').update(key).digest('hex').slice(0, 10);
  const d = direction === 'from-device' ? 'f' : 't';
  return { devices: `pc-${d}${h}-d`, peers: `pc-${d}${h}-p` };
}

interface Context {
  input: CompileInput;
  warnings: string[];
  byManufacturer: Map<string, string[]>;
  byMudUrl: Map<string, string[]>;
  localNetworks: string[];
}

/** The peer's networks in ipset spelling; empty when it resolves to nothing (then nothing is allowed). */
function peerNetworks(ctx: Context, peer: Peer, list: AllowList, selfAddress: string): string[] {
  const hosts = (addresses: readonly string[]) =>
    addresses
      .filter((a) => a !== selfAddress)
      .map((a) => ipsetNetwork(parseIpv4Network(a) ?? { base: 0, prefix: 32 }));
  switch (peer.kind) {
    case 'cidr':
      return [ipsetNetwork(validNetwork(peer.cidr))];
    case 'dns': {
      const found = ctx.input.dns.get(peer.name);
      if (!found || found.length === 0)
        ctx.warnings.push(`${list.deviceId}: ${peer.name} did not resolve; allows nothing`);
      return hosts(found ?? []);
    }
    case 'local-networks':
      return ctx.localNetworks;
    case 'same-manufacturer':
      return hosts(list.manufacturer ? (ctx.byManufacturer.get(list.manufacturer) ?? []) : []);
    case 'manufacturer':
      return hosts(ctx.byManufacturer.get(peer.authority) ?? []);
    case 'model':
      return hosts(ctx.byMudUrl.get(peer.mudUrl) ?? []);
    case 'controller':
    case 'my-controller': {
      const uri = peer.kind === 'controller' ? peer.uri : list.mudUrl;
      const found = ctx.input.controllers.filter((c) => c.uri === uri).map((c) => c.address);
      if (found.length === 0)
        ctx.warnings.push(`${list.deviceId}: no controller registered for ${uri}; allows nothing`);
      return hosts(found);
    }
  }
}

/** What makes two devices' peers the same group: the peer as the site resolves it, not as the entry says it. */
function peerKey(peer: Peer, list: AllowList): string {
  switch (peer.kind) {
    case 'cidr':
      return `cidr:${ipsetNetwork(parseIpv4Network(peer.cidr) ?? { base: 0, prefix: 32 })}`;
    case 'dns':
      return `dns:${peer.name}`;
    case 'local-networks':
      return 'local-networks';
    case 'same-manufacturer':
      return `manufacturer:${list.manufacturer ?? ''}`;
    case 'manufacturer':
      return `manufacturer:${peer.authority}`;
    case 'model':
      return `model:${peer.mudUrl}`;
    case 'controller':
      return `controller:${peer.uri}`;
    case 'my-controller':
      return `controller:${list.mudUrl ?? ''}`;
  }
}

function push(map: Map<string, string[]>, key: string, value: string): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

/** The devices that hold an address in a configured segment (where their allow-lists may apply). */
function placedDevices(ctx: Context): Map<string, Device> {
  const segments = new Map(ctx.input.segments.map((s) => [s.name, s]));
  const placed = new Map<string, Device>();
  for (const d of ctx.input.devices) {
    if (!d.address) continue;
    const seg = d.segment ? segments.get(d.segment) : undefined;
    const net = seg && parseIpv4Network(seg.subnet);
    if (!seg || !net || !isHostOf(net, d.address)) {
      ctx.warnings.push(
        `${d.id}: address ${d.address} is not inside a configured segment; it is allowed nothing`,
      );
      continue;
    }
    placed.set(d.id, d);
  }
  return placed;
}

function iptablesDocument(input: CompileInput, groups: readonly Group[]): string {
  const { ports, dtlsRateLimit: rl } = input;
  const L: string[] = [
    '*filter',
    ':INPUT DROP [0:0]',
    ':FORWARD DROP [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':pc-dtls - [0:0]',
    ':pc-quarantined - [0:0]',
    // The gateway itself.
    '-A INPUT -i lo -j ACCEPT',
    // A blocked source (brute force) reaches nothing, not even the DTLS port, until its entry times out.
    `-A INPUT -m set --match-set ${SET.blocked} src -j DROP`,
    // Quarantine and rate limits come before connection tracking, so they also cut flows already open.
    `-A INPUT -m set --match-set ${SET.isolate} src -j DROP`,
    `-A INPUT -p udp -m udp --dport ${ports.dtls} -j pc-dtls`,
    `-A INPUT -m set --match-set ${SET.quarantine} src -j pc-quarantined`,
    '-A INPUT -m conntrack --ctstate INVALID -j DROP',
    '-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
  ];
  for (const s of sortedSegments(input.segments)) {
    const i = segmentInterface(s);
    const net = formatNetwork(validNetwork(s.subnet));
    // DHCP before the anti-spoofing rule: a client without a lease sends from 0.0.0.0.
    L.push(`-A INPUT -i ${i} -p udp -m udp --sport 68 --dport 67 -j ACCEPT`);
    L.push(`-A INPUT ! -s ${net} -i ${i} -j DROP`);
    L.push(`-A INPUT -s ${net} -i ${i} -p udp -m udp --dport 53 -j ACCEPT`);
    L.push(`-A INPUT -s ${net} -i ${i} -p tcp -m tcp --dport 53 -j ACCEPT`);
    if (s.role === 'sensors')
      L.push(`-A INPUT -s ${net} -i ${i} -p udp -m udp --dport ${ports.dtls} -j ACCEPT`);
    if (s.role === 'management')
      L.push(`-A INPUT -s ${net} -i ${i} -p tcp -m tcp --dport ${ports.ui} -j ACCEPT`);
  }
  L.push(
    `-A FORWARD -m set --match-set ${SET.blocked} src -j DROP`,
    `-A FORWARD -m set --match-set ${SET.quarantine} src -j DROP`,
    `-A FORWARD -m set --match-set ${SET.quarantine} dst -j DROP`,
    `-A FORWARD -m set --match-set ${SET.isolate} src -j DROP`,
    `-A FORWARD -m set --match-set ${SET.isolate} dst -j DROP`,
    '-A FORWARD -m conntrack --ctstate INVALID -j DROP',
    '-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
  );
  // Anti-spoofing: a segment's addresses only ever arrive on its interface, and it sends only its addresses.
  for (const s of sortedSegments(input.segments)) {
    const i = segmentInterface(s);
    const net = formatNetwork(validNetwork(s.subnet));
    L.push(`-A FORWARD ! -s ${net} -i ${i} -j DROP`, `-A FORWARD -s ${net} ! -i ${i} -j DROP`);
  }
  // ip = the device; port = the connection's destination port; net = the peer.
  L.push(`-A FORWARD -m set --match-set ${SET.from} src,dst,dst -j ACCEPT`);
  L.push(`-A FORWARD -m set --match-set ${SET.to} dst,dst,src -j ACCEPT`);
  for (const g of groups) {
    const names = groupSetNames(g.key, g.direction);
    const proto = g.protocol === 'any' ? '' : ` -p ${g.protocol}`;
    const [dev, peer] = g.direction === 'from-device' ? ['src', 'dst'] : ['dst', 'src'];
    L.push(
      `-A FORWARD${proto} -m set --match-set ${names.devices} ${dev} -m set --match-set ${names.peers} ${peer} -j ACCEPT`,
    );
  }
  for (const s of sortedSegments(input.segments)) {
    if (s.defaultPolicy === 'allow' && input.wanInterface) {
      L.push(`-A FORWARD -i ${segmentInterface(s)} -o ${input.wanInterface} -j ACCEPT`);
    }
  }
  L.push(
    `-A pc-dtls -m hashlimit --hashlimit-above ${rl.perSecond}/sec --hashlimit-burst ${rl.burst} --hashlimit-mode srcip --hashlimit-name pc-dtls -j DROP`,
    // Observed, not trusted: a quarantined device keeps the DTLS endpoint (unless isolated) and nothing else.
    `-A pc-quarantined -p udp -m udp --dport ${ports.dtls} -j ACCEPT`,
    '-A pc-quarantined -j DROP',
    'COMMIT',
  );
  return `${L.join('\n')}\n`;
}

function sortedSegments(segments: readonly SegmentConfig[]): SegmentConfig[] {
  return [...segments].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function ipsetDocument(sets: readonly IpSet[]): string {
  const lines: string[] = [];
  for (const s of sets) {
    lines.push(`create ${s.name} ${s.type} family inet hashsize 1024 maxelem ${SET_MAX_ELEMENTS}`);
    for (const e of s.entries) lines.push(`add ${s.name} ${e}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Turns the site's state into one ruleset. Deterministic: the same state gives byte-identical documents (and
 * hash). The rule count depends on the number of segments only; devices live in ipset sets.
 */
export function compileRuleset(input: CompileInput): CompiledRuleset {
  for (const [what, port] of Object.entries(input.ports)) {
    if (port < 1) {
      throw new SegmentationError(
        'ERR_FIREWALL_COMPILE',
        `${what} port ${port} cannot be firewalled; set a fixed port`,
      );
    }
  }
  const ctx: Context = {
    input,
    warnings: [],
    byManufacturer: new Map(),
    byMudUrl: new Map(),
    localNetworks: sortedSegments(input.segments).map((s) => ipsetNetwork(validNetwork(s.subnet))),
  };
  const placed = placedDevices(ctx);
  const listByDevice = new Map(input.allowLists.map((l) => [l.deviceId, l]));
  for (const l of input.allowLists) {
    const d = placed.get(l.deviceId);
    if (!d?.address || d.state === 'decommissioned' || d.state === 'pending') continue;
    if (l.manufacturer) push(ctx.byManufacturer, l.manufacturer, d.address);
    if (l.mudUrl) push(ctx.byMudUrl, l.mudUrl, d.address);
  }
  const quarantine = new Set<string>();
  const isolate = new Set<string>();
  const from = new Set<string>();
  const to = new Set<string>();
  const groups = new Map<string, Group>();
  for (const d of input.devices) {
    if (!d.address) continue;
    // Restrictions apply wherever the address is; allowances only to a device placed in its segment.
    if (d.state === 'decommissioned' || (d.state === 'quarantined' && d.quarantine?.mode === 'isolate')) {
      isolate.add(d.address);
      quarantine.add(d.address);
    } else if (d.state === 'quarantined') {
      quarantine.add(d.address);
    }
    const list = listByDevice.get(d.id);
    if (!list || !placed.has(d.id) || (d.state !== 'active' && d.state !== 'quarantined')) continue;
    for (const e of list.entries) {
      const nets = peerNetworks(ctx, e.peer, list, d.address);
      if (e.ports !== null) {
        const set = e.direction === 'from-device' ? from : to;
        for (const p of e.ports) for (const n of nets) set.add(`${d.address},${e.protocol}:${p},${n}`);
        continue;
      }
      const key = `${e.direction}|${e.protocol}|${peerKey(e.peer, list)}`;
      const g = groups.get(key) ?? {
        key,
        direction: e.direction,
        protocol: e.protocol,
        devices: new Set(),
        peers: new Set(),
      };
      groups.set(key, g);
      g.devices.add(d.address);
      for (const n of nets) g.peers.add(n);
    }
  }
  const sortedGroups = [...groups.values()].sort((a, b) => (a.key < b.key ? -1 : 1));
  const sorted = (s: Set<string>) => [...s].sort();
  const sets: IpSet[] = [
    { name: SET.quarantine, type: 'hash:ip', entries: sorted(quarantine) },
    { name: SET.isolate, type: 'hash:ip', entries: sorted(isolate) },
    { name: SET.from, type: 'hash:ip,port,net', entries: sorted(from) },
    { name: SET.to, type: 'hash:ip,port,net', entries: sorted(to) },
    ...sortedGroups.flatMap((g): IpSet[] => {
      const names = groupSetNames(g.key, g.direction);
      return [
        { name: names.devices, type: 'hash:ip', entries: sorted(g.devices) },
        { name: names.peers, type: 'hash:net', entries: sorted(g.peers) },
      ];
    }),
  ];
  for (const s of sets) {
    if (s.entries.length > SET_MAX_ELEMENTS) {
      throw new SegmentationError(
        'ERR_FIREWALL_COMPILE',
        `set ${s.name} would hold ${s.entries.length} entries (limit ${SET_MAX_ELEMENTS})`,
      );
    }
  }
  const iptables = iptablesDocument(input, sortedGroups);
  const ipsets = ipsetDocument(sets);
  const hash = createHash('sha256').update(iptables).update('\0').update(ipsets).digest('hex');
  return { iptables, ipsets, sets, hash, warnings: [...new Set(ctx.warnings)].sort() };
}
