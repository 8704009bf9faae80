// IPv4 addresses and networks: the config, identity and segmentation all need them, so they live below all three.
import ipaddr from 'ipaddr.js';

/** An IPv4 network in canonical form (`10.20.0.0/24`); single addresses are `/32`. */
export interface Ipv4Network {
  base: number;
  prefix: number;
}

function toInt(a: ipaddr.IPv4): number {
  const [b0, b1, b2, b3] = a.octets as [number, number, number, number];
  return ((b0 << 24) | (b1 << 16) | (b2 << 8) | b3) >>> 0;
}

function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export function isIpv4(s: string): boolean {
  return ipaddr.IPv4.isValidFourPartDecimal(s);
}

/** Parses `a.b.c.d/n` (host bits must be zero) or a bare address (as /32); undefined if it is neither. */
export function parseIpv4Network(s: string): Ipv4Network | undefined {
  const [addr, len, ...rest] = s.split('/');
  if (rest.length > 0 || addr === undefined || !isIpv4(addr)) return undefined;
  const prefix = len === undefined ? 32 : Number(len);
  if (!/^\d{1,2}$/.test(len ?? '32') || prefix > 32) return undefined;
  const base = toInt(ipaddr.IPv4.parse(addr));
  if ((base & mask(prefix)) >>> 0 !== base) return undefined;
  return { base, prefix };
}

export function formatIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export function formatNetwork(n: Ipv4Network): string {
  return `${formatIpv4(n.base)}/${n.prefix}`;
}

/** ipset's own spelling: a host network is written without `/32`. */
export function ipsetNetwork(n: Ipv4Network): string {
  return n.prefix === 32 ? formatIpv4(n.base) : formatNetwork(n);
}

export function networkContains(n: Ipv4Network, address: string): boolean {
  if (!isIpv4(address)) return false;
  return (toInt(ipaddr.IPv4.parse(address)) & mask(n.prefix)) >>> 0 === n.base;
}

export function networksOverlap(a: Ipv4Network, b: Ipv4Network): boolean {
  const p = Math.min(a.prefix, b.prefix);
  return (a.base & mask(p)) >>> 0 === (b.base & mask(p)) >>> 0;
}

/** A usable host address of the network: not its network or broadcast address (for prefixes below /31). */
export function isHostOf(n: Ipv4Network, address: string): boolean {
  if (!networkContains(n, address)) return false;
  if (n.prefix >= 31) return true;
  const a = toInt(ipaddr.IPv4.parse(address));
  return a !== n.base && a !== (n.base | ~mask(n.prefix)) >>> 0;
}
