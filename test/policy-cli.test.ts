/**
 * The policy commands as an operator meets them (the real `portcullis` binary, no gateway running): profiles and
 * overrides set and refused with exit 2 and a stable code, `policy show --json` with each field's source,
 * `policy test --json` and its exit codes, and a schema that does not compile caught by `config check`.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { runCli } from './helpers/cli.ts';
import { tempDir } from './helpers/tmp.ts';

const POLICY = [
  'policy:',
  '  profiles:',
  '    thermo:',
  '      resources: [{path: /telemetry, methods: [POST]}]',
  '      maxPayloadBytes: 64',
];

function home(t: Parameters<typeof tempDir>[0], extra: string[] = POLICY) {
  const dir = tempDir(t);
  const config = join(dir, 'config.yaml');
  writeFileSync(config, [`dataDir: ${join(dir, 'var')}`, ...extra, ''].join('\n'));
  return { dir, config, cli: (args: string[]) => runCli(['--config', config, ...args], { cwd: dir }) };
}

describe('portcullis device profile / policy show / policy test', () => {
  it('sets a profile and overrides; refuses what is not a profile field, an unknown profile or a bad schema', async (t) => {
    const { cli } = home(t);
    assert.equal((await cli(['device', 'add', 's1', '--psk-identity', 's1', '--generate-psk'])).code, 0);
    const set = await cli(['device', 'profile', 's1', 'thermo', '--overrides', '{"maxPayloadBytes": 8}']);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /s1: profile thermo; overrides: maxPayloadBytes/);
    const cases: [string[], RegExp][] = [
      [['device', 'profile', 's1', 'nosuch'], /ERR_POLICY_PROFILE_NOT_FOUND/],
      [['device', 'profile', 's1', '--overrides', '{"bogus": 1}'], /ERR_POLICY_OVERRIDES_INVALID/],
      [
        ['device', 'profile', 's1', '--overrides', '{"schema": {"type": "nonsense"}}'],
        /ERR_POLICY_SCHEMA_INVALID/,
      ],
      [['device', 'profile', 's1', '--overrides', '[1]'], /must be a JSON object/],
      [['device', 'profile', 's1', 'thermo', '--default'], /not both/],
    ];
    for (const [args, message] of cases) {
      const r = await cli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    const show = JSON.parse((await cli(['policy', 'show', 's1', '--json'])).stdout) as {
      profile: string;
      sources: Record<string, string>;
      fields: Record<string, unknown>;
    };
    assert.equal(show.profile, 'thermo');
    assert.equal(show.fields.maxPayloadBytes, 8, 'the bad attempts changed nothing');
    assert.equal(show.sources.maxPayloadBytes, 'device');
    assert.equal(show.sources.resources, 'profile:thermo');
    const cleared = await cli(['device', 'profile', 's1', '--clear-overrides']);
    assert.match(cleared.stdout, /overrides: none/);
    assert.match((await cli(['device', 'profile', 's1', '--default'])).stdout, /profile \(none\)/);
    const audit = (await cli(['audit', 'export', '--format', 'jsonl'])).stdout;
    assert.equal(audit.match(/"action":"device\.policy"/g)?.length, 3, 'each change audited once');
  });

  it('policy test: exit 0 allowed, 1 refused (JSON names the rule), 2 bad usage; an unknown device is an error', async (t) => {
    const { cli, dir } = home(t);
    await cli(['device', 'add', 's1', '--psk-identity', 's1', '--generate-psk']);
    await cli(['device', 'profile', 's1', 'thermo']);
    const big = join(dir, 'big.json');
    writeFileSync(big, JSON.stringify({ pad: 'x'.repeat(100) }));
    const ok = await cli([
      'policy',
      'test',
      '--device',
      's1',
      '--method',
      'post',
      '--resource',
      '/telemetry',
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    const refused = await cli([
      ...['policy', 'test', '--device', 's1', '--method', 'POST', '--resource', '/telemetry'],
      ...['--payload', big, '--json'],
    ]);
    assert.equal(refused.code, 1);
    const d = JSON.parse(refused.stdout) as { allow: boolean; rule: string; code: string; by: string };
    assert.deepEqual([d.allow, d.rule, d.code, d.by], [false, 'size', '4.13', 'profile:thermo']);
    assert.equal(
      (await cli(['policy', 'test', '--device', 's1', '--method', 'FETCH', '--resource', '/t'])).code,
      2,
    );
    assert.equal(
      (await cli(['policy', 'test', '--device', 's1', '--method', 'GET', '--resource', 't'])).code,
      2,
    );
    const unknown = await cli([
      'policy',
      'test',
      '--device',
      'nobody',
      '--method',
      'GET',
      '--resource',
      '/t',
    ]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /ERR_POLICY_NOT_FOUND/);
  });

  it('config check names a profile schema that does not compile', async (t) => {
    const { cli } = home(t, ['policy:', '  profiles:', '    x: {schema: {type: nonsense}}']);
    const r = await cli(['config', 'check']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /policy\.profiles\.x\.schema: not a JSON Schema ajv compiles/);
  });
});
