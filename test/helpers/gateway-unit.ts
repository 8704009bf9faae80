import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const GATEWAY_UNIT = fileURLToPath(
  new URL('../../systemd/portcullis-gateway.service', import.meta.url),
);

/** How the appliance starts the gateway: node's own flags and the process environment its unit sets. */
export interface UnitStart {
  /** Flags between the node binary and bin/portcullis.js in ExecStart= (V8 heap limits, say). */
  nodeArgs: string[];
  /** Environment= of the unit, but PORTCULLIS_CONFIG (a bench or test passes --config). */
  env: Record<string, string>;
}

/**
 * Reads systemd/portcullis-gateway.service so that a bench measures the process the appliance runs — the same
 * node flags and environment (MALLOC_ARENA_MAX, say) — not a bare `node bin/portcullis.js start` that the
 * appliance never runs. Only the forms the unit uses are understood; anything else is refused, not guessed.
 */
export function gatewayUnitStart(
  // PORTCULLIS_BENCH_UNIT: another unit file, for an A/B run of a change to its flags.
  unitText = readFileSync(process.env.PORTCULLIS_BENCH_UNIT || GATEWAY_UNIT, 'utf8'),
): UnitStart {
  const service = unitText.split(/^\[Service\]\s*$/m)[1]?.split(/^\[/m)[0];
  if (service === undefined) throw new Error('the gateway unit has no [Service] section');
  const lines = service.split('\n').map((l) => l.trim());
  const execStarts = lines.filter((l) => l.startsWith('ExecStart='));
  if (execStarts.length !== 1) throw new Error('the gateway unit must have exactly one ExecStart=');
  const argv = (execStarts[0] as string).slice('ExecStart='.length).split(/\s+/);
  const script = argv.findIndex((a) => a.endsWith('/bin/portcullis.js'));
  if (!/(^|\/)node$/.test(argv[0] ?? '') || script < 1 || argv[script + 1] !== 'start') {
    throw new Error(`ExecStart= is not "node [flags] …/bin/portcullis.js start": ${execStarts[0]}`);
  }
  const env: Record<string, string> = {};
  for (const l of lines.filter((x) => x.startsWith('Environment='))) {
    const m = /^Environment=([A-Za-z_][A-Za-z0-9_]*)=(\S*)$/.exec(l);
    if (!m) throw new Error(`Environment= not of the form KEY=value: ${l}`);
    if (m[1] !== 'PORTCULLIS_CONFIG') env[m[1] as string] = m[2] as string;
  }
  return { nodeArgs: argv.slice(1, script), env };
}
