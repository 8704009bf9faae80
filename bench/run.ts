// `npm run bench -- <name>`: runs one benchmark and prints its JSON report. Benchmarks measure Portcullis
// against a peer in the same run and report ratios; they are never timed assertions in the test suite.
const BENCHES: Record<string, () => Promise<unknown>> = {};

const name = process.argv[2];
if (!name || !(name in BENCHES)) {
  const known = Object.keys(BENCHES);
  process.stderr.write(`usage: npm run bench -- <${known.join('|') || 'no benchmarks yet'}>\n`);
  process.exit(2);
}
process.stdout.write(`${JSON.stringify(await BENCHES[name]!(), null, 2)}\n`);
