#!/usr/bin/env node
// Entry point of the `portcullis` command. It runs the compiled JavaScript in dist/ (made by `npm run build`,
// which `npm ci` runs by itself): what ships is what was tested, with no TypeScript loader at run time.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 11)) {
  process.stderr.write(`portcullis needs Node.js >= 20.11 (this is ${process.versions.node})\n`);
  process.exit(1);
}
// A reader that goes away (`portcullis firewall render | head`) is not an error of ours.
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});
// Stack traces point at the TypeScript sources (dist/ carries source maps) — for the commands, not for the gateway
// itself by default: Node keeps every loaded module's map in memory for the process's life (1.5 MiB of an idle
// gateway's heap, docs/performance.md). Its traces name dist/*.js lines, which tsc keeps next to the TypeScript
// ones; PORTCULLIS_SOURCE_MAPS=1 maps them for a debugging session.
const gateway = process.argv.slice(2).includes('start');
if (!gateway || process.env.PORTCULLIS_SOURCE_MAPS === '1') process.setSourceMapsEnabled(true);
let cli;
try {
  cli = await import('../dist/gateway/src/cli/index.js');
} catch (err) {
  if (err?.code !== 'ERR_MODULE_NOT_FOUND' || !String(err.message).includes('/dist/')) throw err;
  process.stderr.write(
    'portcullis: dist/ is missing: run `npm run build` (or `npm ci`) in the checkout first\n',
  );
  process.exit(1);
}
process.exitCode = await cli.main(process.argv);
