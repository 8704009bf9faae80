import { X509Certificate } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statfsSync } from 'node:fs';
import { cpus, freemem, loadavg, totalmem, uptime } from 'node:os';
import { join } from 'node:path';
import type { Core } from '../../gateway/src/core.ts';
import { assessHealth, type Health, type RuntimeProbe } from '../../gateway/src/health.ts';

/**
 * The health page's figures, read from the kernel (/proc, /sys, statfs) and the gateway's own files each time
 * the page (or its live refresh) asks: nothing runs in the background for them. Rates (CPU, interface
 * traffic) are over the time since the previous reading, so the first reading shows totals only.
 */
export interface SystemHealth {
  health: Health;
  version: string;
  gatewayUptimeSeconds: number;
  hostUptimeSeconds: number;
  load: [number, number, number];
  cores: number;
  /** Percent busy across all cores since the previous reading; null on the first. */
  cpuPercent: number | null;
  memory: { totalBytes: number; availableBytes: number; gatewayRssBytes: number };
  disk: { path: string; totalBytes: number; freeBytes: number } | null;
  /** °C per thermal zone that reports one (none on most VMs). */
  temperatures: { zone: string; celsius: number }[];
  interfaces: {
    name: string;
    rxBytes: number;
    txBytes: number;
    /** Bytes per second since the previous reading; null on the first. */
    rxRate: number | null;
    txRate: number | null;
  }[];
  queueDepth: number;
  /** Readings refused since start because the queue was at its bound (sensors were told 5.03, retry later). */
  queueRefused: number;
  uplink: { state: string; since: string | null; lastError: string | null; configured: boolean };
  certificates: { name: string; subject: string; notAfter: string; daysLeft: number }[];
  keystore: { backend: string; hardwareBacked: boolean };
}

interface Sample {
  at: number;
  cpu: { idle: number; total: number };
  net: Map<string, { rx: number; tx: number }>;
}

function cpuTimes(): { idle: number; total: number } {
  let idle = 0;
  let total = 0;
  for (const c of cpus()) {
    idle += c.times.idle;
    total += c.times.idle + c.times.user + c.times.nice + c.times.sys + c.times.irq;
  }
  return { idle, total };
}

/** /proc/net/dev: bytes in and out per interface (absent off Linux: none). */
function netCounters(): Map<string, { rx: number; tx: number }> {
  const out = new Map<string, { rx: number; tx: number }>();
  let text: string;
  try {
    text = readFileSync('/proc/net/dev', 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n').slice(2)) {
    const m = /^\s*([^:\s]+):\s*(.*)$/.exec(line);
    if (!m?.[1] || !m[2]) continue;
    const f = m[2].trim().split(/\s+/).map(Number);
    out.set(m[1], { rx: f[0] ?? 0, tx: f[8] ?? 0 });
  }
  return out;
}

/** /proc/meminfo's MemAvailable (what can be used without swapping), falling back to free memory. */
function availableMemory(): number {
  try {
    const m = /MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
    if (m?.[1]) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return freemem();
}

function temperatures(): { zone: string; celsius: number }[] {
  const base = '/sys/class/thermal';
  const out: { zone: string; celsius: number }[] = [];
  let zones: string[] = [];
  try {
    zones = readdirSync(base).filter((z) => z.startsWith('thermal_zone'));
  } catch {
    return out;
  }
  for (const z of zones) {
    try {
      const milli = Number(readFileSync(join(base, z, 'temp'), 'utf8').trim());
      let type = z;
      try {
        type = readFileSync(join(base, z, 'type'), 'utf8').trim() || z;
      } catch {
        // unnamed zone
      }
      if (Number.isFinite(milli)) out.push({ zone: type, celsius: Math.round(milli / 100) / 10 });
    } catch {
      // a zone without a reading
    }
  }
  return out;
}

function certificate(name: string, file: string | undefined, now: number) {
  if (!file || !existsSync(file)) return [];
  try {
    const cert = new X509Certificate(readFileSync(file));
    const notAfter = new Date(cert.validTo).toISOString();
    return [
      {
        name,
        subject: cert.subject.replace(/\n/g, ', '),
        notAfter,
        daysLeft: Math.floor((Date.parse(notAfter) - now) / 86_400_000),
      },
    ];
  } catch {
    return [];
  }
}

export class SystemMonitor {
  private last: Sample | undefined;

  constructor(
    private readonly core: Core,
    private readonly runtime: RuntimeProbe | undefined,
  ) {}

  read(): SystemHealth {
    const core = this.core;
    const now = core.clock.now();
    const s = core.status();
    const health = assessHealth(s, this.runtime, now);
    const at = Date.now();
    const cpu = cpuTimes();
    const net = netCounters();
    const prev = this.last;
    this.last = { at, cpu, net };
    const dt = prev ? (at - prev.at) / 1000 : 0;
    const cpuPercent =
      prev && cpu.total > prev.cpu.total
        ? Math.round((1 - (cpu.idle - prev.cpu.idle) / (cpu.total - prev.cpu.total)) * 1000) / 10
        : null;
    let disk: SystemHealth['disk'] = null;
    try {
      const f = statfsSync(core.config.dataDir);
      disk = { path: core.config.dataDir, totalBytes: f.blocks * f.bsize, freeBytes: f.bavail * f.bsize };
    } catch {
      // no data directory (yet)
    }
    const uplink = this.runtime?.uplink();
    const tlsDir = join(core.config.dataDir, 'tls');
    const cfg = core.config as { ui?: { tls?: { certFile?: string } }; uplink?: { certFile?: string } };
    return {
      health,
      version: s.version,
      gatewayUptimeSeconds: s.uptimeSeconds,
      hostUptimeSeconds: Math.round(uptime()),
      load: loadavg().map((l) => Math.round(l * 100) / 100) as [number, number, number],
      cores: cpus().length,
      cpuPercent,
      memory: {
        totalBytes: totalmem(),
        availableBytes: availableMemory(),
        gatewayRssBytes: process.memoryUsage.rss(),
      },
      disk,
      temperatures: temperatures(),
      interfaces: [...net].map(([name, c]) => {
        const p = prev?.net.get(name);
        return {
          name,
          rxBytes: c.rx,
          txBytes: c.tx,
          rxRate: p && dt > 0 ? Math.max(0, Math.round((c.rx - p.rx) / dt)) : null,
          txRate: p && dt > 0 ? Math.max(0, Math.round((c.tx - p.tx) / dt)) : null,
        };
      }),
      queueDepth: uplink?.queueDepth ?? s.uplink.queueDepth,
      queueRefused: uplink?.refused ?? 0,
      uplink: {
        state: uplink?.state ?? (s.uplink.configured ? 'configured' : 'unset'),
        since: uplink?.since ?? null,
        lastError: uplink?.lastError ?? null,
        configured: s.uplink.configured,
      },
      certificates: [
        ...certificate('Web UI (HTTPS)', cfg.ui?.tls?.certFile ?? join(tlsDir, 'ui-cert.pem'), now),
        ...certificate('DTLS identity (sensors)', join(tlsDir, 'sensors-cert.pem'), now),
        ...certificate('Identity CA (issues the two above)', join(tlsDir, 'identity-ca.pem'), now),
        ...certificate('Cloud uplink client', cfg.uplink?.certFile, now),
      ],
      keystore: s.keystore,
    };
  }
}
