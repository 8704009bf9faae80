// Runs test files with Node's own test runner and one TAP report (its summary last), one file at a time in each of
// up to two lanes, in the order given: `node --test` sorts the files it is given by name, so a whole run could
// not choose its order, nor keep the files that must not overlap apart.
//   node --import tsx scripts/test-runner.mjs [--file-timeout MS] [--test-name-pattern RE]...
//        [--second-lane FILE]... [--second-lane-after PATH] [--alone FILE]... FILE...
// FILE... run in the main lane. --second-lane files run in a lane of their own beside it, from when PATH exists
// (or the main lane is done). An --alone file of the main lane waits for the second lane's file to end, and the
// second lane starts none while it runs. --file-timeout bounds each file as a whole (its tests are cancelled, and
// the run fails). Exit status 1 when a test failed or was cancelled, 2 on bad usage.
import { existsSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { run } from 'node:test';
import { tap } from 'node:test/reporters';

const usage =
  'usage: test-runner.mjs [--file-timeout MS] [--test-name-pattern RE]... [--second-lane FILE]... ' +
  '[--second-lane-after PATH] [--alone FILE]... FILE...';
const bad = (why) => {
  console.error(`test-runner: ${why}\n${usage}`);
  process.exit(2);
};
let timeout = Number.POSITIVE_INFINITY;
const files = [];
const second = [];
const alone = new Set();
let secondAfter;
const patterns = [];
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const value = () => (i + 1 < args.length ? args[++i] : bad(`${a} needs a value`));
  if (a === '--file-timeout') {
    const ms = value();
    if (!/^[1-9]\d*$/.test(ms)) bad('--file-timeout needs a number of milliseconds');
    timeout = Number(ms);
  } else if (a === '--test-name-pattern') patterns.push(value());
  else if (a.startsWith('--test-name-pattern=')) patterns.push(a.slice('--test-name-pattern='.length));
  else if (a === '--second-lane') second.push(resolve(value()));
  else if (a === '--second-lane-after') secondAfter = resolve(value());
  else if (a === '--alone') alone.add(resolve(value()));
  else if (a.startsWith('-')) bad(`unknown option ${a}`);
  else files.push(resolve(a));
}
if (files.length + second.length === 0) bad('no test files');
for (const f of alone) if (!files.includes(f)) bad(`--alone ${f} is not a file of the main lane`);
for (const f of second) if (files.includes(f)) bad(`${f} is in both lanes`);
for (const p of patterns) {
  try {
    // As node:test reads them: `/re/flags`, or the pattern itself.
    const m = /^\/(.*)\/([a-z]*)$/s.exec(p);
    new RegExp(m ? m[1] : p, m ? m[2] : '');
  } catch (e) {
    bad(`--test-name-pattern ${p}: ${e.message}`);
  }
}

/** The merged report: each lane's events, a top-level test (a file's describe, with all it holds) at a time. */
const queue = [];
let wake;
let closed = false;
const emit = (events) => {
  queue.push(...events);
  wake?.();
};
async function* merged() {
  for (;;) {
    while (queue.length > 0) yield queue.shift();
    if (closed) return;
    await new Promise((r) => {
      wake = r;
    });
    wake = undefined;
  }
}

/** Lanes wait on each other through these, re-checked whenever one changes. */
const state = { secondBusy: false, aloneWaiting: false, aloneRunning: false, mainDone: false };
const waiters = [];
const changed = () => {
  for (const r of waiters.splice(0)) r();
};
const until = async (ok) => {
  while (!ok()) await new Promise((r) => waiters.push(r));
};
/** Waits for `ok`, then claims `flag` in the same step, so that the other lane cannot slip in between. */
const claim = (ok, flag) =>
  until(() => {
    if (!ok()) return false;
    state[flag] = true;
    return true;
  });

let top = 0;
let failed = false;
const totals = { tests: 0, suites: 0, pass: 0, fail: 0, cancelled: 0, skipped: 0, todo: 0 };
const SUMMARY = /^(tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) (\S+)$/;

/**
 * One file through node:test's runner. Its top-level tests reach the report whole (with the diagnostics that
 * follow their ok line), so the lanes interleave only between them; output a file prints goes at once. Its own
 * plan and summary are folded into the run's.
 */
async function runFile(file) {
  let group = [];
  let held = null;
  let heldOk = null;
  let releaseTimer;
  // Numbered as it is sent, so that the report's numbers run in order whichever lane sends next.
  const release = () => {
    clearTimeout(releaseTimer);
    if (!held) return;
    heldOk.data.testNumber = ++top;
    emit(held);
    held = null;
  };
  const stream = run({
    files: [file],
    concurrency: 1,
    timeout,
    ...(patterns.length > 0 ? { testNamePatterns: patterns } : {}),
  });
  for await (const event of stream) {
    const { type, data } = event;
    const root = data.nesting === 0 && data.file === undefined;
    if (root && type === 'test:plan') continue;
    if (root && type === 'test:diagnostic') {
      const m = SUMMARY.exec(String(data.message));
      if (m) {
        if (m[1] in totals) totals[m[1]] += Number(m[2]) || 0;
        continue;
      }
    }
    // As `node --test` counts them: a failing test marked todo does not fail the run.
    if (type === 'test:fail' && (data.todo === undefined || data.todo === false)) failed = true;
    if (type === 'test:stdout' || type === 'test:stderr') {
      // The reporter drops the file's name; with two lanes a line could pass for the other lane's.
      emit([{ type, data: { ...data, message: `[${basename(file)}] ${data.message}` } }]);
      continue;
    }
    if (type === 'test:diagnostic' && data.nesting === 0 && held) {
      held.push(event);
      continue;
    }
    release();
    if (data.nesting === 0 && (type === 'test:pass' || type === 'test:fail')) {
      heldOk = { type, data: { ...data } };
      group.push(heldOk);
      held = group;
      group = [];
      // Its diagnostics come with it; a file that keeps running after its last test does not hold it back.
      releaseTimer = setTimeout(release, 1000);
    } else group.push(event);
  }
  release();
  emit(group);
}

/** A file whose run could not even start or be read: a failure of its own, and the lane goes on. */
async function runFileOrFail(file) {
  try {
    await runFile(file);
  } catch (e) {
    failed = true;
    totals.tests++;
    totals.fail++;
    emit([
      {
        type: 'test:fail',
        data: {
          nesting: 0,
          name: file,
          testNumber: ++top,
          details: { duration_ms: 0, error: e instanceof Error ? e : new Error(String(e)) },
        },
      },
    ]);
  }
}

async function mainLane() {
  for (const file of files) {
    if (alone.has(file)) {
      state.aloneWaiting = true;
      changed();
      await claim(() => !state.secondBusy, 'aloneRunning');
    }
    await runFileOrFail(file);
    state.aloneWaiting = state.aloneRunning = false;
    changed();
  }
  state.mainDone = true;
  changed();
}

async function secondLane() {
  if (second.length === 0) return;
  if (secondAfter) {
    const poll = setInterval(changed, 500);
    await until(() => state.mainDone || existsSync(secondAfter));
    clearInterval(poll);
  }
  for (const file of second) {
    await claim(() => !state.aloneWaiting && !state.aloneRunning, 'secondBusy');
    await runFileOrFail(file);
    state.secondBusy = false;
    changed();
  }
}

const started = performance.now();
const report = Readable.from(tap(merged()));
report.pipe(process.stdout);
await Promise.all([mainLane(), secondLane()]);
emit([{ type: 'test:plan', data: { nesting: 0, count: top } }]);
const summary = { ...totals, duration_ms: performance.now() - started };
emit(
  Object.entries(summary).map(([k, v]) => ({
    type: 'test:diagnostic',
    data: { nesting: 0, message: `${k} ${v}` },
  })),
);
closed = true;
wake?.();
process.on('exit', () => {
  if (failed) process.exitCode = 1;
});
