/**
 * The response to failed authentication (issue 24), with real packets: an attacker in the sensor segment
 * guesses a sensor's key (openssl s_client, wrong PSK) against the running gateway in its own network
 * namespace; the credential-guessing rule raises its alert and, because policy.response.blockSource says so,
 * the gateway puts the attacker's address in the pc-blocked ipset with a timeout. The attacker then cannot
 * reach the DTLS port even with a valid key of its own, while the other sensor goes on being served.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli, spawnCli, waitForLine } from './helpers/cli.ts';
import { inNs, Site } from './helpers/netns.ts';
import { runPeer } from './helpers/peers.ts';

const KEY_A = 'sensor-a-key-0123456';
const KEY_B = 'sensor-b-key-0123456';
const hex = (s: string) => Buffer.from(s).toString('hex');

async function coapPost(ns: string, identity: string, key: string): Promise<string> {
  const r = await runPeer(
    'ip',
    ['netns', 'exec', ns, 'coap-client-openssl', '-v', '7', '-u', identity, '-k', key, '-m', 'post'].concat([
      '-e',
      'hello',
      '-B',
      '3',
      'coaps://10.77.20.1/telemetry',
    ]),
    { timeoutMs: 10_000 },
  );
  const text = r.stdout.toString() + r.stderr;
  return /c:2\.04/.test(text) ? '2.04' : `no response: ${text.slice(-200)}`;
}

describe('failed authentication: a brute-forcing source is blocked in the firewall (netns)', () => {
  const site = new Site();
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-block-'));
  const config = join(dir, 'config.yaml');
  let gateway: ReturnType<typeof spawnCli> | undefined;
  const cli = async (args: string[]) => {
    const r = await runCli(['--config', config, ...args], { cwd: dir, netns: site.gw });
    if (r.code !== 0) throw new Error(`portcullis ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  };

  before(async () => {
    site.build('198.51.100.10 cloud.example');
    writeFileSync(
      config,
      [
        `dataDir: ${join(dir, 'var')}`,
        'log: {level: info}',
        'dtls: {host: 0.0.0.0, port: 5684}',
        'ui: {host: 0.0.0.0, port: 8443}',
        'firewall: {enforce: true, wanInterface: wan0}',
        'policy: {response: {blockSource: true, blockSeconds: 600}}',
        Site.segmentsYaml,
        '',
      ].join('\n'),
    );
    for (const [id, identity, key, leaf] of [
      ['sensor-a', 'sa', KEY_A, site.sensorA],
      ['sensor-b', 'sb', KEY_B, site.sensorB],
    ] as const) {
      await cli(['device', 'add', id, '--psk-identity', identity, '--psk', hex(key), '--segment', 'sensors']);
      await cli(['device', 'place', id, '--address', leaf.address]);
    }
    gateway = spawnCli(['--config', config, 'start'], { cwd: dir, netns: site.gw });
    await waitForLine(gateway, (l) => (l.includes('"gateway started"') ? true : undefined));
  });

  after(async () => {
    if (gateway && gateway.exitCode === null) {
      gateway.kill('SIGTERM');
      await new Promise((r) => gateway?.once('exit', r));
    }
    await site.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('positive: both sensors are served, and nothing is blocked', async () => {
    assert.equal(await coapPost(site.sensorA.ns, 'sa', KEY_A), '2.04');
    assert.equal(await coapPost(site.sensorB.ns, 'sb', KEY_B), '2.04');
    assert.doesNotMatch(inNs(site.gw, 'ipset', ['list', 'pc-blocked']), /10\.77\.20\./);
  });

  it("guessing sensor-a's key from sensor-b's address blocks that address for blockSeconds", async () => {
    // The rule's threshold is 20 failures per source per minute; a few more to be sure.
    for (let i = 0; i < 24; i++) {
      await runPeer(
        'ip',
        [
          ...[
            'netns',
            'exec',
            site.sensorB.ns,
            'openssl',
            's_client',
            '-dtls1_2',
            '-connect',
            '10.77.20.1:5684',
          ],
          ...[
            '-quiet',
            '-cipher',
            'PSK-AES128-CCM8',
            '-psk',
            hex(`guess-${i}-0123456789`),
            '-psk_identity',
            'sa',
          ],
        ],
        { timeoutMs: 3000 },
      );
    }
    let listing = '';
    for (let i = 0; i < 50 && !/10\.77\.20\.11/.test(listing); i++) {
      await new Promise((r) => setTimeout(r, 100));
      listing = inNs(site.gw, 'ipset', ['list', 'pc-blocked']);
    }
    const entry = /10\.77\.20\.11 timeout (\d+)/.exec(listing);
    assert.ok(entry, `the attacker's address is in pc-blocked: ${listing}`);
    const left = Number(entry[1]);
    assert.ok(left > 500 && left <= 600, `it times out within blockSeconds (${left} s left)`);
    assert.doesNotMatch(listing, /10\.77\.20\.10/, 'the sensor whose key was guessed is not blocked');
  });

  it('negative: the blocked address gets no answer even with a valid key; the other sensor still does', async () => {
    assert.match(await coapPost(site.sensorB.ns, 'sb', KEY_B), /^no response/);
    assert.equal(await coapPost(site.sensorA.ns, 'sa', KEY_A), '2.04');
  });

  it('the block survives a re-apply of the ruleset, and it is audited with the alert', async () => {
    await cli(['firewall', 'apply']);
    assert.match(inNs(site.gw, 'ipset', ['list', 'pc-blocked']), /10\.77\.20\.11 timeout \d+/);
    const audit = (await cli(['audit', 'export', '--format', 'jsonl']))
      .trim()
      .split('\n')
      .map(
        (l) =>
          JSON.parse(l) as { action: string; target: string; actor: string; details: { seconds?: number } },
      );
    const block = audit.find((e) => e.action === 'firewall.block');
    assert.equal(block?.target, '10.77.20.11');
    assert.equal(block?.actor, 'anomaly-engine');
    assert.equal(block?.details.seconds, 600);
  });
});
