import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { text } from 'node:stream/consumers';
import { backupFor, createBackup, DOES_NOT_MOVE, describeArchive, stageRestore } from '../backup/index.ts';
import { systemClock } from '../clock.ts';
import { resolveConfig } from '../config/index.ts';
import { Core } from '../core.ts';
import { cliActor } from './device-commands.ts';
import { EXIT } from './exit-codes.ts';
import type { Io } from './io.ts';

/** The passphrase's first line, from a file or standard input; never echoed or logged. */
async function passphrase(file: string | undefined): Promise<string> {
  const raw = file ? readFileSync(file, 'utf8') : await text(process.stdin);
  return raw.split(/\r?\n/)[0] ?? '';
}

function openCore(configPath: string | undefined) {
  const loaded = resolveConfig(configPath);
  return { loaded, core: Core.open(loaded.config, systemClock) };
}

export async function backupCreateCommand(
  configPath: string | undefined,
  o: { out: string; passphraseFile?: string },
  io: Io,
): Promise<number> {
  if (existsSync(o.out)) {
    io.err(`error: ${o.out} exists; refusing to overwrite it`);
    return EXIT.usage;
  }
  const secret = await passphrase(o.passphraseFile);
  const { loaded, core } = openCore(configPath);
  try {
    const { archive, summary } = await createBackup(backupFor(core), {
      passphrase: secret,
      configSource: loaded.source,
      actor: cliActor(),
    });
    writeFileSync(o.out, archive, { mode: 0o600, flag: 'wx' });
    io.out(
      `${o.out}: ${summary.bytes} bytes, ${summary.devices} devices, ${summary.secrets} secrets, configuration ${summary.config ? 'included' : 'not included (embedded defaults)'}`,
    );
    io.out(`signed by gateway identity ${summary.identity}`);
    io.out(`sha256 ${summary.sha256}`);
    io.out('What a restore onto another gateway cannot move:');
    for (const line of DOES_NOT_MOVE) io.out(`  - ${line}`);
    return EXIT.ok;
  } finally {
    core.close();
  }
}

export function backupInspectCommand(file: string, io: Io): number {
  const h = describeArchive(readFileSync(file));
  io.out(`made ${h.createdAt} by Portcullis ${h.gatewayVersion} (database schema ${h.schemaVersion})`);
  io.out(
    `signed by gateway identity ${h.identity.fingerprint} (${h.keystoreBackend} keystore); signature good`,
  );
  return EXIT.ok;
}

export async function backupRestoreCommand(
  configPath: string | undefined,
  file: string,
  o: { passphraseFile?: string; keepConfig?: boolean; expectIdentity?: string },
  io: Io,
): Promise<number> {
  const archive = readFileSync(file);
  const secret = await passphrase(o.passphraseFile);
  const { loaded, core } = openCore(configPath);
  try {
    const r = stageRestore(backupFor(core), archive, {
      passphrase: secret,
      actor: cliActor(),
      keepConfig: o.keepConfig ?? false,
      configSource: loaded.source,
      expectIdentity: o.expectIdentity,
    });
    io.out(
      `staged: ${r.devices} devices and ${r.secrets} secrets from gateway ${r.from.identity} (${r.from.createdAt}, Portcullis ${r.from.gatewayVersion}); configuration ${r.config}`,
    );
    io.out(
      'restart the gateway to put it in place (systemctl restart portcullis); the data it replaces is kept in restore/rollback-<time>/',
    );
    return EXIT.ok;
  } finally {
    core.close();
  }
}
