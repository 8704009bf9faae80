/**
 * What ships is what runs: the `portcullis` command runs the compiled JavaScript in dist/ (no TypeScript loader),
 * each command loads only what it needs, the DTLS crypto addon is optional (the install step never fails, the
 * gateway falls back and says so), workers' failures reach the log, health and alerts, and /healthz tells the
 * uplink's real state. (The production tree itself — `npm ci --omit=dev` — is loaded in image-build.test.ts.)
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ManualClock } from '../gateway/src/clock.ts';
import { resolveConfig } from '../gateway/src/config/index.ts';
import { createLogger } from '../gateway/src/log.ts';
import { Gateway } from '../gateway/src/main.ts';
import { PORTCULLIS_BIN, runCli, spawnCli, waitForLine } from './helpers/cli.ts';
import { freeUdpPort } from './helpers/gateway.ts';
import { gatewayUnitStart } from './helpers/gateway-unit.ts';
import { httpsGet } from './helpers/https.ts';
import { makePki } from './helpers/pki.ts';
import { tempDir } from './helpers/tmp.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Runs the CLI with a module-resolution hook that lists every module it loads. */
function loadedModules(args: string[], cwd: string): { status: number | null; modules: string[] } {
  const hooks = join(cwd, 'trace-hooks.mjs');
  writeFileSync(
    hooks,
    `export async function resolve(s, c, next) { const r = await next(s, c); process.stderr.write('LOADED ' + r.url + '\\n'); return r; }`,
  );
  const register = join(cwd, 'trace.mjs');
  writeFileSync(
    register,
    `import { register } from 'node:module'; register(${JSON.stringify(`file://${hooks}`)});`,
  );
  const r = spawnSync(process.execPath, ['--import', register, PORTCULLIS_BIN, ...args], {
    cwd,
    encoding: 'utf8',
  });
  const modules = r.stderr
    .split('\n')
    .filter((l) => l.startsWith('LOADED '))
    .map((l) => l.slice('LOADED '.length));
  return { status: r.status, modules };
}

const packagesIn = (modules: string[]) =>
  new Set(
    modules.flatMap((m) => {
      const hit = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(m);
      return hit ? [hit[1] as string] : [];
    }),
  );

describe('the shipped runtime', () => {
  it('runs compiled JavaScript from dist/, never a .ts module or the tsx loader', (t) => {
    const dir = tempDir(t);
    for (const args of [['--version'], ['device', 'list'], ['config', 'check']]) {
      const { status, modules } = loadedModules(args, dir);
      assert.equal(status, 0, args.join(' '));
      assert.ok(
        modules.some((m) => m.includes('/dist/gateway/src/cli/index.js')),
        'the CLI comes from dist/',
      );
      assert.deepEqual(
        modules.filter((m) => m.endsWith('.ts') || m.endsWith('.tsx') || m.includes('/node_modules/tsx/')),
        [],
        `${args.join(' ')} loads TypeScript`,
      );
    }
  });

  it('loads only what a command needs: --version no config, database or network code; device list no UI or uplink', (t) => {
    const dir = tempDir(t);
    const version = packagesIn(loadedModules(['--version'], dir).modules);
    assert.deepEqual([...version].sort(), ['commander']);
    const list = packagesIn(loadedModules(['device', 'list'], dir).modules);
    for (const heavy of ['hono', '@hono/node-server', 'mqtt', 'execa', 'qrcode', 'tar', '@peculiar/x509']) {
      assert.ok(!list.has(heavy), `device list loads ${heavy}`);
    }
    assert.ok(list.has('zod'), 'the config is still validated in full');
  });

  it('runs the uplink thread (broker-thread.js) from dist/ without the tsx loader, and it answers over its port', () => {
    // What remote-connection.ts starts for a software-key uplink: a publish with no connection comes back refused.
    const thread = join(ROOT, 'dist', 'gateway', 'src', 'uplink', 'broker-thread.js');
    const script = `
      const { Worker } = require('node:worker_threads');
      const w = new Worker(${JSON.stringify(thread)});
      w.on('error', (e) => { console.error(e.message); process.exit(1); });
      w.on('message', (batch) => { console.log(JSON.stringify(batch)); w.terminate(); });
      w.postMessage([{ type: 'publish', index: Float64Array.of(7, 0, 2, 2, 0), data: Buffer.from('{}') }]);`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), [{ type: 'acks', ids: [7], errs: ['uplink not connected'] }]);
  });

  it('says what to do when dist/ is missing instead of a stack trace', (t) => {
    const dir = tempDir(t);
    // A checkout that was never built: bin/ without dist/ beside it.
    cpSync(join(ROOT, 'bin'), join(dir, 'bin'), { recursive: true });
    const r = spawnSync(process.execPath, [join(dir, 'bin', 'portcullis.js'), '--version'], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /dist\/ is missing: run `npm run build`/);
  });
});

describe('how the appliance starts the gateway', () => {
  it("the benches read node's flags and the environment from the gateway unit, and node accepts those flags", () => {
    const unit = gatewayUnitStart();
    // The young generation's cap, old space's growing factor and glibc's arena limit are what the footprint and
    // memory figures rest on.
    assert.ok(unit.nodeArgs.includes('--max-semi-space-size=2'), unit.nodeArgs.join(' '));
    assert.ok(unit.nodeArgs.includes('--heap-growing-percent=20'), unit.nodeArgs.join(' '));
    assert.equal(unit.env.MALLOC_ARENA_MAX, '1');
    assert.equal(unit.env.PORTCULLIS_CONFIG, undefined, 'a bench passes --config instead');
    // A flag node refuses would keep the gateway from starting at all.
    const r = spawnSync(process.execPath, [...unit.nodeArgs, '-e', '0'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const typo = spawnSync(process.execPath, ['--max-semi-spce-size=2', '-e', '0'], { encoding: 'utf8' });
    assert.notEqual(typo.status, 0, 'node refuses an unknown flag (so the check above means something)');
  });

  it('a unit the bench cannot read as "node [flags] …/bin/portcullis.js start" is refused, not guessed', () => {
    const unit = (execStart: string, env = 'Environment=MALLOC_ARENA_MAX=2') =>
      `[Unit]\nDescription=x\n[Service]\n${execStart}\n${env}\n[Install]\nWantedBy=multi-user.target\n`;
    assert.deepEqual(gatewayUnitStart(unit('ExecStart=/usr/bin/node --a=1 /opt/p/bin/portcullis.js start')), {
      nodeArgs: ['--a=1'],
      env: { MALLOC_ARENA_MAX: '2' },
    });
    assert.throws(() => gatewayUnitStart(unit('ExecStart=/bin/sh -c "node /opt/p/bin/portcullis.js start"')));
    assert.throws(() => gatewayUnitStart(unit('ExecStart=/usr/bin/node /opt/p/bin/portcullis.js flows')));
    assert.throws(() =>
      gatewayUnitStart(
        unit('ExecStart=/usr/bin/node /opt/p/bin/portcullis.js start', 'Environment="A=1 B=2"'),
      ),
    );
    assert.throws(() => gatewayUnitStart('[Unit]\nDescription=x\n'));
  });
});

describe('production dependencies', () => {
  it('every package the shipped code imports (gateway, UI, Node-RED nodes, bin) is a production dependency', async () => {
    const { readdirSync } = await import('node:fs');
    const { builtinModules } = await import('node:module');
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Record<
      string,
      Record<string, string>
    >;
    const shipped = new Set([
      ...Object.keys(pkg.dependencies ?? {}),
      ...Object.keys(pkg.optionalDependencies ?? {}),
    ]);
    const nodesPkg = JSON.parse(readFileSync(join(ROOT, 'nodes', 'package.json'), 'utf8')) as Record<
      string,
      Record<string, string>
    >;
    const nodesShipped = new Set(Object.keys(nodesPkg.dependencies ?? {}));
    const files = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory()
          ? e.name === 'node_modules' || e.name === 'examples'
            ? []
            : files(join(dir, e.name))
          : /\.(ts|tsx|js|cjs|mjs)$/.test(e.name)
            ? [join(dir, e.name)]
            : [],
      );
    const specifiers = (file: string) =>
      [
        ...readFileSync(file, 'utf8').matchAll(
          /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|require\(\s*['"]([^'"]+)['"]\s*\)/gm,
        ),
      ]
        .filter(
          (m) => !/^\s*(import|export) type /.test(m[0].trim()) && !/import type|export type/.test(m[0]),
        )
        .map((m) => (m[1] ?? m[2] ?? m[3]) as string);
    const packageOf = (spec: string) =>
      spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : (spec.split('/')[0] as string);
    const builtins = new Set(builtinModules);
    const missing: string[] = [];
    const seen = new Set<string>();
    const check = (roots: string[], allowed: Set<string>) => {
      for (const root of roots) {
        for (const f of files(join(ROOT, root))) {
          for (const spec of specifiers(f)) {
            if (spec.startsWith('.') || spec.startsWith('node:') || builtins.has(spec) || spec === 'tsx')
              continue;
            seen.add(packageOf(spec));
            if (!allowed.has(packageOf(spec))) missing.push(`${f.slice(ROOT.length)} imports ${spec}`);
          }
        }
      }
    };
    // tsx is resolved only by a TypeScript caller (gateway/src/child.ts), never from dist/.
    check(['gateway/src', 'ui/src', 'bin'], shipped);
    check(['nodes'], new Set([...nodesShipped, 'node-red']));
    // The scan sees what it must: the pull poller's DTLS client, the database, the Node-RED nodes' runtime.
    for (const p of ['node-dtls-client', 'better-sqlite3', 'hono', 'mqtt'])
      assert.ok(seen.has(p), `scan missed ${p}`);
    assert.deepEqual(missing, []);
    assert.ok(!shipped.has('tsx') && !shipped.has('typescript'), 'no TypeScript loader or compiler ships');
  });
});

describe('the DTLS crypto addon is optional', () => {
  it('its install step succeeds without a C toolchain and says what that means', (t) => {
    const dir = tempDir(t);
    const copy = join(dir, 'dtls-crypto');
    cpSync(join(ROOT, 'native', 'dtls-crypto'), copy, {
      recursive: true,
      filter: (src) => !src.includes(`${join('dtls-crypto', 'build')}`),
    });
    // What a machine without a compiler sees: every compiler invocation fails.
    const r = spawnSync('npm', ['run', 'install', '--silent'], {
      cwd: copy,
      encoding: 'utf8',
      env: { ...process.env, CC: 'false', CXX: 'false' },
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /not built \(is a C toolchain installed\?.*The gateway will use node:crypto/s);
  });

  it('a gateway without it runs on node:crypto, logs that at start and shows it in /healthz', async (t) => {
    const dir = tempDir(t);
    const hide = join(dir, 'hide-addon.cjs');
    writeFileSync(
      hide,
      `const M = require('node:module'); const r = M._resolveFilename;
       M._resolveFilename = function (id, ...rest) {
         if (id === 'portcullis-dtls-crypto') throw Object.assign(new Error("Cannot find module '" + id + "'"), { code: 'MODULE_NOT_FOUND' });
         return r.call(this, id, ...rest);
       };`,
    );
    const config = join(dir, 'config.yaml');
    writeFileSync(config, `ui: { port: 0 }\ndtls: { port: ${await freeUdpPort()} }\n`);
    const child = spawnCli(['--config', config, 'start'], {
      cwd: dir,
      env: { ...process.env, NODE_OPTIONS: `--require ${hide}` },
    });
    t.after(() => child.kill('SIGKILL'));
    const lines: string[] = [];
    child.stdout?.on('data', (d: Buffer) => lines.push(...d.toString().split('\n')));
    const started = await waitForLine(child, (line) => {
      const l = JSON.parse(line) as { msg?: string; ui?: string };
      return l.msg === 'gateway started' ? l : undefined;
    });
    assert.ok(
      lines.some((l) => l.includes('node:crypto') || l.includes('node-crypto')),
      'the fallback is logged at start',
    );
    const ca = readFileSync(join(dir, 'var', 'tls', 'identity-ca.pem'), 'utf8');
    const body = JSON.parse((await httpsGet(`${started.ui}/healthz`, ca)).body);
    assert.equal(body.components.dtlsCrypto, 'node-crypto');
    child.kill('SIGTERM');
  });
});

describe('workers that crash', () => {
  it('a pull poller that cannot start is logged with its error, reported crash-looping in /healthz, and alerted', async (t) => {
    const dir = tempDir(t);
    // The poller's DTLS client made unresolvable (as when a production install lacked it); the gateway itself
    // does not use it, so only the worker fails — at start, every time.
    const hide = join(dir, 'hide-client.cjs');
    writeFileSync(
      hide,
      `const M = require('node:module'); const r = M._resolveFilename;
       M._resolveFilename = function (id, ...rest) {
         if (id.startsWith('node-dtls-client')) throw Object.assign(new Error("Cannot find module '" + id + "'"), { code: 'MODULE_NOT_FOUND' });
         return r.call(this, id, ...rest);
       };`,
    );
    const config = join(dir, 'config.yaml');
    writeFileSync(config, `ui: { port: 0 }\ndtls: { port: ${await freeUdpPort()} }\n`);
    const add = await runCli(
      [
        '--config',
        config,
        'device',
        'add',
        'puller-1',
        '--psk-identity',
        'puller-1',
        '--generate-psk',
        '--pull',
        'coaps://127.0.0.1:5999/reading',
      ],
      { cwd: dir },
    );
    assert.equal(add.code, 0, add.stderr);
    const child = spawnCli(['--config', config, 'start'], {
      cwd: dir,
      env: { ...process.env, NODE_OPTIONS: `--require ${hide}` },
    });
    t.after(() => child.kill('SIGKILL'));
    const log: string[] = [];
    child.stdout?.on('data', (d: Buffer) => log.push(...d.toString().split('\n')));
    const started = await waitForLine(child, (line) => {
      const l = JSON.parse(line) as { msg?: string; ui?: string };
      return l.msg === 'gateway started' ? l : undefined;
    });
    const ca = readFileSync(join(dir, 'var', 'tls', 'identity-ca.pem'), 'utf8');
    // Three exits with back-off 1 s, 2 s: crash-looping within seconds, not a silent loop.
    const deadline = Date.now() + 30_000;
    let body: { status: string; reasons: string[]; components: { pullPoller: string } };
    do {
      await new Promise((r) => setTimeout(r, 500));
      body = JSON.parse((await httpsGet(`${started.ui}/healthz`, ca)).body);
    } while (body.components.pullPoller !== 'crash-looping' && Date.now() < deadline);
    assert.equal(body.components.pullPoller, 'crash-looping');
    assert.equal(body.status, 'degraded');
    assert.match(
      body.reasons.join(' '),
      /pull-mode poller is crash-looping .*Cannot find module 'node-dtls-client/,
    );
    assert.ok(
      log.some((l) => l.includes('"worker stderr"') && l.includes('node-dtls-client')),
      "the worker's stderr reaches the log",
    );
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    const alerts = await runCli(['--config', config, 'alerts', 'list', '--json'], { cwd: dir });
    assert.match(alerts.stdout, /gateway\.worker_crash_loop/);
  });
});

describe('/healthz and the uplink', () => {
  it('keeps running with a certificate that is not for the uplink key, and says so (mqtt.js would throw out of reach)', async (t) => {
    const dir = tempDir(t);
    const pki = makePki();
    t.after(() => pki.dispose());
    const config = join(dir, 'config.yaml');
    writeFileSync(
      config,
      [
        `dataDir: ${join(dir, 'var')}`,
        'ui: { port: 0 }',
        `dtls: { port: ${await freeUdpPort()} }`,
        'uplink:',
        `  url: mqtts://127.0.0.1:${await freeUdpPort()}`,
        `  caFile: ${pki.caPath}`,
        // Another party's certificate: valid, from the right CA, but not for this gateway's key.
        `  certFile: ${pki.client.certPath}`,
        '  topicPrefix: site-m',
        '',
      ].join('\n'),
    );
    const clock = new ManualClock(Date.UTC(2026, 11, 6, 9));
    const gateway = await Gateway.start(resolveConfig(config), { clock, logger: createLogger('fatal') });
    try {
      const deadline = Date.now() + 10_000;
      while (gateway.uplink.status().lastError === null && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.match(gateway.uplink.status().lastError ?? '', /not for this gateway's uplink key/);
      clock.advance(61_000);
      const ca = readFileSync(join(dir, 'var', 'tls', 'identity-ca.pem'), 'utf8');
      const body = JSON.parse(
        (await httpsGet(`https://127.0.0.1:${gateway.uiAddress.port}/healthz`, ca)).body,
      );
      assert.equal(body.status, 'degraded');
      assert.match(body.uplink.lastError, /not for this gateway's uplink key/);
    } finally {
      await gateway.stop('test');
    }
  });

  it('reports a configured uplink that cannot connect as degraded after 60 s, with since and the last error', async (t) => {
    const dir = tempDir(t);
    // A broker address where nothing listens; a certificate file so the uplink really tries.
    const pki = makePki();
    t.after(() => pki.dispose());
    const config = join(dir, 'config.yaml');
    const dead = await freeUdpPort();
    const base = [
      `dataDir: ${join(dir, 'var')}`,
      'ui: { port: 0 }',
      `dtls: { port: ${await freeUdpPort()} }`,
      'uplink:',
      `  url: mqtts://127.0.0.1:${dead}`,
      `  caFile: ${pki.caPath}`,
      '  topicPrefix: site-h',
    ];
    writeFileSync(config, `${base.join('\n')}\n`);
    // The uplink's own key, certified as the cloud operator would.
    const csr = await runCli(['--config', config, 'uplink', 'csr', '--subject', 'CN=gw-health'], {
      cwd: dir,
    });
    assert.equal(csr.code, 0, csr.stderr);
    writeFileSync(config, `${[...base, `  certFile: ${pki.signCsr(csr.stdout, 'gw-health')}`].join('\n')}\n`);
    const clock = new ManualClock(Date.UTC(2026, 11, 6, 9));
    const gateway = await Gateway.start(resolveConfig(config), { clock, logger: createLogger('fatal') });
    try {
      const ca = readFileSync(join(dir, 'var', 'tls', 'identity-ca.pem'), 'utf8');
      const url = `https://127.0.0.1:${gateway.uiAddress.port}/healthz`;
      const fresh = JSON.parse((await httpsGet(url, ca)).body);
      assert.equal(fresh.status, 'ok', 'within the grace period a reconnecting uplink is not yet degraded');
      assert.notEqual(fresh.components.uplink, 'connected');
      // Let the first attempt fail for real, then move the gateway's clock past the grace period.
      const deadline = Date.now() + 15_000;
      while (gateway.uplink.status().lastError === null && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
      }
      clock.advance(61_000);
      const res = await httpsGet(url, ca);
      assert.equal(res.status, 200, 'degraded, not down: a health check must not restart it for the broker');
      const body = JSON.parse(res.body);
      assert.equal(body.status, 'degraded');
      assert.ok(['connecting', 'disconnected'].includes(body.uplink.state));
      assert.equal(body.uplink.since, new Date(Date.UTC(2026, 11, 6, 9)).toISOString());
      assert.match(body.uplink.lastError, /ECONNREFUSED/);
      assert.match(body.reasons.join(' '), /^uplink (connecting|disconnected) for 6\d s: .*ECONNREFUSED/);
    } finally {
      await gateway.stop('test');
    }
  });
});
