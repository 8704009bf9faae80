/**
 * scripts/test-runner.mjs, the whole run's runner: its two lanes, the file that runs alone, the gate of the
 * second lane, and one TAP report whose summary counts both. Fixture files log when they start and end.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { tempDir } from './helpers/tmp.ts';

const RUNNER = join(import.meta.dirname, '..', 'scripts', 'test-runner.mjs');

/** A test file that logs its start and end to LOG (after `ms`), then passes or fails as told. */
function fixture(
  dir: string,
  name: string,
  opts: { ms?: number; body?: string; touch?: string } = {},
): string {
  const file = join(dir, `${name}.test.mjs`);
  writeFileSync(
    file,
    `import { appendFileSync, writeFileSync } from 'node:fs';
import { it } from 'node:test';
import assert from 'node:assert/strict';
const log = (what) => appendFileSync(process.env.LANE_LOG, '${name} ' + what + '\\n');
it('${name}', async () => {
  log('start');
  await new Promise((r) => setTimeout(r, ${opts.ms ?? 200}));
  ${opts.touch ? `writeFileSync(${JSON.stringify(opts.touch)}, '0');` : ''}
  log('end');
  ${opts.body ?? ''}
});
`,
  );
  return file;
}

/** A test file of node:test's own, from its tests' source (the import is added). */
function testFile(dir: string, name: string, tests: string): string {
  const file = join(dir, `${name}.test.mjs`);
  writeFileSync(file, `import { it } from 'node:test';\n${tests}\n`);
  return file;
}

async function runner(
  args: string[],
  log: string,
): Promise<{ code: number | null; out: string; err: string }> {
  // Not as a child of this test run (NODE_TEST_CONTEXT), which would report to it instead of running its files.
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  const child = spawn(process.execPath, [RUNNER, ...args], {
    env: { ...env, LANE_LOG: log },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d;
  });
  child.stderr.on('data', (d: Buffer) => {
    err += d;
  });
  const code = await new Promise<number | null>((r) => child.on('close', r));
  return { code, out, err };
}

/** Each file's [start, end] as positions in the log. */
function spans(log: string): Map<string, [number, number]> {
  const lines = existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : [];
  const at = new Map<string, [number, number]>();
  lines.forEach((line, i) => {
    const [name, what] = line.split(' ') as [string, string];
    const span = at.get(name) ?? [-1, -1];
    span[what === 'start' ? 0 : 1] = i;
    at.set(name, span);
  });
  return at;
}

const overlaps = (a: [number, number], b: [number, number]) => a[0] < b[1] && b[0] < a[1];

describe('the whole run’s test runner', () => {
  it('runs an --alone file with no second-lane file beside it, and every file once', async (t) => {
    const dir = tempDir(t);
    const log = join(dir, 'log');
    const main = ['m1', 'm2', 'm3'].map((n) => fixture(dir, n, { ms: 300 }));
    const alone = fixture(dir, 'alone', { ms: 600 });
    const beside = ['s1', 's2', 's3', 's4', 's5'].map((n) => fixture(dir, n, { ms: 250 }));
    const r = await runner(
      [
        ...beside.flatMap((f) => ['--second-lane', f]),
        '--alone',
        alone,
        main[0] as string,
        alone,
        ...main.slice(1),
      ],
      log,
    );
    assert.equal(r.code, 0, r.out + r.err);
    const at = spans(log);
    assert.equal(at.size, 9, 'every file ran');
    for (const [name, span] of at) {
      assert.ok(span[0] >= 0 && span[1] > span[0], `${name} started and ended`);
      if (name.startsWith('s'))
        assert.ok(!overlaps(span, at.get('alone')!), `${name} ran beside the alone file`);
    }
    // Each lane is one file at a time, in the order given.
    for (const lane of [['m1', 'alone', 'm2', 'm3'], beside.map((_, i) => `s${i + 1}`)]) {
      for (let i = 1; i < lane.length; i++) {
        assert.ok(at.get(lane[i]!)![0] > at.get(lane[i - 1]!)![1], `${lane[i]} after ${lane[i - 1]}`);
      }
    }
  });

  it('starts the second lane when its path appears, or when the main lane is done', async (t) => {
    const dir = tempDir(t);
    const gate = join(dir, 'gate');
    const log = join(dir, 'log');
    const opener = fixture(dir, 'opener', { touch: gate });
    const after = fixture(dir, 'after', { ms: 5000 });
    const beside = fixture(dir, 'beside');
    const r = await runner(['--second-lane-after', gate, '--second-lane', beside, opener, after], log);
    assert.equal(r.code, 0, r.out + r.err);
    let at = spans(log);
    assert.ok(at.get('beside')![0] > at.get('opener')![1], 'not before its path existed');
    assert.ok(at.get('beside')![0] < at.get('after')![1], 'once it existed, beside the main lane');

    const log2 = join(dir, 'log2');
    const never = join(dir, 'never');
    const r2 = await runner(['--second-lane-after', never, '--second-lane', beside, after], log2);
    assert.equal(r2.code, 0, r2.out + r2.err);
    at = spans(log2);
    assert.ok(at.get('beside')![0] > at.get('after')![1], 'after the main lane, with no path');
  });

  it('reports both lanes as one TAP document: top-level tests numbered once, one plan, the summary of both', async (t) => {
    const dir = tempDir(t);
    const log = join(dir, 'log');
    const pass = fixture(dir, 'pass');
    const broken = fixture(dir, 'broken', { body: "assert.equal(1, 2, 'the fixture fails');" });
    const r = await runner(['--second-lane', broken, pass], log);
    assert.equal(r.code, 1, 'a failure fails the run');
    assert.equal(r.out.match(/^TAP version 13$/gm)?.length, 1);
    const numbers = [...r.out.matchAll(/^(?:not )?ok (\d+) - /gm)].map((m) => Number(m[1]));
    assert.deepEqual(numbers.toSorted(), [1, 2]);
    assert.deepEqual(r.out.match(/^1\.\.\d+$/gm), ['1..2']);
    assert.match(
      r.out,
      /^# tests 2\n# suites 0\n# pass 1\n# fail 1\n# cancelled 0\n# skipped 0\n# todo 0\n/m,
    );
    assert.match(r.out, /the fixture fails/);
  });

  it('numbers top-level tests in the order they are reported, when a file lingers after its last test', async (t) => {
    const dir = tempDir(t);
    const lingering = testFile(dir, 'lingering', "it('L1', () => { setTimeout(() => {}, 3000); });");
    const quick = testFile(
      dir,
      'quick',
      "for (let i = 1; i <= 5; i++) it('Q' + i, () => new Promise((r) => setTimeout(r, 300)));",
    );
    const r = await runner(['--second-lane', quick, lingering], join(dir, 'log'));
    assert.equal(r.code, 0, r.out + r.err);
    const numbers = [...r.out.matchAll(/^ok (\d+) - /gm)].map((m) => Number(m[1]));
    assert.deepEqual(numbers, [1, 2, 3, 4, 5, 6], r.out);
    const l1 = r.out.split('\n').findIndex((l) => / - L1$/.test(l));
    const q5 = r.out.split('\n').findIndex((l) => / - Q5$/.test(l));
    assert.ok(l1 < q5, 'L1 is not held back until its file ends');
  });

  it('does not fail the run for a failing todo test, and fails it for a file that cannot load', async (t) => {
    const dir = tempDir(t);
    const log = join(dir, 'log');
    const todo = testFile(dir, 'todo', "it('not yet', { todo: true }, () => { throw new Error('x'); });");
    assert.equal((await runner([todo], log)).code, 0);
    const load = join(dir, 'load.test.mjs');
    writeFileSync(load, "throw new Error('broken at load');\n");
    const r = await runner(['--second-lane', load, todo], log);
    assert.equal(r.code, 1);
    assert.match(r.out, /^not ok \d+ - .*load\.test\.mjs$/m);
  });

  it('keeps a test’s diagnostics and a file’s own errors with it, in the other lane’s company', async (t) => {
    const dir = tempDir(t);
    const noisy = testFile(
      dir,
      'noisy',
      `it('a1', (t) => { t.diagnostic('diag of a1'); });
it('a2', async () => {
  await new Promise((r) => setTimeout(r, 1500));
  setImmediate(() => { throw new Error('late boom'); });
});`,
    );
    const beside = ['b1', 'b2', 'b3'].map((n) => fixture(dir, n, { ms: 150 }));
    const r = await runner([...beside.flatMap((f) => ['--second-lane', f]), noisy], join(dir, 'log'));
    assert.equal(r.code, 1, 'a file that errors after its tests fails the run');
    const lines = r.out.split('\n').filter((l) => !/^ {2}/.test(l));
    const a1 = lines.findIndex((l) => / - a1$/.test(l));
    assert.equal(lines[a1 + 1], '# diag of a1', 'right after its ok line');
    assert.match(r.out, /^# Error: Test "a2" .*generated asynchronous activity.*late boom/m);
  });

  it('bounds each file of either lane by --file-timeout', async (t) => {
    const dir = tempDir(t);
    const hang = testFile(dir, 'hang', "it('hangs', () => new Promise(() => setInterval(() => {}, 1000)));");
    const pass = fixture(dir, 'pass');
    const r = await runner(['--file-timeout', '1500', '--second-lane', hang, pass], join(dir, 'log'));
    assert.equal(r.code, 1);
    assert.match(r.out, /^not ok \d+ - .*hang\.test\.mjs$/m);
    assert.match(r.out, /test timed out after 1500ms/);
    assert.match(r.out, /^# pass 1\n# fail 0\n# cancelled 1$/m);
  });

  it('refuses bad usage with exit status 2 and says why', async (t) => {
    const dir = tempDir(t);
    const log = join(dir, 'log');
    const file = fixture(dir, 'f');
    for (const [args, why] of [
      [[], /no test files/],
      [['--second-lane'], /--second-lane needs a value/],
      [['--file-timeout', 'soon', file], /--file-timeout needs a number/],
      [['--alone', join(dir, 'other.test.mjs'), file], /is not a file of the main lane/],
      [['--bogus', file], /unknown option --bogus/],
      [['--second-lane', file, file], /is in both lanes/],
      [['--test-name-pattern', '(', file], /--test-name-pattern \(: Invalid regular expression/],
      [['--test-name-pattern', '/Q1/q', file], /--test-name-pattern \/Q1\/q: Invalid flags/],
      [['--file-timeout', '0', file], /--file-timeout needs a number/],
    ] as const) {
      const r = await runner([...args], log);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
      assert.match(r.err, why);
      assert.match(r.err, /^usage: /m);
    }
    assert.ok(!existsSync(log), 'nothing ran');
  });
});
