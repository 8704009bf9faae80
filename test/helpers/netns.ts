import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { waitForLine } from './cli.ts';

const PROBE = fileURLToPath(new URL('./netprobe.mjs', import.meta.url));

export function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { input, stdio: ['pipe', 'pipe', 'pipe'] }).toString();
}

export function inNs(ns: string, cmd: string, args: string[], input?: string): string {
  return sh('ip', ['netns', 'exec', ns, cmd, ...args], input);
}

/** Node host in a namespace: a leaf connected to the gateway namespace by one veth pair. */
export interface Leaf {
  ns: string;
  address: string;
}

/**
 * The test site, every part in its own network namespace (all named with a per-run prefix, and only those
 * are ever deleted):
 *   sensor-a 10.77.20.10, sensor-b 10.77.20.11 — bridged in the gateway as `lan0.20`, the name the VLAN
 *     interface has on the appliance, with br_netfilter so bridged frames pass the FORWARD chain;
 *   corp 10.77.30.5 (protected, corp0), mgmt 10.77.99.5 (management, mgmt0), cloud 198.51.100.10 (wan0).
 * `/etc/netns/<gateway>/hosts` gives the gateway namespace its own name resolution (MUD DNS names).
 */
export class Site {
  readonly prefix = `pct${process.pid % 100000}`;
  readonly gw = `${this.prefix}-gw`;
  readonly sensorA: Leaf = { ns: `${this.prefix}-sa`, address: '10.77.20.10' };
  readonly sensorB: Leaf = { ns: `${this.prefix}-sb`, address: '10.77.20.11' };
  readonly corp: Leaf = { ns: `${this.prefix}-corp`, address: '10.77.30.5' };
  readonly mgmt: Leaf = { ns: `${this.prefix}-mgmt`, address: '10.77.99.5' };
  readonly cloud: Leaf = { ns: `${this.prefix}-cloud`, address: '198.51.100.10' };
  private readonly children: ChildProcess[] = [];
  private readonly created: string[] = [];

  static readonly segmentsYaml = [
    'segments:',
    '  - {name: sensors, role: sensors, vlanId: 20, parentInterface: lan0, subnet: 10.77.20.0/24, gatewayAddress: 10.77.20.1}',
    '  - {name: corp, role: protected, interface: corp0, subnet: 10.77.30.0/24, gatewayAddress: 10.77.30.1, defaultPolicy: allow}',
    '  - {name: mgmt, role: management, interface: mgmt0, subnet: 10.77.99.0/24, gatewayAddress: 10.77.99.1}',
  ].join('\n');

  build(hosts: string): void {
    for (const ns of [this.gw, this.sensorA.ns, this.sensorB.ns, this.corp.ns, this.mgmt.ns, this.cloud.ns]) {
      sh('ip', ['netns', 'add', ns]);
      this.created.push(ns);
      inNs(ns, 'ip', ['link', 'set', 'lo', 'up']);
    }
    mkdirSync(`/etc/netns/${this.gw}`, { recursive: true });
    writeFileSync(`/etc/netns/${this.gw}/hosts`, `127.0.0.1 localhost\n${hosts}\n`);
    const g = (...a: string[]) => inNs(this.gw, 'ip', a);
    g('link', 'add', 'lan0.20', 'type', 'bridge');
    g('addr', 'add', '10.77.20.1/24', 'dev', 'lan0.20');
    g('link', 'set', 'lan0.20', 'up');
    inNs(this.gw, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.bridge.bridge-nf-call-iptables=1']);
    const link = (
      leaf: Leaf,
      gwSide: string,
      prefixLen: number,
      gwAddress: string | null,
      bridge: string | null,
    ) => {
      g('link', 'add', gwSide, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', leaf.ns);
      if (bridge) g('link', 'set', gwSide, 'master', bridge);
      if (gwAddress) g('addr', 'add', `${gwAddress}/${prefixLen}`, 'dev', gwSide);
      g('link', 'set', gwSide, 'up');
      inNs(leaf.ns, 'ip', ['addr', 'add', `${leaf.address}/${prefixLen}`, 'dev', 'eth0']);
      inNs(leaf.ns, 'ip', ['link', 'set', 'eth0', 'up']);
      const via = gwAddress ?? '10.77.20.1';
      inNs(leaf.ns, 'ip', ['route', 'add', 'default', 'via', via]);
    };
    link(this.sensorA, 'sa0', 24, null, 'lan0.20');
    link(this.sensorB, 'sb0', 24, null, 'lan0.20');
    link(this.corp, 'corp0', 24, '10.77.30.1', null);
    link(this.mgmt, 'mgmt0', 24, '10.77.99.1', null);
    link(this.cloud, 'wan0', 24, '198.51.100.1', null);
  }

  /** Starts echo servers in a namespace (`tcp:8883`, `udp:9999`, ...) and waits until they listen. */
  async serve(ns: string, specs: string[]): Promise<void> {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, PROBE, 'serve', ...specs], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.children.push(child);
    await waitForLine(child, (l) => (l === 'ready' ? true : undefined));
  }

  /** Whether a TCP connection from `ns` to host:port opens (a dropped SYN times out, a refused one fails). */
  canConnect(ns: string, host: string, port: number, timeoutMs = 1500): boolean {
    try {
      inNs(ns, process.execPath, [PROBE, 'connect', host, String(port), String(timeoutMs)]);
      return true;
    } catch {
      return false;
    }
  }

  /** A long-lived TCP connection; `ping()` answers whether the echo came back through it. */
  async session(ns: string, host: string, port: number): Promise<{ ping(): Promise<string>; close(): void }> {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, PROBE, 'session', host, String(port)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.children.push(child);
    const first = await waitForLine(child, (l) => (l === 'connected' || l === 'error' ? l : undefined));
    if (first !== 'connected') throw new Error(`session to ${host}:${port} did not open`);
    return {
      ping: () => {
        const answer = waitForLine(child, (l) => (['pong', 'timeout', 'error'].includes(l) ? l : undefined));
        child.stdin?.write('ping\n');
        return answer;
      },
      close: () => child.kill(),
    };
  }

  udpFlood(ns: string, host: string, port: number, count: number): void {
    inNs(ns, process.execPath, [PROBE, 'udpflood', host, String(port), String(count)]);
  }

  async dispose(): Promise<void> {
    for (const c of this.children) {
      if (c.exitCode === null && c.signalCode === null) {
        const exited = once(c, 'exit');
        c.kill('SIGKILL');
        await exited;
      }
    }
    for (const ns of this.created) {
      try {
        sh('ip', ['netns', 'del', ns]);
      } catch {
        // already gone
      }
    }
    rmSync(`/etc/netns/${this.gw}`, { recursive: true, force: true });
  }
}
