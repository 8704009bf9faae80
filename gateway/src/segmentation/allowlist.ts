import { z } from 'zod';
import { parseIpv4Network } from '../net/ipv4.ts';

/**
 * Whom an allow-list entry lets a device talk to. Everything but `cidr` is resolved when the ruleset is
 * compiled (and DNS names again on a schedule): a peer that resolves to nothing allows nothing.
 */
export const peerSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('cidr'),
    cidr: z.string().refine((s) => parseIpv4Network(s) !== undefined, { error: 'must be an IPv4 network' }),
  }),
  z.strictObject({ kind: z.literal('dns'), name: z.string().min(1).max(253) }),
  /** Any segment of this site (RFC 8520 local-networks). */
  z.strictObject({ kind: z.literal('local-networks') }),
  /** Devices whose MUD URL has the same authority as this device's. */
  z.strictObject({ kind: z.literal('same-manufacturer') }),
  z.strictObject({ kind: z.literal('manufacturer'), authority: z.string().min(1) }),
  /** Devices with the same MUD URL. */
  z.strictObject({ kind: z.literal('model'), mudUrl: z.string().min(1) }),
  /** Addresses registered for a controller class URI (`portcullis mud controller add`). */
  z.strictObject({ kind: z.literal('controller'), uri: z.string().min(1) }),
  /** Addresses registered as controllers for this device's own MUD URL. */
  z.strictObject({ kind: z.literal('my-controller') }),
]);
export type Peer = z.infer<typeof peerSchema>;

export const allowEntrySchema = z
  .strictObject({
    /** For explanations: the MUD ACE name or a note. */
    name: z.string().max(128),
    /** Who opens the connection; replies flow through connection tracking. */
    direction: z.enum(['from-device', 'to-device']),
    protocol: z.enum(['tcp', 'udp', 'icmp', 'any']),
    /** Destination ports of the connection (on the peer for from-device, on the device for to-device). */
    ports: z.array(z.number().int().min(1).max(65535)).min(1).max(256).nullable(),
    peer: peerSchema,
  })
  .refine((e) => e.ports === null || e.protocol === 'tcp' || e.protocol === 'udp', {
    error: 'ports need protocol tcp or udp',
  });
export type AllowEntry = z.infer<typeof allowEntrySchema>;

export const allowListSchema = z.array(allowEntrySchema).max(1024);

export interface AllowList {
  deviceId: string;
  source: 'mud' | 'manual';
  mudUrl: string | null;
  /** The MUD URL's authority: what same-manufacturer compares. */
  manufacturer: string | null;
  entries: AllowEntry[];
}
