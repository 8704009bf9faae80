import { readFileSync } from 'node:fs';
import { PROFILE_FIELDS } from '../config/policy-schema.ts';
import { PolicyError } from '../policy/errors.ts';
import type { Io } from './commands.ts';
import { cliActor, withWritableCore } from './device-commands.ts';
import { EXIT } from './exit-codes.ts';

/** `portcullis policy show ID`: the effective policy, field by field, with where each comes from. */
export function policyShowCommand(configPath: string | undefined, id: string, json: boolean, io: Io): number {
  return withWritableCore(configPath, (core) => {
    const eff = core.policy.show(id);
    if (json) {
      io.out(JSON.stringify(eff, null, 2));
      return eff.broken ? EXIT.failure : EXIT.ok;
    }
    io.out(`device: ${eff.deviceId}`);
    io.out(
      `profile: ${eff.profile ?? '(none: known and active only)'}${
        eff.profileFrom === 'default'
          ? ' (policy.defaultProfile)'
          : eff.profileFrom === 'device'
            ? ' (the device)'
            : ''
      }`,
    );
    io.out(`timeZone: ${core.config.policy.timeZone}`);
    for (const f of PROFILE_FIELDS) {
      const v = eff.fields[f];
      io.out(`${f}: ${v === undefined ? '-' : JSON.stringify(v)}\t[${eff.sources[f]}]`);
    }
    if (eff.broken) {
      io.err(`every message of ${id} is refused: ${eff.broken}`);
      return EXIT.failure;
    }
    return EXIT.ok;
  });
}

export interface PolicyTestOptions {
  device: string;
  method: string;
  resource: string;
  contentFormat?: number;
  payload?: string;
  json?: boolean;
}

/**
 * `portcullis policy test`: what the gateway would answer one message now, and the rule that decided. Takes no
 * rate token (a bucket is read, not drained) and asks no flow. Exit 0 allowed, 1 refused.
 */
export function policyTestCommand(configPath: string | undefined, o: PolicyTestOptions, io: Io): number {
  const method = o.method.toUpperCase();
  if (!['GET', 'POST', 'PUT', 'DELETE'].includes(method)) {
    io.err('error: --method must be GET, POST, PUT or DELETE');
    return EXIT.usage;
  }
  if (!o.resource.startsWith('/')) {
    io.err('error: --resource must be a path such as /telemetry');
    return EXIT.usage;
  }
  let payload = Buffer.alloc(0);
  if (o.payload !== undefined) {
    try {
      payload = readFileSync(o.payload === '-' ? 0 : o.payload);
    } catch (err) {
      io.err(`error: cannot read --payload: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
      return EXIT.usage;
    }
  }
  return withWritableCore(configPath, (core) => {
    const d = core.policy.test(o.device, {
      method: method as 'GET',
      resource: o.resource,
      contentFormat: o.contentFormat ?? null,
      payload,
    });
    if (o.json) io.out(JSON.stringify(d));
    else if (d.allow) {
      io.out(`allow (2.xx) by ${d.by}${'flow' in d && d.flow ? `; then the flow ${d.flow} decides` : ''}`);
    } else {
      io.out(
        `refuse ${d.code} rule=${d.rule} by ${d.by}: ${d.reason}${d.maxAge !== undefined ? ` (Max-Age ${d.maxAge})` : ''}`,
      );
    }
    return d.allow ? EXIT.ok : EXIT.failure;
  });
}

/** `portcullis device profile ID [NAME]`: the profile a device takes, and its overrides (a JSON object). */
export function deviceProfileCommand(
  configPath: string | undefined,
  id: string,
  name: string | undefined,
  o: { default?: boolean; overrides?: string; clearOverrides?: boolean },
  io: Io,
): number {
  if (name !== undefined && o.default) {
    io.err('error: give a profile NAME or --default, not both');
    return EXIT.usage;
  }
  let overrides: Record<string, unknown> | undefined;
  if (o.overrides !== undefined) {
    try {
      const text = o.overrides.trimStart().startsWith('{') ? o.overrides : readFileSync(o.overrides, 'utf8');
      const v = JSON.parse(text) as unknown;
      if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
      overrides = v as Record<string, unknown>;
    } catch {
      io.err('error: --overrides must be a JSON object, or a file holding one');
      return EXIT.usage;
    }
  }
  if (o.clearOverrides) overrides = {};
  return withWritableCore(configPath, (core) => {
    try {
      const eff = core.policy.assign(id, { profile: o.default ? null : name, overrides }, cliActor());
      io.out(
        `${id}: profile ${eff.profile ?? '(none)'}${eff.profileFrom === 'default' ? ' (the default)' : ''}; overrides: ${
          Object.entries(eff.sources)
            .filter(([, s]) => s === 'device')
            .map(([f]) => f)
            .join(', ') || 'none'
        }`,
      );
      return EXIT.ok;
    } catch (err) {
      if (err instanceof PolicyError && err.code !== 'ERR_POLICY_NOT_FOUND') {
        io.err(`error [${err.code}]: ${err.message}`);
        return EXIT.usage;
      }
      throw err;
    }
  });
}
