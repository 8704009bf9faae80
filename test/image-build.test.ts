/**
 * The appliance root file system, CI-sized: image-build/build-rootfs.sh builds Debian 13 with mmdebstrap from
 * Debian's mirror, and inside it (chroot) the gateway runs on Debian's nodejs, the units are enabled and pass
 * `systemd-analyze verify`, no account has a password, SSH is absent, the release key is pinned and the SBOM
 * lists both Debian and npm packages.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { VERSION } from '../gateway/src/version.ts';

const ROOT = join(import.meta.dirname, '..');

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
    const enabled = spawnSync(
      'systemctl',
      [`--root=${rootfs}`, 'is-enabled', 'portcullis-gateway.service', 'portcullis-flows.service'],
      { encoding: 'utf8' },
    );
    assert.deepEqual(enabled.stdout.trim().split('\n'), ['enabled', 'enabled']);
    const verify = inRoot(
      'systemd-analyze',
      'verify',
      '/etc/systemd/system/portcullis-gateway.service',
      '/etc/systemd/system/portcullis-flows.service',
    );
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
    const config = readFileSync(join(rootfs, 'etc', 'portcullis', 'config.yaml'), 'utf8');
    assert.match(config, /publicKeyFile: \/etc\/portcullis\/release-key\.pub\.pem/);
    assert.match(config, /backend: tpm2/);
  });
});
