// `npm run bench -- ui`: server time of every technician page with a site of 1,000 devices (alerts, a long
// audit log, a week of activity) in the store — in process, so it is the gateway's own time, without TLS or
// a browser. The peer is the JSON API answering the same question in the same run (the devices page against
// GET /api/v1/devices): the ratio is what rendering HTML costs on top of reading the data.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSync } from 'otplib';
import { BUCKET_MS } from '../gateway/src/anomaly/activity.ts';
import { systemClock } from '../gateway/src/clock.ts';
import { parseConfig } from '../gateway/src/config/index.ts';
import { Core } from '../gateway/src/core.ts';
import { SITE_SEGMENTS } from '../test/helpers/site-model.ts';
import { createUiApp } from '../ui/src/app.ts';
import { parseOptions, round } from './lib/load.ts';

const PASSWORD = 'bench password, long enough';

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;
}

export async function uiBench(argv: string[]) {
  const o = parseOptions('ui', argv, { devices: 1000, alerts: 200, audit: 20_000, repeat: 30 });
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-ui-'));
  const core = Core.open(
    parseConfig(
      { dataDir: join(dir, 'var'), segments: SITE_SEGMENTS, firewall: { wanInterface: 'wan0' } },
      dir,
    ),
    systemClock,
  );
  try {
    process.stderr.write(`seeding ${o.devices} devices, ${o.alerts} alerts, ${o.audit} audit entries\n`);
    const now = Date.now();
    const states = ['active', 'active', 'active', 'pending', 'quarantined'] as const;
    for (let i = 0; i < o.devices; i++) {
      const id = `sensor-${String(i).padStart(4, '0')}`;
      core.identity.addPskDevice(
        {
          id,
          pskIdentity: id,
          generate: true,
          segment: 'sensors',
          type: i % 7 === 0 ? 'camera' : 'thermometer',
        },
        'bench',
      );
      const state = states[i % states.length] as (typeof states)[number];
      if (state !== 'active') core.store.devices.setState(id, state, new Date(now).toISOString());
    }
    for (let i = 0; i < o.alerts; i++) {
      core.store.alerts.raise(
        {
          deviceId: `sensor-${String(i % o.devices).padStart(4, '0')}`,
          severity: i % 3 === 0 ? 'high' : 'medium',
          kind: 'anomaly.rate',
          explanation: `message rate 40 per window, expected 2 ± 1 (z = ${i})`,
          evidence: { reasons: [{ feature: 'rate', text: 'message rate 40 per window' }] },
          dedupeKey: `bench:${i}`,
        },
        new Date(now).toISOString(),
      );
    }
    for (let i = 0; i < o.audit; i++) {
      core.audit.append({
        actor: 'bench',
        action: 'bench.event',
        target: `sensor-${i % o.devices}`,
        details: { i },
      });
    }
    // A week of 15-minute buckets for the device whose page is measured.
    const buckets = Array.from({ length: (7 * 86_400_000) / BUCKET_MS }, (_, k) => {
      const start = Math.floor((now - k * BUCKET_MS) / BUCKET_MS) * BUCKET_MS;
      return [
        'sensor-0001',
        {
          bucketStart: new Date(start).toISOString(),
          messages: 30 + (k % 11),
          bytes: 2000,
          authFailures: 0,
          maxScore: k % 50 === 0 ? 4 : 0,
        },
      ] as [
        string,
        { bucketStart: string; messages: number; bytes: number; authFailures: number; maxScore: number },
      ];
    });
    core.store.activity.addAll(buckets);

    const app = createUiApp(core);
    await core.users.createUser({ username: 'bench', role: 'admin', password: PASSWORD }, 'bench');
    let cookie = '';
    const request = async (method: string, path: string, json?: unknown) => {
      const res = await app.request(path, {
        method,
        headers: { cookie, ...(json ? { 'content-type': 'application/json' } : {}) },
        body: json ? JSON.stringify(json) : undefined,
      });
      const set = /__Host-portcullis=([^;]+)/.exec(res.headers.get('set-cookie') ?? '');
      if (set) cookie = `__Host-portcullis=${set[1]}`;
      return res;
    };
    await request('POST', '/auth/login', { username: 'bench', password: PASSWORD });
    const { secret } = (await (await request('POST', '/auth/totp/enroll')).json()) as { secret: string };
    await request('POST', '/auth/totp/confirm', { code: generateSync({ secret }) });

    const time = async (path: string) => {
      const samples: number[] = [];
      for (let i = 0; i < o.repeat; i++) {
        const t0 = performance.now();
        const res = await request('GET', path);
        await res.arrayBuffer();
        if (res.status !== 200) throw new Error(`${path} answered ${res.status}`);
        samples.push(performance.now() - t0);
      }
      samples.sort((a, b) => a - b);
      return { medianMs: round(percentile(samples, 0.5), 2), p95Ms: round(percentile(samples, 0.95), 2) };
    };
    const pages: Record<string, { medianMs: number; p95Ms: number }> = {};
    for (const path of [
      '/',
      '/devices',
      '/devices?q=sensor-09&state=active',
      '/devices/sensor-0001?range=7d',
      '/onboarding',
      '/alerts',
      '/segments',
      '/audit',
      '/compliance',
      '/users',
    ]) {
      process.stderr.write(`timing ${path}\n`);
      pages[path] = await time(path);
    }
    const peer = await time('/api/v1/devices');
    const worst = Object.entries(pages).reduce((a, b) => (b[1].p95Ms > a[1].p95Ms ? b : a));
    return {
      bench: 'ui',
      site: { devices: o.devices, alerts: o.alerts, auditEntries: o.audit, activityBuckets: buckets.length },
      pages,
      peer: { 'GET /api/v1/devices': peer },
      ratios: {
        devicesPageOverApi: round((pages['/devices']?.medianMs ?? 0) / peer.medianMs, 2),
      },
      slowest: { page: worst[0], p95Ms: worst[1].p95Ms },
      targetMs: 200,
      met: Object.values(pages).every((p) => p.p95Ms < 200),
    };
  } finally {
    core.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
