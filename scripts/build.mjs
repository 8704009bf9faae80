#!/usr/bin/env node
import { spawnSync } from 'node:child_process';
// Compiles what ships (gateway/src, ui/src) to dist/, with source maps. Run by `npm ci`/`npm install` (prepare)
// and by `npm test`. Types are checked by `npm run typecheck`; this step only emits (tsc --noCheck), so it takes
// seconds. A production install (`npm ci --omit=dev`) has no compiler: there the release already carries dist/
// (the image and update bundles are built from a checkout that ran this), and the step says so and succeeds.
import { cpSync, existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const checkoutDist = join(root, 'dist');
// `--out DIR` builds elsewhere (image-build/build-rootfs.sh, into its release): the checkout's own dist/, which
// tests running beside an image build read, is then left alone.
const outAt = process.argv.indexOf('--out');
if (outAt >= 0 && !process.argv[outAt + 1]) {
  process.stderr.write('build: --out needs a directory\n');
  process.exit(2);
}
const dist = outAt >= 0 ? resolve(process.argv[outAt + 1]) : checkoutDist;
// The target is emptied first: a mistaken path must not take the checkout (or a directory holding it) with it.
if (dist !== checkoutDist && (root.startsWith(`${dist}/`) || dist === root || dist.startsWith(`${root}/`))) {
  process.stderr.write(
    `build: --out ${dist}: not inside the checkout or above it; give a directory of its own\n`,
  );
  process.exit(2);
}
let tsc;
try {
  tsc = createRequire(join(root, 'package.json')).resolve('typescript/bin/tsc');
} catch {
  if (existsSync(join(checkoutDist, 'gateway/src/cli/index.js'))) {
    if (dist !== checkoutDist) {
      rmSync(dist, { recursive: true, force: true });
      cpSync(checkoutDist, dist, { recursive: true });
    }
    process.stdout.write(
      `build: no TypeScript compiler (production install); using the shipped dist/${dist === checkoutDist ? '' : ` (copied to ${dist})`}\n`,
    );
    process.exit(0);
  }
  process.stderr.write(
    'build: dist/ is missing and TypeScript is not installed: run `npm ci` (with dev dependencies)\n',
  );
  process.exit(1);
}
// Built beside the checkout's dist/ and swapped in at the end, so a gateway or test running from dist/ never sees
// half of it. Beside it also for --out: the source maps' paths are relative to where tsc writes.
const next = join(root, `dist.next-${process.pid}`);
rmSync(next, { recursive: true, force: true });
const r = spawnSync(
  process.execPath,
  [tsc, '-p', join(root, 'tsconfig.build.json'), '--noCheck', '--outDir', next],
  { stdio: 'inherit' },
);
if (r.status !== 0) {
  rmSync(next, { recursive: true, force: true });
  process.exit(r.status ?? 1);
}
// Files the compiled code reads beside itself: the UI's static assets, and the version (version.ts reads
// ../../package.json, which from dist/gateway/src is dist/package.json).
cpSync(join(root, 'ui/static'), join(next, 'ui/static'), { recursive: true });
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
writeFileSync(
  join(next, 'package.json'),
  `${JSON.stringify({ name: 'portcullis-dist', version: pkg.version, private: true, type: 'module' }, null, 2)}\n`,
);
if (dist !== checkoutDist) {
  // Another file system, as a rule (the release is staged under /tmp): copied, not renamed.
  rmSync(dist, { recursive: true, force: true });
  cpSync(next, dist, { recursive: true });
  rmSync(next, { recursive: true, force: true });
  process.stdout.write(`build: ${dist} ready\n`);
  process.exit(0);
}
const old = `${dist}.old-${process.pid}`;
rmSync(old, { recursive: true, force: true });
if (existsSync(dist)) renameSync(dist, old);
renameSync(next, dist);
rmSync(old, { recursive: true, force: true });
process.stdout.write('build: dist/ ready\n');
