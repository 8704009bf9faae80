/**
 * The Raspberry Pi image (issue 29): built as the README says (`build-image.sh --target rpi`: arm64, MBR with
 * RASPIFIRM + RASPIROOT, the software keystore), then its own kernel, initrd and root file system booted with
 * image-build/boot-rpi-in-qemu.sh on QEMU's generic arm64 machine (TCG). It proves the arm64 userland —
 * Debian's nodejs, the cross-compiled native modules, the units — starts the gateway and the flows, and that
 * the console shows the technician the UI's address and the setup code. QEMU does not emulate the Pi's boot
 * ROM and firmware: what they read from RASPIFIRM is checked from the files.
 *
 * The image takes longest of anything in the suite (Debian's maintainer scripts run under qemu-user), so the
 * whole run starts it in the background first (scripts/prebuild-rpi-image.sh, from scripts/run-tests.sh) and
 * runs this file first in its second lane, once the build is done; alone, the file builds the image itself.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { vmHttps, waitForVm, watchSerial } from './helpers/appliance-vm.ts';
import { freeTcpPort } from './helpers/mosquitto.ts';

const ROOT = join(import.meta.dirname, '..');
/** Booting an arm64 kernel and starting Node under TCG on two busy cores: a few minutes. */
const BOOT_DEADLINE_MS = 9 * 60_000;
/** How long the file waits for the background build before it gives up. */
const PREBUILD_WAIT_MS = 40 * 60_000;

/** The image from the background build (PORTCULLIS_RPI_PREBUILD), or one built here. */
async function rpiImage(dir: string): Promise<string> {
  const pre = process.env.PORTCULLIS_RPI_PREBUILD;
  if (pre) {
    const until = Date.now() + PREBUILD_WAIT_MS;
    while (!existsSync(join(pre, 'rc'))) {
      assert.ok(Date.now() < until, 'the background Raspberry Pi image build did not finish in time');
      await new Promise((r) => setTimeout(r, 5000));
    }
    const rc = readFileSync(join(pre, 'rc'), 'utf8').trim();
    const log = () => readFileSync(join(pre, 'build.log'), 'utf8').slice(-4000);
    assert.equal(rc, '0', `the Raspberry Pi image build failed:\n${log()}`);
    return join(pre, 'portcullis-rpi.img');
  }
  execFileSync('bash', [join(ROOT, 'scripts', 'prebuild-rpi-image.sh'), dir], { stdio: 'ignore' });
  assert.equal(
    readFileSync(join(dir, 'rc'), 'utf8').trim(),
    '0',
    readFileSync(join(dir, 'build.log'), 'utf8'),
  );
  return join(dir, 'portcullis-rpi.img');
}

describe('the Raspberry Pi image', () => {
  let dir: string;
  let image: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-rpi-'));
    image = await rpiImage(dir);
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('holds what the Pi firmware boots: config.txt, cmdline.txt with the RASPIROOT root, a kernel, an initrd and device trees', () => {
    const env = { ...process.env, MTOOLS_SKIP_CHECK: '1' };
    const fw = `${image}@@${2048 * 512}`;
    const files = execFileSync('mdir', ['-b', '-i', fw, '::/'], { env, encoding: 'utf8' });
    assert.match(files, /::\/config\.txt/);
    assert.match(files, /::\/vmlinuz-\S+-arm64/);
    assert.match(files, /::\/initrd\.img-\S+-arm64/);
    assert.match(files, /::\/bcm2711-rpi-4-b\.dtb/, 'the Pi 4 device tree');
    const cmdline = execFileSync('mtype', ['-i', fw, '::/cmdline.txt'], { env, encoding: 'utf8' });
    assert.match(cmdline, /root=LABEL=RASPIROOT/);
  });

  it("boots its arm64 kernel and root file system to a console with the UI's address and setup code; the gateway and the flows run", async (t) => {
    const port = await freeTcpPort();
    const proc = spawn('bash', [join(ROOT, 'image-build', 'boot-rpi-in-qemu.sh'), image, '900'], {
      env: { ...process.env, PORTCULLIS_RPI_UI_PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    // The script's QEMU is a child of its own: the whole process group goes.
    t.after(() => {
      try {
        process.kill(-(proc.pid as number), 'SIGKILL');
      } catch {}
    });
    const vm = { proc, serial: watchSerial(t, proc, 'rpi-image-boot') };
    const code = await waitForVm(
      'setup code on the serial console',
      vm,
      () => /Setup code:\s+([A-Z0-9]+(?:-[A-Z0-9]+)+)/.exec(vm.serial())?.[1],
      BOOT_DEADLINE_MS,
    );
    assert.match(vm.serial(), /Linux version \S+-arm64 /, 'the image’s own arm64 kernel');
    assert.match(vm.serial(), /Web UI:\s+https:\/\/10\.0\.2\.15:8443\//, 'the DHCP address on the console');
    const health = await waitForVm(
      '/healthz with the flows service active',
      vm,
      async () => {
        const r = await vmHttps(port, '/healthz');
        if (!r) return undefined;
        const h = JSON.parse(r.body) as { status: string; components: Record<string, string> };
        return h.components.flows === 'active' ? h : undefined;
      },
      BOOT_DEADLINE_MS,
    );
    t.diagnostic(`healthz: ${JSON.stringify(health)}`);
    assert.equal(health.status, 'ok');
    assert.equal(health.components.keystore, 'software', 'a Pi has no TPM: the image says so');
    assert.equal(health.components.dtlsCrypto, 'native', 'the cross-compiled DTLS addon loads on arm64');
    // The console's code makes the first admin (argon2 in WebAssembly, SQLite's arm64 build).
    const made = await vmHttps(port, '/auth/setup', {
      method: 'POST',
      json: { code, username: 'tech', password: 'a long first password' },
    });
    assert.equal(made?.status, 201, made?.body);
    assert.ok(!JSON.stringify(health).includes(code), 'the code never reaches the network');
  });
});
