/**
 * `npm run bench -- uplink`: what publishing costs the uplink's thread — the uplink's own MQTT connection
 * (gateway/src/uplink/connection.ts: mqtt.js with its debug quiet and its writes gathered per turn) against mqtt.js
 * as it comes with the same options, in the same run, to the same mosquitto
 * (mutual TLS 1.3). Each side publishes `--publishes` QoS 1 messages with four user properties from a process of
 * its own, started with the gateway unit's node flags, in `--rounds` alternated rounds. Reported per side: CPU per
 * publish (the process's utime + stime), scavenges and their time per 1,000 publishes, mark-compact collections; and the
 * uplink's figures as ratios of the peer's.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gatewayUnitStart } from '../test/helpers/gateway-unit.ts';
import { startBroker } from '../test/helpers/mosquitto.ts';
import { makePki } from '../test/helpers/pki.ts';
import { median, parseOptions, round } from './lib/load.ts';

const run = promisify(execFile);
const PUBLISHER = fileURLToPath(new URL('./lib/uplink-publisher.ts', import.meta.url));
const log = (msg: string) => process.stderr.write(`[bench uplink] ${msg}\n`);

interface Sample {
  cpuMs: number;
  wallMs: number;
  publishes: number;
  scavenges: number;
  scavengeMs: number;
  majors: number;
  majorMs: number;
}

function perSide(samples: Sample[]) {
  const per = (f: (s: Sample) => number) => samples.map((s) => round(f(s), 4));
  return {
    cpuMsPerPublish: per((s) => s.cpuMs / s.publishes),
    publishesPerSecond: per((s) => (s.publishes / s.wallMs) * 1000).map((x) => Math.round(x)),
    scavengesPer1000: per((s) => (s.scavenges / s.publishes) * 1000),
    scavengeMsPer1000: per((s) => (s.scavengeMs / s.publishes) * 1000),
    majorCollections: samples.map((s) => s.majors),
  };
}

export async function uplinkBench(argv: string[]): Promise<unknown> {
  const o = parseOptions('uplink', argv, { publishes: 50_000, rounds: 3 });
  const pki = makePki();
  const broker = await startBroker({ caPath: pki.caPath, server: pki.broker });
  const { nodeArgs } = gatewayUnitStart();
  const { DEBUG: _, ...env } = process.env;
  const side = async (variant: 'uplink' | 'plain'): Promise<Sample> => {
    const args = [...nodeArgs, '--import', 'tsx', PUBLISHER, variant, broker.url, String(o.publishes)];
    args.push(pki.caPath, pki.client.certPath, pki.client.keyPath);
    const { stdout } = await run(process.execPath, args, { env, maxBuffer: 1 << 20 });
    return JSON.parse(stdout.trim().split('\n').at(-1) as string) as Sample;
  };
  try {
    const got: Record<'uplink' | 'plain', Sample[]> = { uplink: [], plain: [] };
    for (let r = 0; r < o.rounds; r++) {
      // Alternated, and the order flipped each round: neither side always runs on a warmer (or busier) machine.
      const order = r % 2 === 0 ? (['plain', 'uplink'] as const) : (['uplink', 'plain'] as const);
      for (const v of order) {
        log(`round ${r + 1}: ${v}`);
        got[v].push(await side(v));
      }
    }
    const ratio = (f: (s: Sample) => number) =>
      round(median(got.uplink.map(f)) / median(got.plain.map(f)), 2);
    return {
      bench: 'uplink',
      settings: { ...o, nodeArgs, broker: 'mosquitto, mutual TLS 1.3', inFlight: 512, batch: 64 },
      uplinkConnection: perSide(got.uplink),
      mqttJsAsItComes: perSide(got.plain),
      ratio: {
        cpuPerPublish: ratio((s) => s.cpuMs / s.publishes),
        scavengesPerPublish: ratio((s) => s.scavenges / s.publishes),
        scavengeTimePerPublish: ratio((s) => s.scavengeMs / s.publishes),
      },
    };
  } finally {
    await broker.dispose();
    pki.dispose();
  }
}
