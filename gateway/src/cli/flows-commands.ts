import { ControlTokens } from '../control/tokens.ts';
import type { Io } from './commands.ts';
import { cliActor, withWritableCore } from './device-commands.ts';
import { EXIT } from './exit-codes.ts';

const tokens = (core: Parameters<Parameters<typeof withWritableCore>[1]>[0]) =>
  new ControlTokens(core.store, core.audit, core.clock);

export function flowsTokenCreateCommand(
  configPath: string | undefined,
  name: string,
  scopes: string,
  io: Io,
): number {
  return withWritableCore(configPath, (core) => {
    const { token, info } = tokens(core).create(
      name,
      scopes
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
      cliActor(),
    );
    io.out(`token ${info.name} (${info.scopes.join(', ')}):`);
    // Shown once, on the admin's terminal: only its hash is kept.
    io.out(token);
    io.out('put it in the portcullis-gateway config node of Node-RED; it cannot be shown again');
    return EXIT.ok;
  });
}

export function flowsTokenListCommand(configPath: string | undefined, io: Io): number {
  return withWritableCore(configPath, (core) => {
    for (const t of tokens(core).list())
      io.out(
        [
          t.name,
          t.scopes.join(','),
          t.createdBy,
          t.createdAt,
          t.revokedAt ? `revoked ${t.revokedAt}` : 'live',
        ].join('\t'),
      );
    return EXIT.ok;
  });
}

export function flowsTokenRevokeCommand(configPath: string | undefined, name: string, io: Io): number {
  return withWritableCore(configPath, (core) => {
    tokens(core).revoke(name, cliActor());
    io.out(`token ${name} revoked: refused from the next call on`);
    return EXIT.ok;
  });
}
