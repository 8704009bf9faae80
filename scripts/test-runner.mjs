// Runs test files with Node's own test runner (the TAP reporter, its summary last), one file at a time and in the
// order given: `node --test` sorts the files it is given by name, so a whole run could not choose its order.
//   node --import tsx scripts/test-runner.mjs [--file-timeout MS] [--test-name-pattern RE]... FILE...
// --file-timeout bounds each file as a whole (its tests are cancelled and fail). Exit status 1 when a test failed,
// 2 on bad usage.
import { resolve } from 'node:path';
import { run } from 'node:test';
import { tap } from 'node:test/reporters';

const usage = 'usage: test-runner.mjs [--file-timeout MS] [--test-name-pattern RE]... FILE...';
let timeout = Number.POSITIVE_INFINITY;
const files = [];
const patterns = [];
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--file-timeout' && /^\d+$/.test(args[i + 1] ?? '')) timeout = Number(args[++i]);
  else if (a === '--test-name-pattern' && i + 1 < args.length) patterns.push(args[++i]);
  else if (a.startsWith('--test-name-pattern=')) patterns.push(a.slice('--test-name-pattern='.length));
  else if (a.startsWith('-')) {
    console.error(`test-runner: unknown option ${a}\n${usage}`);
    process.exit(2);
  } else files.push(resolve(a));
}
if (files.length === 0) {
  console.error(`test-runner: no test files\n${usage}`);
  process.exit(2);
}

let failed = false;
const stream = run({
  files,
  concurrency: 1,
  timeout,
  ...(patterns.length > 0 ? { testNamePatterns: patterns } : {}),
});
// As `node --test` counts them: a failing test marked todo does not fail the run.
stream.on('test:fail', (data) => {
  if (data.todo === undefined || data.todo === false) failed = true;
});
stream.compose(tap).pipe(process.stdout);
process.on('exit', () => {
  if (failed) process.exitCode = 1;
});
