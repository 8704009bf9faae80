import { join } from 'node:path';
import { addFlowsAdmin, type FlowsPaths, FlowsSetupError, readAdmins, setupFlows } from '../flows/setup.ts';
import type { Io } from './commands.ts';
import { cliActor, withWritableCore } from './device-commands.ts';
import { EXIT } from './exit-codes.ts';

const tokens = (core: Parameters<Parameters<typeof withWritableCore>[1]>[0]) => core.controlTokens;

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

export { CREDSTORE_DIR, FLOWS_CONFIG_DIR } from './paths.ts';

/** First boot of the appliance's Node-RED (portcullis-flows-setup.service runs it; idempotent). */
export async function flowsSetupCommand(paths: FlowsPaths, io: Io): Promise<number> {
  return flowsErrors(io, async () => {
    const made = await setupFlows(paths);
    for (const file of made) io.out(`made ${file}`);
    if (made.length === 0) io.out('nothing to do: credentials, certificate and admin list exist');
    if (readAdmins(join(paths.configDir, 'admin-users.json')).length === 0) {
      io.out('no editor admin yet: nobody can log in to Node-RED until `portcullis flows admin add NAME`');
    }
    return EXIT.ok;
  });
}

/** Reads the password from stdin: asked twice without echo on a terminal, else the first line. */
async function readPassword(io: Io): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    let data = '';
    for await (const chunk of stdin) data += String(chunk);
    return data.split(/\r?\n/)[0] ?? '';
  }
  const ask = (prompt: string) =>
    new Promise<string>((resolve) => {
      io.err(prompt);
      stdin.setRawMode(true);
      let typed = '';
      const onData = (b: Buffer) => {
        for (const ch of b.toString('utf8')) {
          if (ch === '\r' || ch === '\n' || ch === '\u0004') {
            stdin.setRawMode(false);
            stdin.off('data', onData);
            stdin.pause();
            resolve(typed);
            return;
          }
          if (ch === '\u0003') {
            stdin.setRawMode(false);
            process.exit(EXIT.usage);
          }
          typed = ch === '\u007f' ? typed.slice(0, -1) : typed + ch;
        }
      };
      stdin.on('data', onData);
      stdin.resume();
    });
  const first = await ask('password:');
  if ((await ask('again:')) !== first) throw new FlowsSetupError('ERR_FLOWS_ADMIN', 'the passwords differ');
  return first;
}

export async function flowsAdminAddCommand(
  configDir: string,
  username: string,
  replace: boolean,
  io: Io,
): Promise<number> {
  return flowsErrors(io, async () => {
    await addFlowsAdmin(configDir, username, await readPassword(io), { replace });
    io.out(`editor admin ${username} ${replace ? 'set' : 'added'}; restart portcullis-flows to apply`);
    return EXIT.ok;
  });
}

async function flowsErrors(io: Io, run: () => Promise<number>): Promise<number> {
  try {
    return await run();
  } catch (err) {
    if (!(err instanceof FlowsSetupError)) throw err;
    io.err(`error ${err.code}: ${err.message}`);
    return err.code === 'ERR_FLOWS_CREDENTIAL' ? EXIT.failure : EXIT.usage;
  }
}
