/**
 * The appliance's baseline firewall (systemd/portcullis-firewall.rules, loaded by portcullis-firewall.service
 * before any interface comes up), applied with the real iptables-restore in a network namespace standing in for
 * the appliance: a management port (device group 1, as 90-portcullis-management.network sets it) and a sensor
 * VLAN interface named as `portcullis segment network-config` names them. Real TCP and UDP from a technician's
 * and a sensor's namespace: the UI and the editor answer on the management port only, DTLS on both, anything
 * else listening on the appliance is unreachable.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { waitForLine } from './helpers/cli.ts';
import { inNs, sh } from './helpers/netns.ts';

const ROOT = join(import.meta.dirname, '..');
const PROBE = join(ROOT, 'test', 'helpers', 'netprobe.mjs');
const prefix = `pcf${process.pid % 100000}`;
const ns = { appliance: `${prefix}-appl`, tech: `${prefix}-tech`, sensor: `${prefix}-sens` };

const tcpReaches = (from: string, host: string, port: number) =>
  spawnSync('ip', ['netns', 'exec', from, process.execPath, PROBE, 'connect', host, String(port), '1500'])
    .status === 0;

/** One datagram to the echo server; true if the answer came back. */
const udpReaches = (from: string, host: string, port: number) =>
  spawnSync('ip', [
    'netns',
    'exec',
    from,
    process.execPath,
    '-e',
    `const u = require('node:dgram').createSocket('udp4');
     u.on('message', () => process.exit(0));
     setTimeout(() => process.exit(1), 1500);
     u.send(Buffer.from('dtls?'), ${port}, '${host}');`,
  ]).status === 0;

describe('the appliance baseline firewall (real iptables in network namespaces)', () => {
  let server: ChildProcess | undefined;
  before(async () => {
    for (const n of Object.values(ns)) {
      sh('ip', ['netns', 'add', n]);
      inNs(n, 'ip', ['link', 'set', 'lo', 'up']);
    }
    // The management port: eth0 on the appliance, in device group 1, cabled to the technician's laptop.
    sh('ip', [
      'link',
      'add',
      `${prefix}m`,
      'netns',
      ns.appliance,
      'type',
      'veth',
      'peer',
      'name',
      `${prefix}t`,
    ]);
    sh('ip', ['link', 'set', `${prefix}t`, 'netns', ns.tech]);
    inNs(ns.appliance, 'ip', ['link', 'set', `${prefix}m`, 'name', 'eth0']);
    inNs(ns.appliance, 'ip', ['link', 'set', 'eth0', 'group', '1']);
    inNs(ns.appliance, 'ip', ['addr', 'add', '10.98.1.1/24', 'dev', 'eth0']);
    inNs(ns.appliance, 'ip', ['link', 'set', 'eth0', 'up']);
    inNs(ns.tech, 'ip', ['addr', 'add', '10.98.1.2/24', 'dev', `${prefix}t`]);
    inNs(ns.tech, 'ip', ['link', 'set', `${prefix}t`, 'up']);
    // A sensor segment's interface, named like a VLAN on a second Ethernet port (it matches en*, not group 1).
    sh('ip', [
      'link',
      'add',
      `${prefix}v`,
      'netns',
      ns.appliance,
      'type',
      'veth',
      'peer',
      'name',
      `${prefix}s`,
    ]);
    sh('ip', ['link', 'set', `${prefix}s`, 'netns', ns.sensor]);
    inNs(ns.appliance, 'ip', ['link', 'set', `${prefix}v`, 'name', 'enp2s0.20']);
    inNs(ns.appliance, 'ip', ['addr', 'add', '10.98.20.1/24', 'dev', 'enp2s0.20']);
    inNs(ns.appliance, 'ip', ['link', 'set', 'enp2s0.20', 'up']);
    inNs(ns.sensor, 'ip', ['addr', 'add', '10.98.20.2/24', 'dev', `${prefix}s`]);
    inNs(ns.sensor, 'ip', ['link', 'set', `${prefix}s`, 'up']);
    inNs(
      ns.appliance,
      'iptables-restore',
      [],
      readFileSync(join(ROOT, 'systemd', 'portcullis-firewall.rules'), 'utf8'),
    );
    inNs(
      ns.appliance,
      'ip6tables-restore',
      [],
      readFileSync(join(ROOT, 'systemd', 'portcullis-firewall6.rules'), 'utf8'),
    );
    // What listens on the appliance: the UI, the editor, DTLS, and a port nobody may reach.
    server = spawn('ip', [
      'netns',
      'exec',
      ns.appliance,
      process.execPath,
      PROBE,
      'serve',
      'tcp:8443',
      'tcp:1880',
      'tcp:2222',
      'udp:5684',
      'udp:5355',
    ]);
    await waitForLine(server, (l) => (l === 'ready' ? true : undefined));
  });
  after(() => {
    server?.kill('SIGKILL');
    for (const n of Object.values(ns)) spawnSync('ip', ['netns', 'del', n]);
  });

  it('admits the UI and the flow editor from the management port', () => {
    assert.ok(tcpReaches(ns.tech, '10.98.1.1', 8443), 'UI');
    assert.ok(tcpReaches(ns.tech, '10.98.1.1', 1880), 'Node-RED editor');
  });

  it('drops everything else on the management port', () => {
    assert.ok(!tcpReaches(ns.tech, '10.98.1.1', 2222), 'a port that is not the UI or the editor');
    assert.ok(!udpReaches(ns.tech, '10.98.1.1', 5355), 'UDP other than DTLS');
  });

  it('admits DTLS from a sensor VLAN, and not the UI or the editor (attack: a sensor reaching the admin side)', () => {
    assert.ok(udpReaches(ns.sensor, '10.98.20.1', 5684), 'DTLS');
    assert.ok(!tcpReaches(ns.sensor, '10.98.20.1', 8443), 'UI from a sensor');
    assert.ok(!tcpReaches(ns.sensor, '10.98.20.1', 1880), 'editor from a sensor');
    // ...not even at the management port's address, routed through the appliance.
    inNs(ns.sensor, 'ip', ['route', 'add', '10.98.1.0/24', 'via', '10.98.20.1']);
    assert.ok(!tcpReaches(ns.sensor, '10.98.1.1', 8443), 'UI at the management address, from a sensor');
  });

  it('lets DHCP answers in on any port (the appliance is a DHCP client)', () => {
    const rules = inNs(ns.appliance, 'iptables', ['-S', 'INPUT']);
    assert.match(rules, /^-P INPUT DROP$/m);
    assert.match(rules, /-A INPUT -p udp -m udp --sport 67 --dport 68 -j ACCEPT/);
  });
});
