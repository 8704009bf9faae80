import { readFileSync } from 'node:fs';
import type { SegmentConfig } from '../../gateway/src/config/schema.ts';
import { type CompileInput, parseMud } from '../../gateway/src/segmentation/index.ts';
import type { Device } from '../../gateway/src/store/index.ts';

/** The thermometer MUD file of the tests and docs: MQTT/TLS to its cloud by name; its controller polls it. */
export const THERMO_MUD = readFileSync(new URL('../fixtures/mud/thermo.json', import.meta.url), 'utf8');

/** A site for compiler tests and the firewall bench: sensors (a /16), an office allowed out, management. */
export const SITE_SEGMENTS: SegmentConfig[] = [
  {
    name: 'sensors',
    role: 'sensors',
    vlanId: 20,
    parentInterface: 'lan0',
    subnet: '10.20.0.0/16',
    gatewayAddress: '10.20.0.1',
    defaultPolicy: 'deny',
  },
  {
    name: 'corp',
    role: 'protected',
    interface: 'corp0',
    subnet: '10.30.0.0/24',
    gatewayAddress: '10.30.0.1',
    defaultPolicy: 'allow',
  },
  {
    name: 'mgmt',
    role: 'management',
    vlanId: 99,
    parentInterface: 'lan0',
    subnet: '10.99.0.0/24',
    gatewayAddress: '10.99.0.1',
    defaultPolicy: 'deny',
  },
];

/** The i-th sensor's address in the /16 (skips .0, .1 and the top of each /24). */
export function sensorAddress(i: number): string {
  return `10.20.${Math.floor(i / 250)}.${(i % 250) + 2}`;
}

export function siteDevice(id: string, address: string | null, over: Partial<Device> = {}): Device {
  return {
    id,
    name: null,
    type: null,
    credentialKind: 'psk',
    segment: 'sensors',
    state: 'active',
    firstSeen: null,
    lastSeen: null,
    firmwareVersion: null,
    address,
    quarantine: null,
    policyProfile: null,
    policyOverrides: {},
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    ...over,
  };
}

/** n active sensors, each with the thermometer allow-list; its name resolved and its controller registered. */
export function siteInput(n: number, over: Partial<CompileInput> = {}): CompileInput {
  const devices = Array.from({ length: n }, (_, i) => siteDevice(`d${i}`, sensorAddress(i)));
  const mud = parseMud(THERMO_MUD, 'x');
  return {
    segments: SITE_SEGMENTS,
    ports: { dtls: 5684, ui: 8443 },
    wanInterface: 'wan0',
    dtlsRateLimit: { perSecond: 200, burst: 400 },
    devices,
    allowLists: devices.map((d) => ({ ...mud, deviceId: d.id })),
    controllers: [{ uri: 'https://sensors.example.com/thermo-2000.json', address: '10.30.0.5' }],
    dns: new Map([['telemetry.cloud.example', ['198.51.100.10']]]),
    ...over,
  };
}
