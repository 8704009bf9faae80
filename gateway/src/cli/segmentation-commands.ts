import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { resolveConfig } from '../config/index.ts';
import {
  type QuarantineResult,
  renderIpCommands,
  renderNetworkd,
  validateNetworkd,
} from '../segmentation/index.ts';
import type { QuarantineMode } from '../store/index.ts';
import type { Io } from './commands.ts';
import { cliActor, withWritableCore } from './device-commands.ts';
import { EXIT } from './exit-codes.ts';

function printWarnings(warnings: readonly string[], io: Io): void {
  for (const w of warnings) io.err(`warning: ${w}`);
}

export function firewallRenderCommand(
  configPath: string | undefined,
  json: boolean,
  io: Io,
): Promise<number> {
  return withWritableCore(configPath, async (core) => {
    const r = await core.segmentation.render();
    if (json) {
      io.out(
        JSON.stringify(
          { hash: r.hash, iptables: r.iptables, ipsets: r.ipsets, warnings: r.warnings },
          null,
          2,
        ),
      );
      return EXIT.ok;
    }
    io.out(`# portcullis ruleset ${r.hash}`);
    io.out('# ---- ipset restore ----');
    io.out(r.ipsets.trimEnd());
    io.out('# ---- iptables-restore ----');
    io.out(r.iptables.trimEnd());
    printWarnings(r.warnings, io);
    return EXIT.ok;
  });
}

export function firewallApplyCommand(configPath: string | undefined, io: Io): Promise<number> {
  return withWritableCore(configPath, async (core) => {
    io.err('compiling, dry run (iptables-restore --test), applying, reading back…');
    const r = await core.segmentation.apply(cliActor());
    printWarnings(r.warnings, io);
    io.out(
      `applied ruleset ${r.hash}: ${r.rules} rules, ${r.setEntries} set entries in ${Math.round(r.timings.totalMs)} ms (verified)`,
    );
    return EXIT.ok;
  });
}

export function firewallStatusCommand(configPath: string | undefined, io: Io): number {
  return withWritableCore(configPath, (core) => {
    const good = core.segmentation.lastApplied();
    const latest = core.segmentation.latestAttempt();
    io.out(`enforce: ${core.config.firewall.enforce ? 'yes (the gateway applies changes)' : 'no'}`);
    io.out(
      good
        ? `in force: ${good.hash} (applied ${good.createdAt} by ${good.actor})`
        : 'in force: nothing applied yet',
    );
    if (latest && latest.id !== good?.id) {
      io.out(`last attempt: ${latest.hash} ${latest.status} at ${latest.createdAt}: ${latest.error ?? ''}`);
    }
    return EXIT.ok;
  });
}

export function mudImportCommand(
  configPath: string | undefined,
  file: string,
  deviceId: string,
  io: Io,
): number {
  return withWritableCore(configPath, (core) => {
    const list = core.segmentation.importMud(deviceId, readFileSync(file, 'utf8'), cliActor());
    io.out(
      `${deviceId}: allow-list from ${list.mudUrl} (${list.entries.length} entries) replaces the previous one`,
    );
    for (const e of list.entries) {
      const peer = Object.entries(e.peer)
        .filter(([k]) => k !== 'kind')
        .map(([, v]) => String(v))
        .join(' ');
      io.out(
        `  ${e.direction} ${e.protocol}${e.ports ? `:${e.ports.join(',')}` : ''} ${e.peer.kind}${peer ? ` ${peer}` : ''}  (${e.name})`,
      );
    }
    io.out(
      core.config.firewall.enforce
        ? 'the gateway applies it within a second'
        : 'apply with: portcullis firewall apply',
    );
    return EXIT.ok;
  });
}

export function mudControllerCommand(
  configPath: string | undefined,
  op: 'add' | 'remove',
  uri: string,
  address: string,
  io: Io,
): number {
  return withWritableCore(configPath, (core) => {
    const changed = core.segmentation.setController(uri, address, op === 'add', cliActor());
    io.out(changed ? `${op === 'add' ? 'added' : 'removed'} ${address} for ${uri}` : 'nothing changed');
    return EXIT.ok;
  });
}

export function mudControllerListCommand(configPath: string | undefined, io: Io): number {
  return withWritableCore(configPath, (core) => {
    for (const c of core.segmentation.controllers()) io.out(`${c.uri}\t${c.address}`);
    return EXIT.ok;
  });
}

export function devicePlaceCommand(
  configPath: string | undefined,
  id: string,
  o: { segment?: string; address?: string },
  io: Io,
): number {
  if (o.segment === undefined && o.address === undefined) {
    io.err('error: give --segment and/or --address');
    return EXIT.usage;
  }
  return withWritableCore(configPath, (core) => {
    const d = core.identity.place(id, { segment: o.segment, address: o.address }, cliActor());
    io.out(`${d.id}: segment ${d.segment ?? '-'}, address ${d.address ?? '-'}`);
    return EXIT.ok;
  });
}

/** What a quarantine change means for the network, in words; failed is an error (exit 1). */
function reportEnforcement(r: QuarantineResult, io: Io): number {
  switch (r.firewall) {
    case 'enforced':
      return EXIT.ok;
    case 'off':
      io.err('note: firewall.enforce is off: only the DTLS side acts (no kernel rules changed)');
      return EXIT.ok;
    case 'no-address':
      io.err(`note: ${r.device.id} has no address (portcullis device place): only the DTLS side acts`);
      return EXIT.ok;
    case 'failed':
      io.err(
        `error: recorded, but the firewall was not changed: ${r.error}; a running gateway retries within a second`,
      );
      return EXIT.failure;
  }
}

export function deviceQuarantineCommand(
  configPath: string | undefined,
  id: string,
  o: { reason: string; mode?: QuarantineMode },
  io: Io,
): Promise<number> {
  return withWritableCore(configPath, async (core) => {
    const r = await core.segmentation.quarantine(id, { reason: o.reason, mode: o.mode }, cliActor());
    const mode = r.device.quarantine?.mode;
    io.out(
      `${id} quarantined (${mode}: ${mode === 'observe' ? "only the gateway's DTLS endpoint" : 'nothing'} reachable)`,
    );
    return reportEnforcement(r, io);
  });
}

export function deviceReleaseCommand(
  configPath: string | undefined,
  id: string,
  reason: string | undefined,
  io: Io,
): Promise<number> {
  return withWritableCore(configPath, async (core) => {
    const r = await core.segmentation.release(id, cliActor(), reason);
    io.out(`${id} released: ${r.device.state}`);
    return reportEnforcement(r, io);
  });
}

export function segmentListCommand(configPath: string | undefined, io: Io): number {
  const { config } = resolveConfig(configPath);
  io.out(['name', 'role', 'vlan', 'interface', 'subnet', 'gateway', 'default'].join('\t'));
  for (const s of config.segments) {
    io.out(
      [
        s.name,
        s.role,
        s.vlanId ?? '-',
        s.interface ?? `${s.parentInterface}.${s.vlanId}`,
        s.subnet,
        s.gatewayAddress,
        s.defaultPolicy,
      ].join('\t'),
    );
  }
  return EXIT.ok;
}

/** Writes (or prints) the VLAN interface configuration after checking it; refuses to write invalid files. */
export function segmentNetworkConfigCommand(
  configPath: string | undefined,
  o: { out?: string; format: 'networkd' | 'ip' },
  io: Io,
): number {
  const { config } = resolveConfig(configPath);
  if (o.format === 'ip') {
    io.out(renderIpCommands(config.segments).trimEnd());
    return EXIT.ok;
  }
  const files = renderNetworkd(config.segments);
  const problems = validateNetworkd(files);
  if (problems.length > 0) {
    for (const p of problems) io.err(`error: ${p}`);
    return EXIT.failure;
  }
  if (!o.out) {
    for (const f of files) io.out(`# ${f.name}\n${f.content}`);
    return EXIT.ok;
  }
  mkdirSync(o.out, { recursive: true });
  for (const f of files) writeFileSync(join(o.out, f.name), f.content, { mode: 0o644 });
  io.out(`wrote ${files.length} files to ${o.out} (then: networkctl reload)`);
  return EXIT.ok;
}
