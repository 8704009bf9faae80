import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfigFile, parseConfig, resolveConfig } from '../gateway/src/config/index.ts';
import { runCli } from './helpers/cli.ts';
import { tempDir } from './helpers/tmp.ts';

function invalid(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the config to be rejected');
}

describe('config', () => {
  it('runs on embedded defaults with no config at all', () => {
    const { config, source } = resolveConfig(undefined, {}, '/srv/site');
    assert.equal(source, undefined);
    assert.equal(config.dataDir, '/srv/site/var');
    assert.deepEqual(config.dtls, {
      host: '127.0.0.1',
      port: 5684,
      limits: {
        maxSessions: 10_000,
        maxHandshakes: 500,
        handshakesPerSecondPerSource: 20,
        idleTimeoutSeconds: 600,
        maxHandshakesPerSource: 8,
        maxHandshakesPerPrefix: 64,
        handshakeTimeoutSeconds: 10,
        maxSessionsPerIdentity: 4,
        maxSessionsPerSource: 64,
      },
      connectionId: { enabled: true, length: 8 },
      mtu: 1200,
      resumption: { enabled: true, maxSessions: 10_000, lifetimeSeconds: 86_400 },
    });
    assert.equal(config.ui.host, '127.0.0.1');
    assert.equal(config.ui.port, 8443);
    assert.equal(config.keystore.backend, 'software');
    assert.equal(config.firewall.enforce, false);
    assert.equal(config.uplink, undefined);
  });

  it('serves the UI on the management segment only, unless told otherwise', () => {
    const segments = [
      {
        name: 'mgmt',
        role: 'management',
        interface: 'eth1',
        subnet: '10.99.0.0/24',
        gatewayAddress: '10.99.0.1',
      },
    ];
    assert.equal(parseConfig({ segments }, '/srv').ui.host, '10.99.0.1');
    assert.equal(parseConfig({ segments, ui: { host: '0.0.0.0' } }, '/srv').ui.host, '0.0.0.0');
  });

  it('takes PORTCULLIS_CONFIG when no --config is given, and --config over it', (t) => {
    const dir = tempDir(t);
    const a = join(dir, 'a.yaml');
    const b = join(dir, 'b.yaml');
    writeFileSync(a, 'ui: {port: 9001}\n');
    writeFileSync(b, 'ui: {port: 9002}\n');
    assert.equal(resolveConfig(undefined, { PORTCULLIS_CONFIG: a }).config.ui.port, 9001);
    assert.equal(resolveConfig(b, { PORTCULLIS_CONFIG: a }).config.ui.port, 9002);
  });

  it('resolves relative paths against the config file folder', (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'ca.pem'), 'x');
    writeFileSync(
      join(dir, 'c.yaml'),
      'dataDir: data\nuplink: {url: "mqtts://broker:8883", caFile: ca.pem}\n',
    );
    const config = loadConfigFile(join(dir, 'c.yaml'));
    assert.equal(config.dataDir, join(dir, 'data'));
    assert.equal(config.uplink?.caFile, join(dir, 'ca.pem'));
    assert.equal(config.uplink?.topicPrefix, 'portcullis');
  });

  it('rejects an unknown key, naming its path', () => {
    const e = invalid(() => parseConfig({ dtls: { prot: 5684 } }, '/'));
    assert.equal(e.code, 'ERR_CONFIG_INVALID');
    assert.deepEqual(e.issues, [{ path: 'dtls.prot', message: 'unknown key' }]);
  });

  it('rejects a port out of range, naming its path', () => {
    const e = invalid(() => parseConfig({ ui: { port: 65536 } }, '/'));
    assert.equal(e.issues[0]?.path, 'ui.port');
    assert.match(e.message, /ui\.port/);
  });

  it('rejects a CA file that does not exist, naming its path', () => {
    const e = invalid(() =>
      parseConfig({ uplink: { url: 'mqtts://b:8883', caFile: '/nonexistent/ca.pem' } }, '/'),
    );
    assert.deepEqual(e.issues, [
      { path: 'uplink.caFile', message: 'file does not exist or is not readable' },
    ]);
  });

  it('rejects a plaintext uplink URL and MQTT wildcards in the topic prefix', (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'ca.pem'), 'x');
    const e = invalid(() =>
      parseConfig({ uplink: { url: 'mqtt://b:1883', caFile: 'ca.pem', topicPrefix: 'site/#' } }, dir),
    );
    assert.deepEqual(
      e.issues.map((i) => i.path),
      ['uplink.url', 'uplink.topicPrefix'],
    );
  });

  it('rejects a listen host that is not an address literal', () => {
    assert.equal(
      invalid(() => parseConfig({ dtls: { host: 'example.org' } }, '/')).issues[0]?.path,
      'dtls.host',
    );
  });

  it('reports malformed YAML with its line and no partial config', (t) => {
    const dir = tempDir(t);
    const f = join(dir, 'c.yaml');
    writeFileSync(f, 'ui:\n  port: 1\n  port: 2\n');
    const e = invalid(() => loadConfigFile(f));
    assert.equal(e.code, 'ERR_CONFIG_PARSE');
    assert.match(e.message, /c\.yaml:\d+/);
  });

  it('reports a missing config file', () => {
    assert.equal(invalid(() => loadConfigFile('/nonexistent/portcullis.yaml')).code, 'ERR_CONFIG_NOT_FOUND');
  });
});

describe('portcullis config check', () => {
  const cases: [string, string, RegExp][] = [
    ['an unknown key', 'ui:\n  hots: 127.0.0.1\n', /ui\.hots: unknown key/],
    ['a port out of range', 'dtls:\n  port: 70000\n', /dtls\.port: .*65535/],
    [
      'a non-existent CA file',
      'uplink:\n  url: mqtts://b:8883\n  caFile: ./missing-ca.pem\n',
      /uplink\.caFile: file does not exist/,
    ],
  ];
  for (const [what, yaml, expected] of cases) {
    it(`exits 2 naming the key for ${what}`, async (t) => {
      const dir = tempDir(t);
      const f = join(dir, 'config.yaml');
      writeFileSync(f, yaml);
      const r = await runCli(['config', 'check', f], { cwd: dir });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, expected);
      assert.equal(r.stdout, '');
    });
  }

  it('exits 0 for a valid file and can print the effective config', async (t) => {
    const dir = tempDir(t);
    const f = join(dir, 'config.yaml');
    writeFileSync(f, 'ui:\n  port: 9443\n');
    const r = await runCli(['config', 'check', f, '--print'], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ok: /);
    assert.equal(JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))).ui.port, 9443);
  });
});
