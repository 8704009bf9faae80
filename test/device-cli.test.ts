/**
 * Provisioning input at the boundary: every bad value is refused with a typed error that names the problem and
 * never echoes a key; nothing is half-written.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from './helpers/cli.ts';
import { makePki, type TestPki } from './helpers/pki.ts';
import { tempDir } from './helpers/tmp.ts';

describe('portcullis device / identity commands: bad input', () => {
  let pki: TestPki;
  before(() => {
    pki = makePki();
  });
  after(() => pki.dispose());

  async function home(t: Parameters<typeof tempDir>[0]) {
    const dir = tempDir(t);
    const config = join(dir, 'config.yaml');
    writeFileSync(config, `dataDir: ${join(dir, 'var')}\n`);
    return (...args: string[]) => runCli(['--config', config, ...args], { cwd: dir });
  }

  it('refuses a PSK shorter than 128 bits, naming the rule and not echoing the key', async (t) => {
    const cli = await home(t);
    const r = await cli('device', 'add', 's1', '--psk-identity', 's1', '--psk', 'deadbeefcafe');
    assert.equal(r.code, 2, 'bad usage, as the README says');
    assert.match(r.stderr, /ERR_IDENTITY_WEAK_PSK.*at least 16 bytes \(128 bits\)/);
    assert.doesNotMatch(r.stderr + r.stdout, /deadbeefcafe/);
    assert.equal(JSON.parse((await cli('device', 'list', '--json')).stdout).length, 0, 'nothing stored');
  });

  it('refuses ids that would break MQTT topics, and both or neither of --psk and --generate-psk', async (t) => {
    const cli = await home(t);
    for (const id of ['a/b', 'a+b', '#', ' x', 'x'.repeat(65)]) {
      const r = await cli('device', 'add', id, '--psk-identity', 'i', '--generate-psk');
      assert.equal(r.code, 2, id);
      assert.match(r.stderr, /ERR_IDENTITY_INVALID.*device id/);
    }
    const reserved = await cli('device', 'add', 's1', '--psk-identity', 'pull:x', '--generate-psk');
    assert.match(reserved.stderr, /ERR_IDENTITY_INVALID.*reserved/);
    const both = await cli(
      'device',
      'add',
      's1',
      '--psk-identity',
      'i',
      '--generate-psk',
      '--psk',
      '00'.repeat(16),
    );
    assert.match(both.stderr, /exactly one/);
    const neither = await cli('device', 'add', 's1', '--psk-identity', 'i');
    assert.match(neither.stderr, /exactly one/);
  });

  it('refuses a second device with the same id or PSK identity', async (t) => {
    const cli = await home(t);
    assert.equal((await cli('device', 'add', 's1', '--psk-identity', 'i1', '--generate-psk')).code, 0);
    const sameId = await cli('device', 'add', 's1', '--psk-identity', 'i2', '--generate-psk');
    assert.match(sameId.stderr, /ERR_IDENTITY_CONFLICT/);
    const sameIdentity = await cli('device', 'add', 's2', '--psk-identity', 'i1', '--generate-psk');
    assert.match(sameIdentity.stderr, /ERR_IDENTITY_CONFLICT/);
    assert.equal(JSON.parse((await cli('device', 'list', '--json')).stdout).length, 1);
  });

  it('refuses a pull URL that is not coaps://, a non-CA trust anchor, a non-key RPK file', async (t) => {
    const cli = await home(t);
    const pull = await cli(
      'device',
      'add',
      'p1',
      '--psk-identity',
      'p',
      '--generate-psk',
      '--pull',
      'coap://10.0.0.1/t',
    );
    assert.match(pull.stderr, /ERR_IDENTITY_INVALID.*pull URL/);
    const anchor = await cli('identity', 'trust', 'add', '--name', 'x', '--ca', pki.client.certPath);
    assert.match(anchor.stderr, /ERR_IDENTITY_INVALID.*not a CA/);
    const garbage = join(tempDir(t), 'garbage.pem');
    writeFileSync(garbage, 'not a key\n');
    const rpk = await cli('device', 'add', 'r1', '--rpk', garbage);
    assert.match(rpk.stderr, /ERR_IDENTITY_INVALID.*not a PEM public or private key/);
  });

  it('shows a device without its secret, approves only pending devices, decommissions only known ones', async (t) => {
    const cli = await home(t);
    const added = await cli('device', 'add', 's1', '--psk-identity', 'i1', '--psk', 'ab'.repeat(16));
    assert.equal(added.code, 0);
    assert.doesNotMatch(added.stdout, /abab/, 'a given key is never printed back');
    const shown = await cli('device', 'show', 's1', '--json');
    assert.doesNotMatch(shown.stdout, /abab/);
    assert.match((await cli('device', 'approve', 's1')).stderr, /ERR_IDENTITY_STATE.*active, not pending/);
    assert.match((await cli('device', 'decommission', 'ghost')).stderr, /ERR_IDENTITY_NOT_FOUND/);
    assert.equal((await cli('device', 'decommission', 's1')).code, 0);
    assert.match((await cli('device', 'decommission', 's1')).stderr, /ERR_IDENTITY_STATE.*already/);
  });
});
