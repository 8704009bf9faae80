/** The compliance self-assessment reads live state: it changes when the configuration and the store do. */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ManualClock } from '../gateway/src/clock.ts';
import { assess, toHtml } from '../gateway/src/compliance/index.ts';
import { parseConfig } from '../gateway/src/config/index.ts';
import { Core } from '../gateway/src/core.ts';
import { runCli } from './helpers/cli.ts';
import { tempDir } from './helpers/tmp.ts';

const status = (r: ReturnType<typeof assess>, provision: string) =>
  r.findings.find((f) => f.standard === 'ETSI EN 303 645' && f.provision === provision);

describe('compliance self-assessment', () => {
  it('reports what is not met on a bare configuration, with evidence, and never claims updates it lacks', (t) => {
    const dir = tempDir(t);
    const core = Core.open(
      parseConfig({ dataDir: join(dir, 'var'), ui: { host: '0.0.0.0' } }, dir),
      new ManualClock(),
    );
    t.after(() => core.close());
    const r = assess(core);
    assert.equal(status(r, '5.1')?.status, 'met', 'no default password even before setup');
    assert.match(status(r, '5.1')?.evidence.join(' ') ?? '', /one-time setup code/);
    assert.equal(status(r, '5.2')?.status, 'not met');
    assert.equal(status(r, '5.3')?.status, 'not met');
    assert.match(status(r, '5.3')?.evidence[0] ?? '', /no release key is pinned/);
    assert.equal(status(r, '5.4')?.status, 'not met');
    assert.match(status(r, '5.4')?.evidence[0] ?? '', /keystore backend: software/);
    assert.equal(status(r, '5.6')?.status, 'not met');
    assert.match(status(r, '5.6')?.evidence.join(' ') ?? '', /not enforced.*every interface/s);
    assert.equal(r.findings.filter((f) => f.standard === 'NIST IR 8259A').length, 6);
  });

  it('counts signed updates as met only with a pinned release key', (t) => {
    const dir = tempDir(t);
    const pub = join(dir, 'release.pub.pem');
    writeFileSync(pub, generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }));
    const core = Core.open(
      parseConfig({ dataDir: join(dir, 'var'), updates: { publicKeyFile: pub } }, dir),
      new ManualClock(),
    );
    t.after(() => core.close());
    const r = assess(core);
    assert.equal(status(r, '5.3')?.status, 'met');
    assert.match(status(r, '5.3')?.evidence.join(' ') ?? '', /release key pinned.*rollback/);
  });

  it('follows the live state: users with MFA, a disclosure URL, an enforced firewall, erased credentials', async (t) => {
    const dir = tempDir(t);
    const core = Core.open(
      parseConfig(
        {
          dataDir: join(dir, 'var'),
          ui: { host: '10.0.99.1' },
          firewall: { enforce: true },
          compliance: { vulnerabilityDisclosureUrl: 'https://example.com/.well-known/security.txt' },
        },
        dir,
      ),
      new ManualClock(),
    );
    t.after(() => core.close());
    await core.users.createUser(
      { username: 'boss', role: 'admin', password: 'a long enough password' },
      'test',
    );
    core.identity.addPskDevice({ id: 's1', pskIdentity: 's1', pskHex: '11'.repeat(16) }, 'test');
    core.identity.decommission('s1', 'test');
    // Enforcement configured, nothing read from the kernel: not met, and the report says why.
    const unread = assess(core);
    assert.equal(status(unread, '5.6')?.status, 'not met');
    assert.match(status(unread, '5.6')?.evidence[0] ?? '', /kernel was not read/);
    const differs = assess(core, {
      firewall: { state: 'differs', detail: "the kernel's filter table differs" },
    });
    assert.equal(status(differs, '5.6')?.status, 'not met');
    const r = assess(core, {
      firewall: { state: 'in-force', detail: 'ruleset abc read back from the kernel' },
    });
    assert.equal(status(r, '5.2')?.status, 'met');
    assert.match(
      status(r, '5.1')?.evidence[0] ?? '',
      /1 account\(s\), 1 with argon2id password hashes, 0 with TOTP/,
    );
    assert.equal(status(r, '5.6')?.status, 'met');
    assert.match(status(r, '5.11')?.evidence[0] ?? '', /1 decommissioned device\(s\), 1 fully erased/);
    const html = toHtml(r);
    assert.match(html, /^<!doctype html>/);
    assert.doesNotMatch(html, /<script/);
  });

  it('marks what it cannot measure as declared, with the reason, and computes the rest', (t) => {
    const dir = tempDir(t);
    const core = Core.open(parseConfig({ dataDir: join(dir, 'var') }, dir), new ManualClock());
    t.after(() => core.close());
    const r = assess(core, { secureBoot: false });
    assert.equal(status(r, '5.13')?.status, 'declared');
    assert.match(status(r, '5.13')?.evidence[0] ?? '', /^declared, not measured: /);
    assert.equal(r.summary.declared, 1);
    assert.equal(status(r, '5.7')?.status, 'not met');
    assert.match(status(r, '5.7')?.evidence[0] ?? '', /Secure Boot is off \(read from the firmware\)/);
    assert.equal(status(assess(core, { secureBoot: true }), '5.7')?.status, 'met');
    // Device identification follows the devices: one whose only credential was erased is not identified.
    const nist1 = (x: ReturnType<typeof assess>) =>
      x.findings.find((f) => f.standard === 'NIST IR 8259A' && f.provision === '1');
    core.identity.addPskDevice({ id: 's1', pskIdentity: 's1', pskHex: '11'.repeat(16) }, 'test');
    assert.equal(nist1(assess(core))?.status, 'met');
  });

  it('prints text, JSON and HTML from the CLI', async (t) => {
    const dir = tempDir(t);
    const config = join(dir, 'config.yaml');
    writeFileSync(config, `dataDir: ${join(dir, 'var')}\n`);
    const text = await runCli(['--config', config, 'compliance'], { cwd: dir });
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /ETSI EN 303 645 5\.4\s+not met/);
    const json = JSON.parse(
      (await runCli(['--config', config, 'compliance', '--json'], { cwd: dir })).stdout,
    );
    assert.equal(json.findings.length, 17);
    const html = await runCli(['--config', config, 'compliance', '--html'], { cwd: dir });
    assert.match(html.stdout, /<table>/);
  });
});
