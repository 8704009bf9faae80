import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { systemClock } from '../clock.ts';
import { resolveConfig } from '../config/index.ts';
import { Core } from '../core.ts';
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
  generatePsk?: boolean;
  segment?: string;
  name?: string;
  type?: string;
}

export function deviceAddCommand(
  configPath: string | undefined,
  id: string,
  o: DeviceAddOptions,
  io: Io,
): number {
  return withWritableCore(configPath, (core) => {
    if (o.rpk !== undefined) {
      if (o.pskIdentity || o.psk || o.generatePsk) {
        io.err('error: --rpk and the --psk options are exclusive');
        return EXIT.usage;
      }
      const d = core.identity.addRpkDevice(
        { id, publicKeyPem: readFileSync(o.rpk, 'utf8'), segment: o.segment, name: o.name },
        cliActor(),
      );
      const fp = core.identity.show(d.id).credentials[0]?.lookup;
      io.out(`added ${d.id} (raw public key, SHA-256 ${fp}), state ${d.state}`);
      return EXIT.ok;
    }
    if (!o.pskIdentity) {
      io.err('error: give --psk-identity (with --psk or --generate-psk), or --rpk <public key file>');
      return EXIT.usage;
    }
    const { device, generatedPskHex } = core.identity.addPskDevice(
      {
        id,
        pskIdentity: o.pskIdentity,
        pskHex: o.psk,
        generate: o.generatePsk,
        segment: o.segment,
        name: o.name,
        type: o.type,
        pull: o.pull ? { url: o.pull, intervalSeconds: o.interval ?? 60 } : undefined,
      },
      cliActor(),
    );
    io.out(`added ${device.id} (psk identity ${o.pskIdentity}), state ${device.state}`);
    if (generatedPskHex) {
      // Shown once, on the technician's terminal only: it is not stored in the clear anywhere.
      io.out(`psk: ${generatedPskHex}`);
      io.out('write it into the sensor now; it cannot be shown again');
    }
    return EXIT.ok;
  });
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
      io.out(`credential: ${c.kind} ${c.lookup} (${status})`);
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
