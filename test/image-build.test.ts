/**
 * The appliance root file system, CI-sized: image-build/build-rootfs.sh builds Debian 13 with mmdebstrap from
 * Debian's mirror, and inside it (chroot) the gateway runs on Debian's nodejs, the units are enabled and pass
 * `systemd-analyze verify`, no account has a password, SSH is absent, the release key is pinned, the SBOM
 * lists both Debian and npm packages (and no development tool ships), no secret is in the image, and the
 * image's own first boot makes Node-RED's encrypted credentials, with which its Node-RED then runs.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { VERSION } from '../gateway/src/version.ts';
import { tempDir } from './helpers/tmp.ts';

const ROOT = join(import.meta.dirname, '..');
const UNITS = ['portcullis-gateway.service', 'portcullis-flows.service', 'portcullis-flows-setup.service'];

describe('appliance root file system (amd64)', () => {
  let rootfs: string;
  let keyPem: string;
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  const inRoot = (...argv: string[]) => spawnSync('chroot', [rootfs, ...argv], { encoding: 'utf8' });

  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-image-'));
    keyPem = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }) as string;
    writeFileSync(join(dir, 'release.pub.pem'), keyPem);
    rootfs = join(dir, 'rootfs');
    execFileSync(
      'bash',
      [join(ROOT, 'image-build', 'build-rootfs.sh'), '--release-key', join(dir, 'release.pub.pem'), rootfs],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
        timeout: 20 * 60_000,
      },
    );
  });

  it("runs `portcullis --version` on Debian's own nodejs", () => {
    const node = inRoot('node', '--version');
    assert.match(node.stdout, /^v2\d\./, 'Debian 13 ships Node.js 20+');
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own field syntax, not a template
    assert.equal(inRoot('dpkg-query', '-W', '-f', '${Status}', 'nodejs').stdout, 'install ok installed');
    const r = inRoot('portcullis', '--version');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), VERSION);
    assert.equal(inRoot('portcullis', 'config', 'check', '/etc/portcullis/config.yaml').status, 0);
  });

  it('has the units enabled and passing systemd-analyze verify', () => {
    const enabled = spawnSync('systemctl', [`--root=${rootfs}`, 'is-enabled', ...UNITS], {
      encoding: 'utf8',
    });
    assert.deepEqual(enabled.stdout.trim().split('\n'), ['enabled', 'enabled', 'enabled']);
    const verify = inRoot('systemd-analyze', 'verify', ...UNITS.map((u) => `/etc/systemd/system/${u}`));
    assert.equal(verify.status, 0, verify.stderr);
  });

  it('has no password on any account, no SSH, and the service users without a login', () => {
    for (const line of readFileSync(join(rootfs, 'etc', 'shadow'), 'utf8')
      .split('\n')
      .filter(Boolean)) {
      const [user, hash] = line.split(':');
      assert.ok(hash === '*' || hash?.startsWith('!'), `${user} has a password`);
    }
    assert.ok(!existsSync(join(rootfs, 'usr', 'sbin', 'sshd')), 'no SSH server');
    const passwd = readFileSync(join(rootfs, 'etc', 'passwd'), 'utf8');
    assert.match(passwd, /^portcullis:.*:\/usr\/sbin\/nologin$/m);
    assert.match(passwd, /^portcullis-flows:.*:\/usr\/sbin\/nologin$/m);
  });

  it("makes Node-RED's secrets at first boot, on the device, as encrypted credentials only", () => {
    // The image carries none: an empty credential store, no editor key, no admin list.
    assert.deepEqual(readdirSync(join(rootfs, 'etc', 'credstore.encrypted')), []);
    assert.equal(statSync(join(rootfs, 'etc', 'credstore.encrypted')).mode & 0o777, 0o700);
    assert.ok(!existsSync(join(rootfs, 'etc', 'portcullis-flows', 'admin-users.json')));
    assert.ok(
      !existsSync(join(rootfs, 'var', 'lib', 'systemd', 'credential.secret')),
      'no host key baked in',
    );

    // First boot: systemd gives the machine its ID (the image ships /etc/machine-id empty; the host key is
    // bound to it), then portcullis-flows-setup.service runs, with the image's own systemd-creds and Node.
    assert.equal(readFileSync(join(rootfs, 'etc', 'machine-id'), 'utf8'), '');
    assert.equal(inRoot('systemd-machine-id-setup').status, 0);
    // ...with the unit's UMask=0077.
    const setup = inRoot('sh', '-c', 'umask 0077 && exec portcullis flows setup');
    assert.equal(setup.status, 0, setup.stderr);
    assert.match(setup.stdout, /made \/etc\/credstore\.encrypted\/portcullis-flows-credential-secret\.cred/);
    const admins = statSync(join(rootfs, 'etc', 'portcullis-flows', 'admin-users.json'));
    const flowsGid = readFileSync(join(rootfs, 'etc', 'group'), 'utf8').match(
      /^portcullis-flows:x:(\d+):/m,
    )?.[1];
    assert.equal(String(admins.gid), flowsGid, 'readable by the flows service through its group');
    // What systemd does for LoadCredentialEncrypted=, then the appliance's settings.js reading them.
    assert.equal(inRoot('mkdir', '-m', '0700', '/run/creds-test').status, 0);
    for (const id of ['credential-secret', 'tls-key']) {
      const d = inRoot(
        'systemd-creds',
        'decrypt',
        `--name=${id}`,
        `/etc/credstore.encrypted/portcullis-flows-${id}.cred`,
        `/run/creds-test/${id}`,
      );
      assert.equal(d.status, 0, d.stderr);
    }
  });

  it("starts the image's Node-RED as its own user with those credentials, the Portcullis nodes loaded, login required", async (t) => {
    const passphrase = 'image test passphrase';
    const add = spawnSync(
      'chroot',
      [rootfs, 'sh', '-c', 'umask 0077 && exec portcullis flows admin add tech'],
      {
        input: `${passphrase}\n`,
        encoding: 'utf8',
      },
    );
    assert.equal(add.status, 0, add.stderr);
    // What systemd provides the unit: its state directory and the credentials owned by the service user.
    const [uid, gid] = (
      readFileSync(join(rootfs, 'etc', 'passwd'), 'utf8').match(/^portcullis-flows:x:(\d+):(\d+):/m) ?? []
    ).slice(1);
    assert.ok(uid && gid);
    assert.equal(
      inRoot('install', '-d', '-o', uid, '-g', gid, '-m', '0700', '/var/lib/portcullis-flows').status,
      0,
    );
    assert.equal(inRoot('chown', '-R', `${uid}:${gid}`, '/run/creds-test').status, 0);
    const port = 19_000 + Math.floor(Math.random() * 1000);
    const red = spawn(
      '/usr/sbin/chroot',
      [
        `--userspec=${uid}:${gid}`,
        rootfs,
        '/usr/bin/node',
        '/opt/portcullis/flows/node_modules/node-red/red.js',
        '--settings',
        '/etc/portcullis-flows/settings.js',
        '--userDir',
        '/var/lib/portcullis-flows',
      ],
      {
        env: {
          PATH: '/usr/bin:/bin',
          HOME: '/var/lib/portcullis-flows',
          CREDENTIALS_DIRECTORY: '/run/creds-test',
          PORTCULLIS_FLOWS_PORT: String(port),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    t.after(() => red.kill());
    let log = '';
    red.stdout.on('data', (d: Buffer) => {
      log += d.toString();
    });
    red.stderr.on('data', (d: Buffer) => {
      log += d.toString();
    });
    const deadline = Date.now() + 120_000;
    while (!log.includes(`Server now running at https://127.0.0.1:${port}/`)) {
      assert.ok(Date.now() < deadline && red.exitCode === null, `Node-RED did not start:\n${log}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    // The editor's own certificate (made at first boot) verifies the connection: no verification turned off.
    const ca = readFileSync(join(rootfs, 'etc', 'portcullis-flows', 'tls', 'cert.pem'));
    const call = (
      path: string,
      init: { method?: string; body?: string; headers?: Record<string, string> } = {},
    ) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpsRequest(
          `https://127.0.0.1:${port}${path}`,
          { ca, method: init.method ?? 'GET', headers: init.headers },
          (res) => {
            let body = '';
            res.on('data', (d: Buffer) => {
              body += d.toString();
            });
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on('error', reject);
        req.end(init.body);
      });
    assert.equal(
      (await call('/nodes', { headers: { accept: 'application/json' } })).status,
      401,
      'no login, no Admin API',
    );
    const login = (password: string) =>
      call('/auth/token', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          client_id: 'node-red-admin',
          grant_type: 'password',
          scope: '*',
          username: 'tech',
          password,
        }).toString(),
      });
    assert.equal((await login('not the passphrase')).status, 403);
    const token = await login(passphrase);
    assert.equal(token.status, 200, token.body);
    const nodes = await call('/nodes', {
      headers: {
        accept: 'application/json',
        authorization: `Bearer ${(JSON.parse(token.body) as { access_token: string }).access_token}`,
      },
    });
    assert.equal(nodes.status, 200);
    const modules = (JSON.parse(nodes.body) as { module: string; types: string[] }[]).filter(
      (n) => n.module === 'node-red-contrib-portcullis',
    );
    assert.ok(
      modules.some((m) => m.types.includes('portcullis-quarantine')),
      'the Portcullis nodes are in the palette',
    );
    assert.ok(!log.includes(passphrase));
  });

  it('loads every entry point and worker from the production tree: built JavaScript, no development dependency', async (t) => {
    // The release itself: `current` is an absolute link, which on the build host would point outside the root.
    const current = join(rootfs, 'opt', 'portcullis', 'releases', VERSION);
    assert.ok(existsSync(join(current, 'dist', 'gateway', 'src', 'cli', 'index.js')), 'dist/ ships');
    assert.ok(
      existsSync(join(current, 'node_modules', 'node-dtls-client')),
      'the pull poller has its client',
    );
    // The CLI on a config of its own (the data under /tmp of the root file system).
    const port = 20_000 + Math.floor(Math.random() * 1000);
    assert.equal(inRoot('install', '-d', '-m', '0700', '/tmp/pt').status, 0);
    writeFileSync(
      join(rootfs, 'tmp', 'pt', 'config.yaml'),
      `dataDir: /tmp/pt/var\nui: { port: ${port} }\ndtls: { port: ${port + 1} }\n`,
    );
    const list = inRoot('portcullis', 'device', 'list', '--config', '/tmp/pt/config.yaml');
    assert.equal(list.status, 0, list.stderr);
    // Each worker module loads on the image's node with the shipped modules: it waits for its parent and
    // exits 0 when the IPC channel closes; a missing module would exit 1 at once.
    for (const worker of ['pull/poller-worker.js', 'uplink/broker-worker.js']) {
      const r = inRoot(
        'node',
        '-e',
        `const c = require('node:child_process').fork('/opt/portcullis/current/dist/gateway/src/${worker}', [], { stdio: ['ignore', 'inherit', 'pipe', 'ipc'] });
         let err = ''; c.stderr.on('data', (d) => { err += d; });
         const timer = setTimeout(() => c.disconnect(), 1500);
         c.on('exit', (code) => { clearTimeout(timer); if (code !== 0) { console.error(err); process.exit(1); } });`,
      );
      assert.equal(r.status, 0, `${worker}: ${r.stderr}`);
    }
    // The uplink's connection thread (issue 23) loads the same way and answers a publish with no connection.
    const thread = inRoot(
      'node',
      '-e',
      `const w = new (require('node:worker_threads').Worker)('/opt/portcullis/current/dist/gateway/src/uplink/broker-thread.js');
       w.on('error', (e) => { console.error(e.message); process.exit(1); });
       w.on('message', (b) => { process.exitCode = b[0] && b[0].type === 'acks' ? 0 : 1; w.terminate(); });
       w.postMessage([{ type: 'publish', index: Float64Array.of(1, 0, 2, 2, 0), data: Buffer.from('{}') }]);`,
    );
    assert.equal(thread.status, 0, `uplink/broker-thread.js: ${thread.stderr}`);
    // The gateway itself, started as the unit starts it, answers /healthz with the DTLS crypto addon in use.
    const gw = spawn('chroot', [rootfs, 'portcullis', 'start', '--config', '/tmp/pt/config.yaml'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    t.after(() => gw.kill('SIGKILL'));
    let stderr = '';
    gw.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const deadline = Date.now() + 60_000;
    let health: { status?: string; components?: { dtlsCrypto?: string } } = {};
    while (health.status === undefined) {
      assert.ok(Date.now() < deadline && gw.exitCode === null, `the gateway did not start:\n${stderr}`);
      health = await new Promise((resolve) => {
        const req = httpsRequest(
          `https://127.0.0.1:${port}/healthz`,
          { rejectUnauthorized: false },
          (res) => {
            let body = '';
            res.on('data', (d: Buffer) => {
              body += d.toString();
            });
            res.on('end', () => resolve(JSON.parse(body) as typeof health));
          },
        );
        req.on('error', () => setTimeout(() => resolve({}), 250));
        req.end();
      });
    }
    assert.equal(health.status, 'ok');
    assert.equal(health.components?.dtlsCrypto, 'native');
    gw.kill('SIGTERM');
    const [code] = (await once(gw, 'exit')) as [number | null];
    assert.equal(code, 0, stderr);
  });

  it('comes with the first-boot defaults: network, firewall, console, time, no TPM broker (issue 29)', () => {
    const state = (unit: string) =>
      spawnSync('systemctl', [`--root=${rootfs}`, 'is-enabled', unit], { encoding: 'utf8' }).stdout.trim();
    for (const unit of [
      'systemd-networkd.service',
      'systemd-resolved.service',
      'systemd-timesyncd.service',
      'portcullis-firewall.service',
      'portcullis-console.service',
      'portcullis-console.path',
    ])
      assert.equal(state(unit), 'enabled', unit);
    assert.equal(state('tpm2-abrmd.service'), 'masked', 'no 90 s wait for /dev/tpm0 without a TPM');
    assert.notEqual(state('systemd-networkd-wait-online.service'), 'enabled', 'nothing waits for a network');
    // agetty reads /run/issue (made by portcullis-console) only when there is no /etc/issue.
    assert.ok(!existsSync(join(rootfs, 'etc', 'issue')));
    const config = readFileSync(join(rootfs, 'etc', 'portcullis', 'config.yaml'), 'utf8');
    assert.match(config, /setupCodeFile: \/run\/portcullis-console\/setup-code/);
    assert.match(config, /host: 0\.0\.0\.0/);
    // The console's settings (issue 25): its own file in the state directory; the main file and the release
    // key root's and nobody else's to write; the NTP drop-in a link to the service's file; the polkit rule.
    assert.match(config, /^consoleConfigFile: \/var\/lib\/portcullis\/config\/console\.yaml$/m);
    for (const f of ['config.yaml', 'release-key.pub.pem']) {
      const st = statSync(join(rootfs, 'etc', 'portcullis', f));
      assert.ok(st.uid === 0 && (st.mode & 0o022) === 0, `${f} is root's alone`);
    }
    assert.equal(
      readlinkSync(join(rootfs, 'etc', 'systemd', 'timesyncd.conf.d', '60-portcullis-ui.conf')),
      '/var/lib/portcullis-time/60-portcullis-ui.conf',
    );
    assert.equal(
      readFileSync(join(rootfs, 'etc', 'polkit-1', 'rules.d', '50-portcullis.rules'), 'utf8'),
      readFileSync(join(ROOT, 'systemd', 'polkit', '50-portcullis.rules'), 'utf8'),
    );
    assert.equal(inRoot('dpkg-query', '-W', 'polkitd').status, 0, 'polkitd judges the rule');
    // The clock form's zones: trixie's minimal system has no tzdata, and the booted image refused every zone.
    assert.equal(inRoot('dpkg-query', '-W', 'tzdata').status, 0, 'the time zone database');
    assert.ok(statSync(join(rootfs, 'usr', 'share', 'zoneinfo', 'Europe', 'Berlin')).isFile());
    for (const d of ['kernel/postinst.d', 'kernel/postrm.d', 'initramfs/post-update.d'])
      assert.ok(existsSync(join(rootfs, 'etc', d, 'zz-portcullis-esp')), d);
    // The hook does nothing where there is no ESP (the Raspberry Pi image, this root file system).
    const hook = inRoot('/etc/kernel/postinst.d/zz-portcullis-esp', '0.0.0-none');
    assert.equal(hook.status, 0, hook.stderr);

    // `portcullis segment network-config --out /etc/systemd/network` puts the sensor VLANs' files where
    // networkd reads them, sorted before the management port's catch-all, which never matches a VLAN.
    const net = join(rootfs, 'etc', 'systemd', 'network');
    const management = readFileSync(join(net, '90-portcullis-management.network'), 'utf8');
    assert.match(management, /^Type=ether$/m, 'VLAN interfaces are Type=vlan: the segments keep theirs');
    assert.match(management, /^DHCP=ipv4$/m);
    assert.match(management, /^LinkLocalAddressing=ipv4$/m);
    assert.match(management, /^Group=1$/m, 'the firewall admits the UI on this group only');
    assert.equal(inRoot('install', '-d', '-m', '0700', '/tmp/seg').status, 0);
    writeFileSync(
      join(rootfs, 'tmp', 'seg', 'config.yaml'),
      [
        'dataDir: /tmp/seg/var',
        'segments:',
        '  - {name: sensors, role: sensors, vlanId: 20, parentInterface: enp2s0, subnet: 10.20.0.0/24, gatewayAddress: 10.20.0.1}',
        '',
      ].join('\n'),
    );
    const gen = inRoot(
      'portcullis',
      'segment',
      'network-config',
      '--config',
      '/tmp/seg/config.yaml',
      '--out',
      '/etc/systemd/network',
    );
    assert.equal(gen.status, 0, gen.stderr);
    const files = readdirSync(net).sort();
    assert.deepEqual(files, [
      '10-portcullis-enp2s0.network',
      '20-portcullis-sensors.netdev',
      '20-portcullis-sensors.network',
      '90-portcullis-management.network',
    ]);
    for (const f of files.slice(0, 3)) rmSync(join(net, f));
  });

  it("leaves Debian's update-initramfs in place: no stand-in and no diversion from the build", () => {
    // initramfs-once.sh diverts it while the packages install (the initramfs is made once, at the end).
    const diversions = inRoot('dpkg-divert', '--list');
    assert.equal(diversions.status, 0, diversions.stderr);
    assert.doesNotMatch(diversions.stdout, /update-initramfs|portcullis/);
    assert.ok(
      !existsSync(join(rootfs, 'usr', 'sbin', 'update-initramfs')),
      'the build left its stand-in at /usr/sbin/update-initramfs',
    );
    assert.ok(!existsSync(join(rootfs, 'usr', 'sbin', 'update-initramfs.portcullis-real')));
  });

  it('pins the release key (public only) and ships an SBOM of Debian and npm packages', () => {
    assert.equal(readFileSync(join(rootfs, 'etc', 'portcullis', 'release-key.pub.pem'), 'utf8'), keyPem);
    const sbom = JSON.parse(
      readFileSync(join(rootfs, 'usr', 'share', 'doc', 'portcullis', 'sbom.cdx.json'), 'utf8'),
    ) as {
      bomFormat: string;
      specVersion: string;
      components: { name: string; purl?: string }[];
    };
    assert.equal(sbom.bomFormat, 'CycloneDX');
    const purls = sbom.components.map((c) => c.purl ?? '');
    assert.ok(
      purls.some((p) => p.startsWith('pkg:deb/debian/nodejs@')),
      'Debian nodejs listed',
    );
    assert.ok(
      purls.some((p) => p.startsWith('pkg:npm/hono@')),
      'npm hono listed',
    );
    assert.ok(
      purls.some((p) => p.startsWith('pkg:npm/node-red@')),
      'Node-RED (it runs the policy flows) listed',
    );
    // The release ships what the SBOM lists: production modules only, none of the development tools.
    // (typescript itself ships: i18next, under Node-RED, pulls it in as a peer.)
    for (const dev of ['@biomejs', 'playwright-core', 'tsx', 'esbuild', 'node-red-node-test-helper']) {
      assert.ok(!purls.some((p) => p.startsWith(`pkg:npm/${dev}`)), `${dev} in the SBOM`);
      assert.ok(
        !existsSync(join(rootfs, 'opt', 'portcullis', 'current', 'node_modules', dev)),
        `${dev} shipped`,
      );
    }
    const config = readFileSync(join(rootfs, 'etc', 'portcullis', 'config.yaml'), 'utf8');
    assert.match(config, /publicKeyFile: \/etc\/portcullis\/release-key\.pub\.pem/);
    assert.match(config, /backend: tpm2/);
  });
});

describe('image-build/initramfs-once.sh', () => {
  /** build-image.sh --from-rootfs on a stand-in root file system that `shape` fills. */
  const fromRootfs = (t: TestContext, shape: (root: string) => void) => {
    const dir = tempDir(t, 'portcullis-from-rootfs-');
    const root = join(dir, 'rootfs');
    mkdirSync(join(root, 'usr', 'local', 'bin'), { recursive: true });
    writeFileSync(join(root, 'usr', 'local', 'bin', 'portcullis'), '#!/bin/sh\n', { mode: 0o755 });
    shape(root);
    return spawnSync(
      'bash',
      [join(ROOT, 'image-build', 'build-image.sh'), '--from-rootfs', root, join(dir, 'x.img')],
      { encoding: 'utf8' },
    );
  };

  it('build-image.sh refuses a root file system whose build stopped before the initramfs was made', (t) => {
    const diverted = fromRootfs(t, (root) => {
      mkdirSync(join(root, 'var', 'lib', 'dpkg'), { recursive: true });
      writeFileSync(
        join(root, 'var', 'lib', 'dpkg', 'diversions'),
        '/usr/sbin/update-initramfs\n/usr/sbin/update-initramfs.portcullis-real\n:\n',
      );
    });
    assert.equal(diverted.status, 1, diverted.stderr);
    assert.match(diverted.stderr, /still diverts update-initramfs: its build did not finish/);
    const noInitrd = fromRootfs(t, (root) => {
      mkdirSync(join(root, 'boot'));
      writeFileSync(join(root, 'boot', 'vmlinuz-6.99.0-test'), '');
    });
    assert.equal(noInitrd.status, 1, noInitrd.stderr);
    assert.match(noInitrd.stderr, /no initramfs for vmlinuz-6\.99\.0-test/);
  });

  it('refuses to remove an update-initramfs that is not its own stand-in', (t) => {
    const root = tempDir(t, 'portcullis-initramfs-once-');
    const tool = join(root, 'usr', 'sbin', 'update-initramfs');
    mkdirSync(join(root, 'usr', 'sbin'), { recursive: true });
    writeFileSync(tool, "#!/bin/sh\n# the package's own\n", { mode: 0o755 });
    const r = spawnSync('bash', [join(ROOT, 'image-build', 'initramfs-once.sh'), 'make', root], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /not the build's stand-in; refusing to remove it/);
    assert.equal(readFileSync(tool, 'utf8'), "#!/bin/sh\n# the package's own\n");
  });
});
