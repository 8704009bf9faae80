import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { systemClock } from '../clock.ts';
import { resolveConfig } from '../config/index.ts';
import { Core } from '../core.ts';
import { IdentityError } from '../identity/errors.ts';
import type { Device } from '../store/index.ts';
import type { Io } from './commands.ts';
import { EXIT } from './exit-codes.ts';

/** Who the audit log names for a CLI action: the local account that ran it. */
export function cliActor(): string {
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return `cli:uid-${process.getuid?.() ?? 'unknown'}`;
  }
}

/** Opens the core for one command and closes it afterwards, also when `fn` returns a promise. */
export function withWritableCore<T>(configPath: string | undefined, fn: (core: Core) => T): T {
  const core = Core.open(resolveConfig(configPath).config, systemClock);
  let out: T;
  try {
    out = fn(core);
  } catch (err) {
    core.close();
    throw err;
  }
  if (out instanceof Promise) return out.finally(() => core.close()) as T;
  core.close();
  return out;
}

function deviceLine(d: Device): string {
  return [d.id, d.state, d.credentialKind, d.segment ?? '-', d.address ?? '-', d.lastSeen ?? 'never'].join(
    '\t',
  );
}

export interface DeviceAddOptions {
  pskIdentity?: string;
  rpk?: string;
  pull?: string;
  interval?: number;
  psk?: string;
  /** The key as text; `-` reads it from stdin (one trailing newline dropped). */
  pskText?: string;
  allowWeakPsk?: boolean;
  generatePsk?: boolean;
  segment?: string;
  name?: string;
  type?: string;
}

/** Reads a key from stdin: a pipe, a file (`< key.txt`) or a terminal (ended by Ctrl-D). */
function readStdinKey(): string {
  const text = readFileSync(0, 'utf8');
  // `echo KEY |`, a file written by an editor and a terminal all end with one newline that is no part of it.
  return text.replace(/\r?\n$/, '');
}

/** Which PSK options were given: a bad combination is bad usage, found before anything is opened. */
function pskUsageError(o: DeviceAddOptions): string | null {
  const keys = [o.psk !== undefined, o.pskText !== undefined, Boolean(o.generatePsk)].filter(Boolean).length;
  if (o.rpk !== undefined) {
    return o.pskIdentity !== undefined || keys > 0 || o.allowWeakPsk
      ? '--rpk and the --psk options are exclusive'
      : null;
  }
  if (!o.pskIdentity) {
    return 'give --psk-identity (with --psk-text, --psk or --generate-psk), or --rpk <public key file>';
  }
  if (keys !== 1) return 'give exactly one of --psk-text TEXT, --psk HEX or --generate-psk';
  if (o.generatePsk && o.allowWeakPsk)
    return '--allow-weak-psk is for given keys; a generated key is 128 bits';
  return null;
}

export function deviceAddCommand(
  configPath: string | undefined,
  id: string,
  o: DeviceAddOptions,
  io: Io,
  readStdin: () => string = readStdinKey,
): number {
  const usage = pskUsageError(o);
  if (usage) {
    io.err(`error: ${usage}`);
    return EXIT.usage;
  }
  const pskText = o.pskText === '-' ? readStdin() : o.pskText;
  return withWritableCore(configPath, (core) => {
    try {
      return addDevice(core, id, { ...o, pskText }, io);
    } catch (err) {
      // A key, identity or id the service refuses is bad usage (exit 2), like a missing option: nothing changed.
      if (
        err instanceof IdentityError &&
        (err.code === 'ERR_IDENTITY_INVALID' || err.code === 'ERR_IDENTITY_WEAK_PSK')
      ) {
        io.err(`error [${err.code}]: ${err.message}`);
        return EXIT.usage;
      }
      throw err;
    }
  });
}

function addDevice(core: Core, id: string, o: DeviceAddOptions, io: Io): number {
  if (o.rpk !== undefined) {
    const d = core.identity.addRpkDevice(
      { id, publicKeyPem: readFileSync(o.rpk, 'utf8'), segment: o.segment, name: o.name },
      cliActor(),
    );
    const fp = core.identity.show(d.id).credentials[0]?.lookup;
    io.out(`added ${d.id} (raw public key, SHA-256 ${fp}), state ${d.state}`);
    return EXIT.ok;
  }
  const { device, generatedPskHex } = core.identity.addPskDevice(
    {
      id,
      pskIdentity: o.pskIdentity as string,
      pskHex: o.psk,
      pskText: o.pskText,
      allowWeak: o.allowWeakPsk,
      generate: o.generatePsk,
      segment: o.segment,
      name: o.name,
      type: o.type,
      pull: o.pull ? { url: o.pull, intervalSeconds: o.interval ?? 60 } : undefined,
    },
    cliActor(),
  );
  io.out(`added ${device.id} (psk identity ${o.pskIdentity}), state ${device.state}`);
  if (core.identity.show(device.id).credentials.some((c) => c.weak)) {
    io.err(
      'warning: the key is shorter than 128 bits: the device is marked weak (device show, UI, compliance)',
    );
  }
  if (generatedPskHex) {
    // Shown once, on the technician's terminal only: it is not stored in the clear anywhere.
    io.out(`psk: ${generatedPskHex}`);
    io.out('write it into the sensor now; it cannot be shown again');
  }
  return EXIT.ok;
}

export function deviceListCommand(configPath: string | undefined, json: boolean, io: Io): number {
  return withWritableCore(configPath, (core) => {
    const devices = core.identity.list();
    if (json) io.out(JSON.stringify(devices, null, 2));
    else {
      io.out(['id', 'state', 'credential', 'segment', 'address', 'last seen'].join('\t'));
      for (const d of devices) io.out(deviceLine(d));
    }
    return EXIT.ok;
  });
}

export function deviceShowCommand(configPath: string | undefined, id: string, json: boolean, io: Io): number {
  return withWritableCore(configPath, (core) => {
    const view = core.identity.show(id);
    if (json) {
      io.out(JSON.stringify(view, null, 2));
      return EXIT.ok;
    }
    const { quarantine, ...d } = view.device;
    for (const [k, v] of Object.entries(d)) io.out(`${k}: ${v ?? '-'}`);
    if (quarantine) {
      io.out(
        `quarantine: ${quarantine.mode} since ${quarantine.since} (${quarantine.reason}); release returns it to ${quarantine.previousState}`,
      );
    }
    for (const c of view.credentials) {
      const status = c.revokedAt ? `revoked ${c.revokedAt}${c.erased ? ', erased' : ''}` : 'active';
      io.out(`credential: ${c.kind} ${c.lookup} (${status}${c.weak ? ', WEAK: key under 128 bits' : ''})`);
    }
    return EXIT.ok;
  });
}

export function deviceDecommissionCommand(
  configPath: string | undefined,
  id: string,
  reason: string | undefined,
  io: Io,
): number {
  return withWritableCore(configPath, (core) => {
    const d = core.identity.decommission(id, cliActor(), reason);
    io.out(`${d.id} decommissioned: credentials revoked and erased; its sessions close within a second`);
    return EXIT.ok;
  });
}

export async function uplinkCsrCommand(
  configPath: string | undefined,
  subject: string,
  io: Io,
): Promise<number> {
  const core = Core.open(resolveConfig(configPath).config, systemClock);
  try {
    const keystore = core.keystore as NonNullable<Core['keystore']>;
    io.out((await keystore.uplinkCsr(subject)).trimEnd());
    return EXIT.ok;
  } finally {
    core.close();
  }
}

export function deviceApproveCommand(configPath: string | undefined, id: string, io: Io): number {
  return withWritableCore(configPath, (core) => {
    const d = core.identity.approve(id, cliActor());
    io.out(`${d.id} approved: it may connect now`);
    return EXIT.ok;
  });
}

export function trustAddCommand(
  configPath: string | undefined,
  name: string,
  caFile: string,
  io: Io,
): number {
  return withWritableCore(configPath, (core) => {
    const a = core.identity.addTrustAnchor(name, readFileSync(caFile, 'utf8'), cliActor());
    io.out(`trust anchor ${a.name} added (SHA-256 ${a.fingerprint}); its sensors start as pending devices`);
    return EXIT.ok;
  });
}

export function trustListCommand(configPath: string | undefined, io: Io): number {
  return withWritableCore(configPath, (core) => {
    for (const a of core.identity.listTrustAnchors()) io.out(`${a.name}\t${a.fingerprint}\t${a.createdAt}`);
    return EXIT.ok;
  });
}
