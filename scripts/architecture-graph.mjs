#!/usr/bin/env node
// Draws the layering of docs/architecture.md from the real import graph: dependency-cruiser reads every import of
// gateway/src and ui/src (with the rules of .dependency-cruiser.cjs), each module is folded into its unit (a folder
// of gateway/src, the UI, or the small shared files), and the units are placed in their layer. Prints the Mermaid
// text; with --write it replaces the block between the markers in docs/architecture.md; with --check it exits 1
// when that block is not what the code draws (the test suite runs it).
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { cruise } from 'dependency-cruiser';

const root = join(import.meta.dirname, '..');
const require = createRequire(import.meta.url);
const config = require(join(root, '.dependency-cruiser.cjs'));
const DOC = join(root, 'docs', 'architecture.md');
const BEGIN = '<!-- import-graph:begin (npm run docs:graph) -->';
const END = '<!-- import-graph:end -->';

const LAYERS = [
  ['entry points', /^(cli|control|fleet|main|ui)$/],
  [
    'services',
    /^(identity|policy|anomaly|segmentation|updates|firmware|users|uplink|audit|compliance|hardware|pull|datapath|flows|core|health)$/,
  ],
  ['base', /.*/],
];

/** gateway/src/dtls/server.ts → dtls; gateway/src/core.ts → core; small shared files → shared; ui/src/… → ui. */
function unitOf(path) {
  if (path.startsWith('ui/src/')) return 'ui';
  const m = /^gateway\/src\/([^/]+)(\/|\.ts$)/.exec(path);
  if (!m) return null;
  if (m[2] === '/') return m[1];
  return ['core', 'main', 'health'].includes(m[1]) ? m[1] : 'shared';
}

const result = await cruise(['gateway/src', 'ui/src'], {
  ...config.options,
  ruleSet: { forbidden: config.forbidden },
  includeOnly: '^(gateway/src|ui/src)/',
  validate: true,
});
const edges = new Map();
const units = new Set();
for (const mod of result.output.modules) {
  const from = unitOf(mod.source);
  if (!from) continue;
  units.add(from);
  for (const dep of mod.dependencies) {
    const to = unitOf(dep.resolved);
    if (!to || to === from) continue;
    const key = `${from}>${to}`;
    const bad = (dep.rules ?? []).some((r) => r.severity === 'error');
    edges.set(key, (edges.get(key) ?? false) || bad);
  }
}
const id = (u) => u.replace(/[^a-z]/g, '_');
const lines = ['```mermaid', 'flowchart TB'];
for (const [name, test] of LAYERS) {
  const members = [...units].filter(
    (u) =>
      test.test(u) &&
      !LAYERS.slice(
        0,
        LAYERS.findIndex((l) => l[0] === name),
      ).some(([, t]) => t.test(u)),
  );
  lines.push(`  subgraph ${id(name)}["${name}"]`, '    direction LR');
  for (const u of members.sort()) lines.push(`    ${id(u)}["${u}"]`);
  lines.push('  end');
}
const sorted = [...edges.entries()].sort(([a], [b]) => a.localeCompare(b));
let n = 0;
const red = [];
for (const [key, bad] of sorted) {
  const [from, to] = key.split('>');
  lines.push(`  ${id(from)} --> ${id(to)}`);
  if (bad) red.push(n);
  n++;
}
if (red.length > 0) lines.push(`  linkStyle ${red.join(',')} stroke:#c00,stroke-width:2px`);
lines.push('```');
const graph = lines.join('\n');

const mode = process.argv[2];
if (mode === '--write' || mode === '--check') {
  const doc = readFileSync(DOC, 'utf8');
  const a = doc.indexOf(BEGIN);
  const b = doc.indexOf(END);
  if (a < 0 || b < a) {
    process.stderr.write(`${DOC}: markers ${BEGIN} … ${END} not found\n`);
    process.exit(2);
  }
  const next = `${doc.slice(0, a + BEGIN.length)}\n${graph}\n${doc.slice(b)}`;
  if (mode === '--write') writeFileSync(DOC, next);
  else if (next !== doc) {
    process.stderr.write('docs/architecture.md: the import graph changed; run `npm run docs:graph`\n');
    process.exit(1);
  }
} else {
  process.stdout.write(`${graph}\n`);
}
