/**
 * Node-RED with the Portcullis nodes outside the appliance is one documented command (`npm run flows:dev`,
 * issue 24): it starts Node-RED from this checkout on loopback with every Portcullis node in its palette and the
 * examples importable, without the appliance's systemd credentials.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

const ROOT = join(import.meta.dirname, '..');

async function freeTcpPort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as { port: number };
  s.close();
  return port;
}

describe('npm run flows:dev', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-flows-dev-'));
  let child: ChildProcess | undefined;
  after(async () => {
    if (child?.pid && child.exitCode === null) {
      const exited = once(child, 'exit');
      // npm runs the script through a shell: Node-RED is a grandchild, so the whole process group (ours, made
      // with detached) is stopped; its stdout pipe would otherwise keep this test process alive.
      process.kill(-child.pid, 'SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs Node-RED on loopback with the Portcullis palette and the shipped examples', async () => {
    const port = await freeTcpPort();
    // detached: a process group of its own, stopped together in after().
    child = spawn('npm', ['run', '--silent', 'flows:dev'], {
      cwd: ROOT,
      detached: true,
      env: { ...process.env, PORTCULLIS_FLOWS_DIR: dir, PORTCULLIS_FLOWS_PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    const started = new Promise<void>((resolve, reject) => {
      child?.stdout?.on('data', (d: Buffer) => {
        log += d.toString();
        if (log.includes('Started flows')) resolve();
      });
      child?.on('exit', (code) => reject(new Error(`exited ${code}: ${log}`)));
    });
    await started;
    assert.match(log, new RegExp(`Server now running at http://127\\.0\\.0\\.1:${port}/`));
    const res = await fetch(`http://127.0.0.1:${port}/nodes`, { headers: { accept: 'application/json' } });
    const sets = (await res.json()) as { module: string; types: string[] }[];
    const ours = sets.filter((s) => s.module === 'node-red-contrib-portcullis').flatMap((s) => s.types);
    const declared = Object.keys(
      (
        JSON.parse(readFileSync(join(ROOT, 'nodes', 'package.json'), 'utf8')) as {
          'node-red': { nodes: object };
        }
      )['node-red'].nodes,
    );
    assert.deepEqual(ours.sort(), declared.sort());
    const examples = (await (
      await fetch(`http://127.0.0.1:${port}/library/examples/flows/node-red-contrib-portcullis`, {
        headers: { accept: 'application/json' },
      })
    ).json()) as Record<string, unknown>;
    assert.ok(
      JSON.stringify(examples).includes('Quarantine sensors sending too fast (rate guard)'),
      JSON.stringify(examples),
    );
  });
});
