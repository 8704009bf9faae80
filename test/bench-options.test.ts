/**
 * The bench runner's answers to bad options: the usage line and exit status 2, not a stack trace; and what
 * `e2e`'s options mean (`--full` is issue 23's run; `--seen` has every device seen before its scale).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseE2eOptions } from '../bench/e2e.ts';

const RUN = fileURLToPath(new URL('../bench/run.ts', import.meta.url));
const bench = (...args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', RUN, ...args], { encoding: 'utf8', timeout: 60_000 });

describe('bench options', () => {
  it('answers an option a bench does not know with its usage line and status 2, without a stack trace', () => {
    const r = bench('e2e', '--sensors', 'many');
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /^usage: npm run bench -- e2e \[--full\].*\[--seen\]\n$/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    assert.equal(r.stdout, '');
  });

  it('answers an unknown bench with the list of benches', () => {
    const r = bench('e2f');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /^usage: npm run bench -- <[^>]*\be2e\b[^>]*> \[options\]\n$/);
  });

  it('reads --full as 100, 1,000 and 10,000 sensors at 10 s, and --seen as every device seen first', () => {
    const o = parseE2eOptions(['--full', '--seen']);
    assert.deepEqual([o.sensors, o.seconds, o.seen], [[100, 1000, 10_000], 10, true]);
    assert.equal(parseE2eOptions([]).seen, false);
    assert.throws(() => parseE2eOptions(['--seen', 'yes']), /^Error: usage:/);
  });
});
