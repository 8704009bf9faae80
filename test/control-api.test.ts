/**
 * The control socket the Node-RED nodes will use: a Unix socket (0660), bearer tokens with scopes checked on
 * every call, revocation effective at once, per-token rate limit, audit naming the token. Tokens are made with
 * the real CLI; calls go over the real socket.
 */
import assert from 'node:assert/strict';
import { statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { systemClock } from '../gateway/src/clock.ts';
import { resolveConfig } from '../gateway/src/config/index.ts';
import { startControlServer } from '../gateway/src/control/server.ts';
import { Core } from '../gateway/src/core.ts';
import { runCli } from './helpers/cli.ts';
import { databaseFileIn, withRawDb } from './helpers/raw-db.ts';
import { tempDir } from './helpers/tmp.ts';

function call(
  socketPath: string,
  token: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; data: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath,
        method,
        path,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => {
          text += d.toString();
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, data: JSON.parse(text || '{}') as Record<string, unknown> }),
        );
      },
    );
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

describe('control API for policy flows', () => {
  async function setup(t: Parameters<typeof tempDir>[0]) {
    const dir = tempDir(t);
    const config = join(dir, 'config.yaml');
    writeFileSync(config, `dataDir: ${join(dir, 'var')}\n`);
    const cli = async (...args: string[]) => {
      const r = await runCli(['--config', config, ...args], { cwd: dir });
      assert.equal(r.code, 0, r.stderr);
      return r.stdout;
    };
    await cli('device', 'add', 's1', '--psk-identity', 's1', '--generate-psk');
    const token = async (name: string, scopes: string) =>
      (await cli('flows', 'token', 'create', '--name', name, '--scopes', scopes)).split('\n')[1] as string;
    const core = Core.open(resolveConfig(config).config, systemClock);
    t.after(() => core.close());
    const server = await startControlServer(core, join(dir, 'control.sock'));
    t.after(() => server.close());
    return { cli, token, core, socket: server.path };
  }

  it('enforces scopes on every call and audits changes with the token name', async (t) => {
    const { token, core, socket } = await setup(t);
    assert.equal(statSync(socket).mode & 0o777, 0o660);
    const reader = await token('reader', 'device:read');
    const guard = await token('guard', 'device:read,device:quarantine,audit:write');
    assert.equal((await call(socket, reader, 'GET', '/v1/devices/s1')).data.state, 'active');
    const denied = await call(socket, reader, 'POST', '/v1/devices/s1/quarantine', {
      reason: 'flow says so',
    });
    assert.equal(denied.status, 403);
    assert.equal((denied.data.error as { code: string }).code, 'ERR_CONTROL_SCOPE');
    assert.equal(core.store.devices.get('s1')?.state, 'active', 'nothing changed');
    const ok = await call(socket, guard, 'POST', '/v1/devices/s1/quarantine', {
      reason: 'high anomaly score',
    });
    assert.equal(ok.status, 200);
    assert.equal(core.store.devices.get('s1')?.state, 'quarantined');
    const written = await call(socket, guard, 'POST', '/v1/audit', {
      action: 'decision',
      target: 's1',
      details: { rule: 'off-hours' },
    });
    assert.equal(written.status, 201);
    const entries = [...core.store.audit.iterate()];
    assert.equal(entries.find((e) => e.action === 'device.quarantine')?.actor, 'flows:guard');
    assert.equal(entries.find((e) => e.action === 'flow.decision')?.actor, 'flows:guard');
    assert.equal(entries.find((e) => e.action === 'control.denied')?.actor, 'flows:reader');
    const bad = await call(socket, guard, 'POST', '/v1/audit', { action: 'Device.Quarantine!' });
    assert.equal(bad.status, 400, 'a flow cannot write arbitrary action names');
    assert.equal((await call(socket, 'pct_forged', 'GET', '/v1/devices/s1')).status, 401);
  });

  it('lifts a rate limit with device:quarantine (the same service method as the CLI and the UI), audited', async (t) => {
    const { token, core, socket } = await setup(t);
    const reader = await token('reader', 'device:read');
    const guard = await token('guard', 'device:quarantine');
    const until = new Date(Date.now() + 3_600_000).toISOString();
    core.store.rateLimits.put({ deviceId: 's1', perSecond: 1, until, reason: 'test' }, until);
    const denied = await call(socket, reader, 'POST', '/v1/devices/s1/unlimit', {});
    assert.equal(denied.status, 403);
    assert.ok(core.policy.rateLimit('s1'), 'nothing changed');
    assert.deepEqual((await call(socket, guard, 'POST', '/v1/devices/s1/unlimit', {})).data, {
      lifted: true,
    });
    assert.equal(core.policy.rateLimit('s1'), undefined);
    assert.deepEqual((await call(socket, guard, 'POST', '/v1/devices/s1/unlimit', {})).data, {
      lifted: false,
    });
    assert.equal((await call(socket, guard, 'POST', '/v1/devices/nope/unlimit', {})).status, 404);
    const lifts = [...core.store.audit.iterate()].filter((e) => e.action === 'device.rate-limit.lift');
    assert.deepEqual(
      lifts.map((e) => [e.actor, e.target]),
      [['flows:guard', 's1']],
    );
  });

  it('refuses a revoked token from the next call on, and rate-limits a chatty one', async (t) => {
    const { cli, token, socket } = await setup(t);
    const flow = await token('flow-1', 'device:read');
    assert.equal((await call(socket, flow, 'GET', '/v1/devices/s1')).status, 200);
    await cli('flows', 'token', 'revoke', 'flow-1');
    const after = await call(socket, flow, 'GET', '/v1/devices/s1');
    assert.equal(after.status, 401);
    const chatty = await token('chatty', 'device:read');
    const statuses = await Promise.all(
      Array.from({ length: 80 }, () => call(socket, chatty, 'GET', '/v1/devices/s1').then((r) => r.status)),
    );
    assert.ok(statuses.includes(429), 'beyond 50 calls a second');
    assert.ok(statuses.filter((s) => s === 200).length >= 40);
    assert.match(await cli('flows', 'token', 'list'), /flow-1\tdevice:read\t.*\trevoked /);
  });

  it('refuses unknown scopes and never prints or stores a token in the clear', async (t) => {
    const dir = tempDir(t);
    const config = join(dir, 'config.yaml');
    writeFileSync(config, `dataDir: ${join(dir, 'var')}\n`);
    const bad = await runCli(
      ['--config', config, 'flows', 'token', 'create', '--name', 'x', '--scopes', 'device:read,root'],
      { cwd: dir },
    );
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /ERR_CONTROL_INVALID.*unknown: root/);
    const made = await runCli(
      ['--config', config, 'flows', 'token', 'create', '--name', 'y', '--scopes', 'device:read'],
      { cwd: dir },
    );
    const secret = made.stdout.split('\n')[1] as string;
    assert.match(secret, /^pct_/);
    const core = Core.open(resolveConfig(config).config, systemClock);
    t.after(() => core.close());
    assert.doesNotMatch(
      JSON.stringify(
        withRawDb(databaseFileIn(core.config.dataDir), (db) =>
          db.prepare('SELECT * FROM control_tokens').all(),
        ),
      ),
      new RegExp(secret),
    );
    assert.doesNotMatch(JSON.stringify([...core.store.audit.iterate()]), new RegExp(secret));
  });
});
