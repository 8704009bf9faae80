// `npm run bench -- <name> [options]`: runs one benchmark and prints its JSON report on stdout (progress on
// stderr). Benchmarks measure Portcullis against a peer in the same run and report ratios; they are never
// timed assertions in the test suite.
import { anomalyBench } from './anomaly.ts';
import { auditAnchorBench } from './audit-anchor.ts';
import { dtlsBench } from './dtls.ts';
import { dtlsFloodBench } from './dtls-flood.ts';
import { e2eBench } from './e2e.ts';
import { firewallBench } from './firewall.ts';
import { fleetBench } from './fleet.ts';
import { footprintBench } from './footprint.ts';
import { policyBench } from './policy.ts';
import { sessionMemoryBench } from './session-memory.ts';
import { sparkplugBench } from './sparkplug.ts';
import { uiBench } from './ui.ts';
import { uplinkBench } from './uplink.ts';

const BENCHES: Record<string, (argv: string[]) => Promise<unknown>> = {
  anomaly: anomalyBench,
  'audit-anchor': auditAnchorBench,
  dtls: dtlsBench,
  'dtls-flood': dtlsFloodBench,
  e2e: e2eBench,
  firewall: firewallBench,
  fleet: fleetBench,
  footprint: footprintBench,
  policy: policyBench,
  'session-memory': sessionMemoryBench,
  sparkplug: sparkplugBench,
  ui: uiBench,
  uplink: uplinkBench,
};

const [name, ...rest] = process.argv.slice(2);
const bench = name ? BENCHES[name] : undefined;
if (!bench) {
  process.stderr.write(`usage: npm run bench -- <${Object.keys(BENCHES).join('|')}> [options]\n`);
  process.exit(2);
}
try {
  process.stdout.write(`${JSON.stringify(await bench(rest), null, 2)}\n`);
} catch (err) {
  // A bench's option parser throws its usage line: that is the whole answer, not a stack trace.
  const message = (err as Error).message;
  if (!message.startsWith('usage:')) throw err;
  process.stderr.write(`${message}\n`);
  process.exit(2);
}
