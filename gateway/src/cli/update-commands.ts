import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildBundle, installerFor, UpdateError, updateStatus } from '../updates/index.ts';
import type { Io } from './commands.ts';
import { cliActor, withWritableCore } from './device-commands.ts';
import { EXIT } from './exit-codes.ts';

export function updateApplyCommand(configPath: string | undefined, bundle: string, io: Io): Promise<number> {
  return withWritableCore(configPath, async (core) => {
    io.err(`verifying ${bundle} …`);
    const r = await installerFor(core).apply(bundle, cliActor());
    io.out(
      `installed ${r.version} (was ${r.previous ?? 'none'}); ${core.config.updates.currentLink} → ${r.version}`,
    );
    return EXIT.ok;
  });
}

export function updateRollbackCommand(configPath: string | undefined, io: Io): number {
  return withWritableCore(configPath, (core) => {
    const r = installerFor(core).rollback(cliActor());
    io.out(
      `${core.config.updates.currentLink} → ${r.version} (was ${r.previous}); restart the gateway to run it`,
    );
    return EXIT.ok;
  });
}

export function updateStatusCommand(configPath: string | undefined, json: boolean, io: Io): number {
  return withWritableCore(configPath, (core) => {
    const s = updateStatus(core);
    if (json) {
      io.out(JSON.stringify(s, null, 2));
      return EXIT.ok;
    }
    io.out(
      `current: ${s.current ?? 'none linked'} · releases: ${s.releases.join(', ') || 'none'} · floor: ${s.highest}`,
    );
    for (const h of s.history) {
      io.out(
        [h.createdAt, h.status, h.version, `from ${h.previous ?? '-'}`, h.actor, h.error ?? ''].join('\t'),
      );
    }
    return EXIT.ok;
  });
}

/** For the release manager, on a machine that is not the appliance: an Ed25519 release key pair. */
export function updateKeygenCommand(dir: string, io: Io): number {
  const priv = join(dir, 'release-key.pem');
  const pub = join(dir, 'release-key.pub.pem');
  if (existsSync(priv) || existsSync(pub)) {
    throw new UpdateError(
      'ERR_UPDATE_CONFIG',
      `${dir} already holds a release key; refusing to overwrite it`,
    );
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  writeFileSync(priv, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  writeFileSync(pub, publicKey.export({ type: 'spki', format: 'pem' }), { mode: 0o644 });
  io.out(`private key: ${priv} (keep it offline; it signs every release)`);
  io.out(`public key:  ${pub} (pin it in the image as updates.publicKeyFile)`);
  return EXIT.ok;
}

export async function updateBuildCommand(
  opts: {
    source: string;
    version: string;
    minVersion: string;
    hardware: string;
    notes: string;
    key: string;
    out: string;
  },
  io: Io,
): Promise<number> {
  const hardware = opts.hardware.split(',').map((h) => h.trim());
  for (const h of hardware) {
    if (h !== 'x64' && h !== 'arm64')
      throw new UpdateError('ERR_UPDATE_INVALID', `hardware ${h}: x64 or arm64`);
  }
  const m = await buildBundle({
    source: opts.source,
    version: opts.version,
    minVersion: opts.minVersion,
    hardware: hardware as ('x64' | 'arm64')[],
    notes: opts.notes,
    privateKeyPem: readFileSync(opts.key, 'utf8'),
    out: opts.out,
  });
  io.out(`${opts.out}: release ${m.version}, ${Object.keys(m.files).length} files, signed`);
  return EXIT.ok;
}
