import { z } from 'zod';
import { hostSchema } from './diagnostics.ts';

/**
 * ICMP echo from the gateway, through the system's `ping` (iputils): the gateway holds no CAP_NET_RAW, and
 * iputils then uses an unprivileged ICMP datagram socket, which systemd's default `net.ipv4.ping_group_range`
 * allows. The host is validated by `hostSchema` (a DNS name or an IP address — nothing that starts with "-",
 * no spaces, no shell characters) and passed after `--` in an argument array, never through a shell; the
 * count and the deadline are bounded here, not by the caller.
 */

export const PING_MAX_COUNT = 5;
export const pingCountSchema = z.coerce.number().int().min(1).max(PING_MAX_COUNT);

export interface PingResult {
  host: string;
  count: number;
  transmitted?: number;
  received?: number;
  lossPercent?: number;
  /** Round trip in ms: min / avg / max. */
  rtt?: { min: number; avg: number; max: number };
  /** The address ping resolved the name to. */
  address?: string;
  /** Why it did not run or got no answer: a stable code and the words for the technician. */
  error?: { code: string; message: string };
}

/** One echo per second, each waiting at most 2 s; the whole run ends within count + 2 s whatever happens. */
export async function ping(host: string, count: number, command = 'ping'): Promise<PingResult> {
  const h = hostSchema.parse(host);
  const n = pingCountSchema.parse(count);
  // Belt and braces: hostSchema never lets this through, and `--` ends ping's options anyway.
  if (h.startsWith('-')) throw new Error('a host cannot start with "-"');
  const deadline = n + 2;
  // execa (~100 modules) loads with the first ping, not with the UI.
  const { execa } = await import('execa');
  const r = await execa(command, ['-n', '-c', String(n), '-W', '2', '-w', String(deadline), '--', h], {
    reject: false,
    timeout: (deadline + 3) * 1000,
    stdin: 'ignore',
    maxBuffer: 64 * 1024,
    env: { LC_ALL: 'C', PATH: process.env.PATH ?? '/usr/bin:/bin' },
    extendEnv: false,
  });
  const out: PingResult = { host: h, count: n };
  const err = r as { code?: string };
  if (err.code === 'ENOENT') {
    return {
      ...out,
      error: {
        code: 'ERR_DIAG_PING_UNAVAILABLE',
        message: 'ping is not installed on this gateway (Debian package iputils-ping)',
      },
    };
  }
  const stdout = String(r.stdout ?? '');
  const stderr = String(r.stderr ?? '');
  const addr = /^PING \S+ \(([0-9a-fA-F:.]+)\)/m.exec(stdout);
  if (addr) out.address = addr[1];
  const stats = /(\d+) packets transmitted, (\d+) received(?:, \+\d+ errors)?, ([\d.]+)% packet loss/.exec(
    stdout,
  );
  if (stats) {
    out.transmitted = Number(stats[1]);
    out.received = Number(stats[2]);
    out.lossPercent = Number(stats[3]);
  }
  const rtt = /= ([\d.]+)\/([\d.]+)\/([\d.]+)\//.exec(stdout);
  if (rtt) out.rtt = { min: Number(rtt[1]), avg: Number(rtt[2]), max: Number(rtt[3]) };
  if (r.timedOut) {
    out.error = { code: 'ERR_DIAG_PING_TIMEOUT', message: `ping did not end within ${deadline + 3} s` };
  } else if (!stats) {
    // ping's own words (unknown host, no permission for ICMP sockets), first line only and bounded.
    const why = stderr.split('\n').find((l) => l.trim()) ?? `ping exited with ${r.exitCode}`;
    out.error = { code: 'ERR_DIAG_PING_FAILED', message: why.replace(/^ping: /, '').slice(0, 200) };
  } else if (out.received === 0) {
    out.error = { code: 'ERR_DIAG_PING_NO_REPLY', message: 'no reply' };
  }
  return out;
}
