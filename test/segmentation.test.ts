/**
 * Segmentation without the kernel: the compiler's guarantees (deterministic, default deny, rule count
 * independent of devices), MUD import (all or nothing), VLAN files, segment config validation, quarantine
 * state. The same paths run against the real kernel in segmentation-netns.test.ts.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ManualClock } from '../gateway/src/clock.ts';
import { ConfigError, parseConfig } from '../gateway/src/config/index.ts';
import { Core } from '../gateway/src/core.ts';
import { createLogger } from '../gateway/src/log.ts';
import {
  type AllowList,
  compileRuleset,
  NameCache,
  parseMud,
  renderNetworkd,
  SegmentationService,
  startFirewallReconciler,
  validateNetworkd,
  withCounters,
} from '../gateway/src/segmentation/index.ts';
import { runCli } from './helpers/cli.ts';
import { SITE_SEGMENTS, siteDevice, siteInput, THERMO_MUD } from './helpers/site-model.ts';
import { tempDir } from './helpers/tmp.ts';

const MUD_TEXT = THERMO_MUD;
const SEGMENTS = SITE_SEGMENTS;
const device = siteDevice;
const site = siteInput;

const ruleCount = (doc: string) => doc.split('\n').filter((l) => l.startsWith('-A ')).length;

describe('firewall compiler', () => {
  it('is deterministic: the same state in any order gives the same documents and hash', () => {
    const a = compileRuleset(site(50));
    const input = site(50);
    const b = compileRuleset({
      ...input,
      devices: [...input.devices].reverse(),
      allowLists: [...input.allowLists].reverse(),
      segments: [...SEGMENTS].reverse(),
    });
    assert.equal(a.iptables, b.iptables);
    assert.equal(a.ipsets, b.ipsets);
    assert.equal(a.hash, b.hash);
    assert.notEqual(compileRuleset(site(51)).hash, a.hash);
  });

  it('keeps the rule count independent of the number of devices (sets grow instead)', () => {
    const small = compileRuleset(site(10));
    const large = compileRuleset(site(10_000));
    assert.equal(ruleCount(small.iptables), ruleCount(large.iptables));
    assert.equal(large.sets.find((s) => s.name === 'pc-from')?.entries.length, 10_000);
  });

  it('denies by default, lets replies through, and scopes DTLS/DNS/DHCP to the gateway and the UI to management', () => {
    const { iptables } = compileRuleset(site(1));
    assert.match(iptables, /^:INPUT DROP/m);
    assert.match(iptables, /^:FORWARD DROP/m);
    assert.match(iptables, /^-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT$/m);
    assert.match(
      iptables,
      /^-A INPUT -s 10\.20\.0\.0\/16 -i lan0\.20 -p udp -m udp --dport 5684 -j ACCEPT$/m,
    );
    assert.match(
      iptables,
      /^-A INPUT -s 10\.99\.0\.0\/24 -i lan0\.99 -p tcp -m tcp --dport 8443 -j ACCEPT$/m,
    );
    assert.doesNotMatch(iptables, /-i lan0\.20 .*--dport 8443/, 'sensors never get the UI');
    assert.doesNotMatch(iptables, /-i corp0 .*--dport 5684 -j ACCEPT/, 'only sensor segments get DTLS');
    assert.match(iptables, /hashlimit-above 200\/sec --hashlimit-burst 400/);
    // Only the segment with defaultPolicy allow goes out to the WAN; nothing goes segment to segment.
    assert.deepEqual(iptables.match(/^-A FORWARD -i \S+ -o \S+ -j ACCEPT$/gm), [
      '-A FORWARD -i corp0 -o wan0 -j ACCEPT',
    ]);
  });

  it('checks quarantine before connection tracking, so quarantine also cuts open flows', () => {
    const lines = compileRuleset(site(1)).iptables.split('\n');
    const q = lines.indexOf('-A FORWARD -m set --match-set pc-quarantine src -j DROP');
    const est = lines.indexOf('-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT');
    assert.ok(q >= 0 && q < est);
    assert.ok(
      lines.indexOf('-A INPUT -m set --match-set pc-isolate src -j DROP') <
        lines.indexOf('-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT'),
    );
  });

  it('turns a MUD allow-list into set entries: DNS name resolved, my-controller from the registry', () => {
    const r = compileRuleset(site(1));
    assert.deepEqual(r.sets.find((s) => s.name === 'pc-from')?.entries, ['10.20.0.2,tcp:8883,198.51.100.10']);
    assert.deepEqual(r.sets.find((s) => s.name === 'pc-to')?.entries, ['10.20.0.2,tcp:8080,10.30.0.5']);
    assert.deepEqual(r.warnings, []);
  });

  it('allows nothing for a name that does not resolve or a controller nobody registered, and says so', () => {
    const r = compileRuleset(site(1, { dns: new Map(), controllers: [] }));
    assert.deepEqual(r.sets.find((s) => s.name === 'pc-from')?.entries, []);
    assert.deepEqual(r.sets.find((s) => s.name === 'pc-to')?.entries, []);
    assert.equal(r.warnings.length, 2);
    assert.match(r.warnings.join('\n'), /did not resolve/);
    assert.match(r.warnings.join('\n'), /no controller registered/);
  });

  it('resolves local-networks, same-manufacturer, manufacturer and model to the site, without ports in groups', () => {
    const list = (deviceId: string, manufacturer: string, entries: AllowList['entries']): AllowList => ({
      deviceId,
      source: 'mud',
      mudUrl: `https://${manufacturer}/m.json`,
      manufacturer,
      entries,
    });
    const e = (peer: AllowList['entries'][number]['peer'], protocol: 'any' | 'udp' = 'any') => ({
      name: 'x',
      direction: 'from-device' as const,
      protocol,
      ports: null,
      peer,
    });
    const r = compileRuleset(
      site(0, {
        devices: [device('a', '10.20.0.10'), device('b', '10.20.0.11'), device('c', '10.20.0.12')],
        allowLists: [
          list('a', 'acme.example', [e({ kind: 'local-networks' }), e({ kind: 'same-manufacturer' }, 'udp')]),
          list('b', 'acme.example', [e({ kind: 'same-manufacturer' }, 'udp')]),
          list('c', 'other.example', [
            e({ kind: 'manufacturer', authority: 'acme.example' }, 'udp'),
            e({ kind: 'model', mudUrl: 'https://acme.example/m.json' }, 'udp'),
          ]),
        ],
      }),
    );
    const groups = r.iptables
      .split('\n')
      .filter((l) => / -m set --match-set pc-f\w+-d src -m set --match-set pc-f\w+-p dst -j ACCEPT$/.test(l));
    // local-networks (any), same-manufacturer acme (udp; shared by a and b, and by c's manufacturer entry), model.
    assert.equal(groups.length, 3);
    const byPeers = new Map(
      r.sets.filter((s) => s.name.endsWith('-p')).map((s) => [s.entries.join(' '), s.name]),
    );
    assert.ok(byPeers.has('10.20.0.0/16 10.30.0.0/24 10.99.0.0/24'), 'local-networks = every segment');
    const acme = r.sets.find((s) => s.name.endsWith('-p') && s.entries.join(' ') === '10.20.0.10 10.20.0.11');
    assert.ok(acme, 'the manufacturer group holds acme devices');
    const acmeDevices = r.sets.find((s) => s.name === acme.name.replace(/-p$/, '-d'));
    assert.deepEqual(acmeDevices?.entries, ['10.20.0.10', '10.20.0.11', '10.20.0.12']);
  });

  it('isolates decommissioned and isolate-quarantined addresses and gives pending or misplaced devices nothing', () => {
    const r = compileRuleset(
      site(0, {
        devices: [
          device('gone', '10.20.0.20', { state: 'decommissioned' }),
          device('iso', '10.20.0.21', {
            state: 'quarantined',
            quarantine: { mode: 'isolate', reason: 'x', since: '', previousState: 'active' },
          }),
          device('obs', '10.20.0.22', {
            state: 'quarantined',
            quarantine: { mode: 'observe', reason: 'x', since: '', previousState: 'active' },
          }),
          device('new', '10.20.0.23', { state: 'pending' }),
          device('lost', '10.30.0.9'),
        ],
        allowLists: ['new', 'lost'].map((id) => ({ ...parseMud(MUD_TEXT, id) })),
      }),
    );
    assert.deepEqual(r.sets.find((s) => s.name === 'pc-isolate')?.entries, ['10.20.0.20', '10.20.0.21']);
    assert.deepEqual(r.sets.find((s) => s.name === 'pc-quarantine')?.entries, [
      '10.20.0.20',
      '10.20.0.21',
      '10.20.0.22',
    ]);
    assert.deepEqual(r.sets.find((s) => s.name === 'pc-from')?.entries, []);
    assert.match(r.warnings.join('\n'), /lost: address 10\.30\.0\.9 is not inside a configured segment/);
  });

  it('refuses to compile with an OS-chosen port (0): there is nothing to write a rule for', () => {
    assert.throws(() => compileRuleset(site(1, { ports: { dtls: 0, ui: 8443 } })), {
      code: 'ERR_FIREWALL_COMPILE',
    });
  });
});

describe('firewall counters across an apply', () => {
  const saved = [
    '# Generated by iptables-save',
    '*filter',
    ':INPUT DROP [120:9600]',
    ':FORWARD DROP [7:420]',
    ':OUTPUT ACCEPT [300:24000]',
    ':pc-dtls - [0:0]',
    '[50:4000] -A INPUT -p udp -m udp --dport 5684 -j pc-dtls',
    '[12:960] -A pc-dtls -j DROP',
    '[3:180] -A FORWARD -s 10.0.0.1/32 -j DROP',
    '[4:240] -A FORWARD -s 10.0.0.1/32 -j DROP',
    'COMMIT',
  ].join('\n');

  it('carries the counts of every rule and chain the new ruleset keeps, in order for a repeated rule', () => {
    const next = [
      '*filter',
      ':INPUT DROP [0:0]',
      ':FORWARD DROP [0:0]',
      ':OUTPUT ACCEPT [0:0]',
      ':pc-dtls - [0:0]',
      '-A INPUT -p udp -m udp --dport 5684 -j pc-dtls',
      '-A FORWARD -s 10.0.0.1/32 -j DROP',
      '-A FORWARD -s 10.0.0.1/32 -j DROP',
      '-A pc-dtls -j DROP',
      'COMMIT',
    ].join('\n');
    assert.deepEqual(withCounters(next, saved).split('\n'), [
      '*filter',
      ':INPUT DROP [120:9600]',
      ':FORWARD DROP [7:420]',
      ':OUTPUT ACCEPT [300:24000]',
      ':pc-dtls - [0:0]',
      '[50:4000] -A INPUT -p udp -m udp --dport 5684 -j pc-dtls',
      '[3:180] -A FORWARD -s 10.0.0.1/32 -j DROP',
      '[4:240] -A FORWARD -s 10.0.0.1/32 -j DROP',
      '[12:960] -A pc-dtls -j DROP',
      'COMMIT',
    ]);
  });

  it('starts a new or changed rule, a third copy of a rule and a chain whose policy changed at zero', () => {
    const next = [
      '*filter',
      ':INPUT ACCEPT [0:0]',
      ':FORWARD DROP',
      '-A INPUT -p udp -m udp --dport 5683 -j pc-dtls',
      '-A FORWARD -s 10.0.0.1/32 -j DROP',
      '-A FORWARD -s 10.0.0.1/32 -j DROP',
      '-A FORWARD -s 10.0.0.1/32 -j DROP',
      'COMMIT',
    ].join('\n');
    assert.deepEqual(withCounters(next, saved).split('\n'), [
      '*filter',
      ':INPUT ACCEPT [0:0]',
      ':FORWARD DROP [7:420]',
      '-A INPUT -p udp -m udp --dport 5683 -j pc-dtls',
      '[3:180] -A FORWARD -s 10.0.0.1/32 -j DROP',
      '[4:240] -A FORWARD -s 10.0.0.1/32 -j DROP',
      '-A FORWARD -s 10.0.0.1/32 -j DROP',
      'COMMIT',
    ]);
  });
});

describe('MUD import', () => {
  const mud = () => JSON.parse(MUD_TEXT);
  const firstAce = (m: ReturnType<typeof mud>) => m['ietf-access-control-list:acls'].acl[0].aces.ace[0];
  const refused = (m: unknown, code: string, message: RegExp) =>
    assert.throws(
      () => parseMud(JSON.stringify(m), 'd'),
      (err: { code?: string; message: string }) => {
        assert.equal(err.code, code);
        assert.match(err.message, message);
        return true;
      },
    );

  it('keeps the connection-opening ACEs and drops reply-path ones (connection tracking covers replies)', () => {
    const list = parseMud(MUD_TEXT, 'd');
    assert.equal(list.manufacturer, 'sensors.example.com');
    assert.deepEqual(
      list.entries.map((e) => `${e.direction} ${e.name}`),
      ['from-device cloud-mqtts', 'to-device historian-polls'],
    );
  });

  it('refuses malformed files with the path of the problem', () => {
    assert.throws(() => parseMud('{', 'd'), { code: 'ERR_MUD_INVALID' });
    const noUrl = mud();
    delete noUrl['ietf-mud:mud']['mud-url'];
    refused(noUrl, 'ERR_MUD_INVALID', /mud-url/);
    const http = mud();
    http['ietf-mud:mud']['mud-url'] = 'http://sensors.example.com/x.json';
    refused(http, 'ERR_MUD_INVALID', /https/);
    const dangling = mud();
    dangling['ietf-mud:mud']['from-device-policy']['access-lists']['access-list'][0].name = 'nope';
    refused(dangling, 'ERR_MUD_INVALID', /"nope", which is not defined/);
    const badNet = mud();
    firstAce(badNet).matches.ipv4 = { 'destination-ipv4-network': '300.1.1.0/24', protocol: 6 };
    refused(badNet, 'ERR_MUD_INVALID', /not an IPv4 network/);
  });

  it('refuses constructs it cannot enforce exactly rather than importing part of the file', () => {
    const cases: [(m: ReturnType<typeof mud>) => void, RegExp][] = [
      [
        (m) => {
          firstAce(m).matches.tcp['destination-port'] = { operator: 'gte', port: 1024 };
        },
        /operator "gte"/,
      ],
      [
        (m) => {
          firstAce(m).actions.forwarding = 'drop';
        },
        /action "drop"/,
      ],
      [
        (m) => {
          firstAce(m).matches.tcp['destination-port'] = { 'lower-port': 1, 'upper-port': 65535 };
        },
        /wider than 256/,
      ],
      [
        (m) => {
          firstAce(m).matches.ipv4 = {
            'destination-ipv4-network': '10.0.0.0/8',
            'ietf-acldns:dst-dnsname': 'x.example',
            protocol: 6,
          };
        },
        /more than one peer/,
      ],
      [
        (m) => {
          firstAce(m).matches.ipv4.protocol = 47;
        },
        /IP protocol 47/,
      ],
      [
        (m) => {
          firstAce(m).matches.tcp['source-port'] = { operator: 'eq', port: 5000 };
        },
        /source-port/,
      ],
      [
        (m) => {
          firstAce(m).matches.ipv4 = { protocol: 6 };
        },
        /no peer/,
      ],
      [
        (m) => {
          m['ietf-access-control-list:acls'].acl[0].type = 'ipv6-acl-type';
          firstAce(m).matches = {
            ipv6: { 'destination-ipv6-network': '2001:db8::/32', protocol: 6 },
            tcp: firstAce(m).matches.tcp,
          };
        },
        /IPv6 networks/,
      ],
    ];
    for (const [mutate, message] of cases) {
      const m = mud();
      mutate(m);
      refused(m, 'ERR_MUD_UNSUPPORTED', message);
    }
    // An unknown match (Ethernet here) would silently allow more: refused as malformed.
    const eth = mud();
    firstAce(eth).matches.eth = { 'destination-mac-address': 'aa:bb:cc:dd:ee:ff' };
    assert.throws(() => parseMud(JSON.stringify(eth), 'd'), { code: 'ERR_MUD_INVALID' });
  });

  it('reads IPv6 ACLs that name peers by DNS name (enforced on the IPv4 path) and merges duplicates', () => {
    const m = mud();
    const v6 = structuredClone(m['ietf-access-control-list:acls'].acl[0]);
    v6.name = 'mud-thermo-v6fr';
    v6.type = 'ipv6-acl-type';
    for (const ace of v6.aces.ace) {
      if (ace.matches.ipv4) {
        ace.matches.ipv6 = ace.matches.ipv4;
        delete ace.matches.ipv4;
      }
    }
    m['ietf-access-control-list:acls'].acl.push(v6);
    m['ietf-mud:mud']['from-device-policy']['access-lists']['access-list'].push({ name: 'mud-thermo-v6fr' });
    assert.equal(parseMud(JSON.stringify(m), 'd').entries.length, 2);
  });
});

describe('VLAN interface configuration', () => {
  it('renders systemd-networkd files that pass validation', () => {
    const files = renderNetworkd(SEGMENTS);
    assert.deepEqual(files.map((f) => f.name).sort(), [
      '10-portcullis-lan0.network',
      '20-portcullis-corp.network',
      '20-portcullis-mgmt.netdev',
      '20-portcullis-mgmt.network',
      '20-portcullis-sensors.netdev',
      '20-portcullis-sensors.network',
    ]);
    assert.deepEqual(validateNetworkd(files), []);
    const netdev = files.find((f) => f.name === '20-portcullis-sensors.netdev')?.content ?? '';
    assert.match(netdev, /\[NetDev\]\nName=lan0\.20\nKind=vlan\n/);
    assert.match(netdev, /\[VLAN\]\nId=20\n/);
    const parent = files.find((f) => f.name === '10-portcullis-lan0.network')?.content ?? '';
    assert.match(parent, /VLAN=lan0\.20\nVLAN=lan0\.99\n/);
  });

  it('finds what networkd would reject: bad VLAN id, unknown key, a VLAN nobody attaches', () => {
    const files = renderNetworkd(SEGMENTS).map((f) => ({
      ...f,
      content: f.content
        .replace('Id=20', 'Id=5000')
        .replace('LinkLocalAddressing=no', 'LinkLocalAdressing=no'),
    }));
    const withoutParent = files.filter((f) => f.name !== '10-portcullis-lan0.network');
    const problems = validateNetworkd(withoutParent);
    assert.ok(problems.some((p) => /invalid Id=5000/.test(p)));
    assert.ok(problems.some((p) => /unknown key LinkLocalAdressing/.test(p)));
    assert.ok(problems.some((p) => /lan0\.20 is not attached/.test(p)));
  });
});

describe('segment configuration', () => {
  const parse = (segments: unknown[], firewall: unknown = {}) => parseConfig({ segments, firewall }, '/tmp');
  const base = {
    name: 'a',
    role: 'sensors',
    vlanId: 20,
    parentInterface: 'eth0',
    subnet: '10.1.0.0/24',
    gatewayAddress: '10.1.0.1',
  };
  const issue = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.issues.map((i) => `${i.path}: ${i.message}`).join('\n');
    }
    assert.fail('expected a ConfigError');
  };

  it('accepts a valid site', () => {
    assert.equal(
      parse([base, { ...base, name: 'b', vlanId: 30, subnet: '10.2.0.0/24', gatewayAddress: '10.2.0.1' }])
        .segments.length,
      2,
    );
  });

  it('refuses overlaps, clashes and addresses outside the subnet, naming the field', () => {
    assert.match(
      issue(() =>
        parse([
          base,
          { ...base, name: 'b', vlanId: 30, subnet: '10.1.0.128/25', gatewayAddress: '10.1.0.129' },
        ]),
      ),
      /subnet.*overlaps segment a/,
    );
    assert.match(
      issue(() => parse([base, { ...base, subnet: '10.2.0.0/24', gatewayAddress: '10.2.0.1' }])),
      /name a is used/,
    );
    assert.match(
      issue(() => parse([{ ...base, gatewayAddress: '10.9.0.1' }])),
      /gatewayAddress must be a host address inside subnet/,
    );
    assert.match(
      issue(() => parse([{ ...base, gatewayAddress: '10.1.0.255' }])),
      /host address/,
    );
    assert.match(
      issue(() => parse([{ ...base, subnet: '10.1.0.1/24' }])),
      /host bits zero/,
    );
    assert.match(
      issue(() => parse([{ ...base, vlanId: 4095 }])),
      /vlanId/,
    );
    assert.match(
      issue(() => parse([{ ...base, parentInterface: 'averyverylongnic', vlanId: 20 }])),
      /15/,
    );
    assert.match(
      issue(() => parse([{ ...base, defaultPolicy: 'allow' }])),
      /allow needs firewall\.wanInterface/,
    );
    assert.match(
      issue(() => parse([{ ...base, vlanId: undefined }])),
      /go together/,
    );
  });
});

describe('quarantine records', () => {
  function core(t: Parameters<typeof tempDir>[0]) {
    const dir = tempDir(t);
    const config = parseConfig({ dataDir: join(dir, 'var'), segments: [{ ...SEGMENTS[0] }] }, dir);
    const c = Core.open(config, new ManualClock());
    t.after(() => c.close());
    return c;
  }

  it('observe keeps the PSK usable (the device can still be watched); isolate does not', (t) => {
    const c = core(t);
    c.identity.addPskDevice({ id: 's1', pskIdentity: 's1', pskHex: '11'.repeat(16) }, 'test');
    c.identity.quarantine('s1', { mode: 'observe', reason: 'watch it' }, 'test');
    assert.ok(c.identity.pskFor(Buffer.from('s1')), 'observe: handshake still possible');
    c.identity.release('s1', 'test');
    c.identity.quarantine('s1', { mode: 'isolate', reason: 'cut it' }, 'test');
    assert.equal(c.identity.pskFor(Buffer.from('s1')), undefined, 'isolate: no handshake');
  });

  it('returns a device to its previous state and refuses what makes no sense', (t) => {
    const c = core(t);
    c.identity.addPskDevice({ id: 's1', pskIdentity: 's1', pskHex: '11'.repeat(16) }, 'test');
    assert.throws(() => c.identity.quarantine('s1', { mode: 'observe', reason: '  ' }, 'test'), {
      code: 'ERR_IDENTITY_INVALID',
    });
    assert.throws(() => c.identity.release('s1', 'test'), { code: 'ERR_IDENTITY_STATE' });
    const q = c.identity.quarantine('s1', { mode: 'observe', reason: 'r' }, 'test');
    assert.equal(q.quarantine?.previousState, 'active');
    assert.throws(() => c.identity.quarantine('s1', { mode: 'observe', reason: 'again' }, 'test'), {
      code: 'ERR_IDENTITY_STATE',
    });
    assert.equal(c.identity.release('s1', 'test').state, 'active');
    c.identity.decommission('s1', 'test');
    assert.throws(() => c.identity.quarantine('s1', { mode: 'observe', reason: 'r' }, 'test'), {
      code: 'ERR_IDENTITY_STATE',
    });
    const actions = [...c.store.audit.iterate()].map((e) => e.action);
    assert.deepEqual(
      actions.filter((a) => a.startsWith('device.')),
      ['device.add', 'device.quarantine', 'device.release', 'device.decommission'],
    );
  });

  it('places devices only at free host addresses inside their segment', (t) => {
    const c = core(t);
    for (const id of ['s1', 's2'])
      c.identity.addPskDevice({ id, pskIdentity: id, pskHex: '11'.repeat(16) }, 'test');
    assert.throws(() => c.identity.place('s1', { address: '10.20.0.5' }, 'test'), /needs a segment/);
    assert.throws(() => c.identity.place('s1', { segment: 'nope', address: '10.20.0.5' }, 'test'), {
      code: 'ERR_IDENTITY_NOT_FOUND',
    });
    assert.throws(
      () => c.identity.place('s1', { segment: 'sensors', address: '10.21.0.5' }, 'test'),
      /not a device address/,
    );
    assert.throws(
      () => c.identity.place('s1', { segment: 'sensors', address: '10.20.0.1' }, 'test'),
      /not a device address/,
      'the gateway address',
    );
    assert.equal(
      c.identity.place('s1', { segment: 'sensors', address: '10.20.0.5' }, 'test').address,
      '10.20.0.5',
    );
    assert.throws(() => c.identity.place('s2', { segment: 'sensors', address: '10.20.0.5' }, 'test'), {
      code: 'ERR_IDENTITY_CONFLICT',
    });
  });
});

describe('DNS names for allow-lists', () => {
  it('keeps the last answer when a refresh fails, and resolves again when due', async () => {
    let now = 0;
    let answer: string[] | Error = ['192.0.2.1'];
    const cache = new NameCache(
      async () => {
        if (answer instanceof Error) throw answer;
        return answer;
      },
      () => now,
    );
    await cache.refresh(['a.example']);
    assert.deepEqual(cache.snapshot().get('a.example'), ['192.0.2.1']);
    assert.equal(cache.isStale(['a.example'], 1000), false);
    now = 1000;
    assert.equal(cache.isStale(['a.example'], 1000), true);
    answer = new Error('SERVFAIL');
    assert.deepEqual((await cache.refresh(['a.example', 'b.example'])).failed, ['a.example', 'b.example']);
    assert.deepEqual(
      cache.snapshot().get('a.example'),
      ['192.0.2.1'],
      'a hiccup does not cut the device off',
    );
    assert.deepEqual(cache.snapshot().get('b.example'), [], 'never resolved allows nothing');
  });
});

describe('portcullis firewall / mud / device place: bad input', () => {
  async function home(t: Parameters<typeof tempDir>[0]) {
    const dir = tempDir(t);
    const config = join(dir, 'config.yaml');
    writeFileSync(
      config,
      `dataDir: ${join(dir, 'var')}\nsegments:\n  - {name: sensors, role: sensors, vlanId: 20, parentInterface: lan0, subnet: 10.20.0.0/24, gatewayAddress: 10.20.0.1}\n`,
    );
    const cli = (...args: string[]) => runCli(['--config', config, ...args], { cwd: dir });
    assert.equal(
      (await cli('device', 'add', 's1', '--psk-identity', 's1', '--generate-psk', '--segment', 'sensors'))
        .code,
      0,
    );
    return { dir, cli };
  }

  it('a failed MUD import keeps the previous allow-list whole', async (t) => {
    const { dir, cli } = await home(t);
    const good = join(dir, 'good.json');
    writeFileSync(good, MUD_TEXT);
    assert.equal((await cli('mud', 'import', good, '--device', 's1')).code, 0);
    const before = (await cli('firewall', 'render', '--json')).stdout;
    const bad = JSON.parse(MUD_TEXT);
    bad['ietf-access-control-list:acls'].acl[1].aces.ace[1].matches.tcp['destination-port'] = {
      operator: 'neq',
      port: 1,
    };
    writeFileSync(join(dir, 'bad.json'), JSON.stringify(bad));
    const r = await cli('mud', 'import', join(dir, 'bad.json'), '--device', 's1');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ERR_MUD_UNSUPPORTED.*historian-polls.*operator "neq"/);
    assert.equal((await cli('firewall', 'render', '--json')).stdout, before, 'same ruleset as before');
    const missing = await cli('mud', 'import', good, '--device', 'nobody');
    assert.match(missing.stderr, /device nobody not found/);
  });

  it('refuses a device address outside its segment and an unknown quarantine mode', async (t) => {
    const { cli } = await home(t);
    const r = await cli('device', 'place', 's1', '--address', '192.168.1.5');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ERR_IDENTITY_INVALID.*not a device address in segment sensors/);
    const mode = await cli('device', 'quarantine', 's1', '--reason', 'x', '--mode', 'maybe');
    assert.equal(mode.code, 2);
    const noReason = await cli('device', 'quarantine', 's1');
    assert.equal(noReason.code, 2);
    assert.match(noReason.stderr, /--reason/);
  });

  it('renders the ruleset and the VLAN files without touching the kernel', async (t) => {
    const { dir, cli } = await home(t);
    const render = await cli('firewall', 'render');
    assert.equal(render.code, 0, render.stderr);
    assert.match(render.stdout, /^# portcullis ruleset [0-9a-f]{64}$/m);
    assert.match(render.stdout, /^\*filter$/m);
    const out = join(dir, 'networkd');
    const files = await cli('segment', 'network-config', '--out', out);
    assert.equal(files.code, 0, files.stderr);
    assert.match(readFileSync(join(out, '20-portcullis-sensors.netdev'), 'utf8'), /Kind=vlan/);
    const ip = await cli('segment', 'network-config', '--format', 'ip');
    assert.match(ip.stdout, /^link add link lan0 name lan0\.20 type vlan id 20$/m);
  });
});

describe('firewall reconcile loop', () => {
  it('applies at start, again when DNS answers change on schedule, and not when nothing changed', async (t) => {
    const dir = tempDir(t);
    const clock = new ManualClock();
    const config = parseConfig({ dataDir: join(dir, 'var'), segments: [{ ...SITE_SEGMENTS[0] }] }, dir);
    const core = Core.open(config, clock);
    t.after(() => core.close());
    core.identity.addPskDevice(
      { id: 's1', pskIdentity: 's1', pskHex: '11'.repeat(16), segment: 'sensors' },
      'test',
    );
    core.identity.place('s1', { address: '10.20.0.7' }, 'test');
    let answer = '198.51.100.10';
    const service = new SegmentationService({
      config: core.config,
      store: core.store,
      audit: core.audit,
      identity: core.identity,
      clock,
      names: new NameCache(
        async () => [answer],
        () => clock.now(),
      ),
    });
    service.importMud('s1', THERMO_MUD, 'test');
    // The kernel side is proven in segmentation-netns.test.ts; here only what the loop asks for is recorded.
    const applied: string[] = [];
    const loop = startFirewallReconciler(
      {
        render: (o) => service.render(o),
        apply: async (_actor, compiled) => {
          const c = compiled ?? (await service.render());
          applied.push(c.sets.find((s) => s.name === 'pc-from')?.entries.join(' ') ?? '');
          return {
            hash: c.hash,
            warnings: [],
            rules: 0,
            setEntries: 0,
            timings: { stageMs: 0, testMs: 0, swapMs: 0, verifyMs: 0, totalMs: 0 },
          };
        },
      },
      core.identity,
      60,
      () => clock.now(),
      createLogger('fatal'),
    );
    t.after(() => loop.close());
    await loop.ready;
    assert.deepEqual(applied, ['10.20.0.7,tcp:8883,198.51.100.10']);
    await new Promise((r) => setTimeout(r, 1300));
    assert.equal(applied.length, 1, 'nothing changed, nothing applied');
    answer = '198.51.100.77';
    clock.advance(60_000);
    const deadline = Date.now() + 5000;
    while (applied.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(applied.at(-1), '10.20.0.7,tcp:8883,198.51.100.77');
  });
});
