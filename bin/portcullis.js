#!/usr/bin/env node
// Entry point of the `portcullis` command: runs the TypeScript sources through tsx's loader, so there is no
// build step between a checkout and a running gateway.
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
const { register } = await import('tsx/esm/api');
// The project's tsconfig, wherever the command is started from (JSX of the UI pages is compiled by it).
register({ tsconfig: new URL('../tsconfig.json', import.meta.url).pathname });
const { main } = await import('../gateway/src/cli/index.ts');
process.exitCode = await main(process.argv);
