// `npm run bench -- firewall`: compile + apply time of Portcullis's set-based ruleset for 100, 1,000 and
// 10,000 devices, and the cost of one quarantine at 10,000 devices — against the naive one-rule-per-device
// iptables ruleset doing the same work in the same run, each in its own network namespace (needs root).
import { execFileSync } from 'node:child_process';
import { execa } from 'execa';
import {
  compileRuleset,
  FirewallApplier,
  SET,
  systemFirewallTools,
} from '../gateway/src/segmentation/index.ts';
import { sensorAddress, siteInput } from '../test/helpers/site-model.ts';
import { parseOptions, round } from './lib/load.ts';

const address = sensorAddress;

/** n sensors with the thermometer allow-list; device `quarantined` (if any) quarantined. */
function benchInput(n: number, quarantined: number) {
  const input = siteInput(n);
  input.devices = input.devices.map((d, i) =>
    i === quarantined
      ? {
          ...d,
          state: 'quarantined',
          quarantine: { mode: 'observe', reason: 'bench', since: '', previousState: 'active' },
        }
      : d,
  );
  return input;
}

/** The same policy without sets: every allow-list entry and every quarantine is its own rule. */
function naiveDocument(n: number, portcullisIptables: string): string {
  const perDevice: string[] = [];
  for (let i = 0; i < n; i++) {
    const a = address(i);
    perDevice.push(`-A FORWARD -s ${a}/32 -d 198.51.100.10/32 -p tcp -m tcp --dport 8883 -j ACCEPT`);
    perDevice.push(`-A FORWARD -s 10.30.0.5/32 -d ${a}/32 -p tcp -m tcp --dport 8080 -j ACCEPT`);
  }
  const lines = portcullisIptables.split('\n').filter((l) => !l.includes('--match-set pc-'));
  const commit = lines.lastIndexOf('COMMIT');
  return [...lines.slice(0, commit), ...perDevice, ...lines.slice(commit)].join('\n');
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

export async function firewallBench(argv: string[]) {
  const o = parseOptions('firewall', argv, { reps: 3, quarantines: 7 });
  if (process.getuid?.() !== 0)
    throw new Error('the firewall benchmark needs root (it creates network namespaces)');
  const tag = `pcb${process.pid % 100000}`;
  const nsPc = `${tag}-pc`;
  const nsNaive = `${tag}-naive`;
  for (const ns of [nsPc, nsNaive]) execFileSync('ip', ['netns', 'add', ns]);
  const naive = (args: string[], input?: string) =>
    execa('ip', ['netns', 'exec', nsNaive, ...args], { input });
  try {
    const applier = new FirewallApplier(systemFirewallTools({ netns: nsPc }), `/tmp/${tag}.lock`);
    const sizes = [];
    for (const n of [100, 1000, 10_000]) {
      process.stderr.write(`firewall: ${n} devices…\n`);
      const compileMs: number[] = [];
      const applyMs: number[] = [];
      const naiveMs: number[] = [];
      let rules = 0;
      let setEntries = 0;
      let naiveRules = 0;
      for (let rep = 0; rep < o.reps; rep++) {
        // A different quarantined device each time, so every apply really changes something.
        const input = benchInput(n, rep);
        let compiled: ReturnType<typeof compileRuleset> | undefined;
        compileMs.push(
          await timed(async () => {
            compiled = compileRuleset(input);
          }),
        );
        const c = compiled as ReturnType<typeof compileRuleset>;
        applyMs.push((await applier.apply(c)).totalMs);
        rules = c.iptables.split('\n').filter((l) => l.startsWith('-A ')).length;
        setEntries = c.sets.reduce((k, s) => k + s.entries.length, 0);
        const doc = naiveDocument(n, c.iptables).replace(
          'COMMIT',
          `-A FORWARD -s ${address(rep)}/32 -j DROP\nCOMMIT`,
        );
        naiveRules = doc.split('\n').filter((l) => l.startsWith('-A ')).length;
        // The same steps the applier takes: dry run, apply, read back.
        naiveMs.push(
          await timed(async () => {
            await naive(['iptables-restore', '--test'], doc);
            await naive(['iptables-restore'], doc);
            await naive(['iptables-save', '-t', 'filter']);
          }),
        );
      }
      const pcTotal = median(compileMs) + median(applyMs);
      sizes.push({
        devices: n,
        portcullis: {
          compileMs: round(median(compileMs), 1),
          applyMs: round(median(applyMs), 1),
          rules,
          setEntries,
        },
        naive: { applyMs: round(median(naiveMs), 1), rules: naiveRules },
        naiveOverPortcullis: round(median(naiveMs) / pcTotal, 2),
      });
    }
    process.stderr.write('firewall: quarantine at 10,000 devices…\n');
    const pcQ: number[] = [];
    const naiveQ: number[] = [];
    for (let i = 0; i < o.quarantines; i++) {
      const a = address(100 + i);
      pcQ.push(await timed(() => applier.setMember(SET.quarantine, a, true)));
      naiveQ.push(await timed(() => naive(['iptables', '-I', 'FORWARD', '1', '-s', a, '-j', 'DROP'])));
    }
    const at10k = sizes.at(-1);
    return {
      bench: 'firewall',
      note: 'medians; apply = stage sets + iptables-restore --test + swap/restore + read-back; naive = the same steps on one rule per allow-list entry',
      sizes,
      quarantineAt10k: {
        portcullisMs: round(median(pcQ), 1),
        naiveMs: round(median(naiveQ), 1),
        naiveOverPortcullis: round(median(naiveQ) / median(pcQ), 2),
      },
      targets: {
        apply10kUnder1s:
          (at10k?.portcullis.compileMs ?? Infinity) + (at10k?.portcullis.applyMs ?? Infinity) < 1000,
        quarantine10kUnder100ms: median(pcQ) < 100,
      },
    };
  } finally {
    for (const ns of [nsPc, nsNaive]) execFileSync('ip', ['netns', 'del', ns]);
  }
}
