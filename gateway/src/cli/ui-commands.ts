import { publishSetupCode } from '../setup-code-file.ts';
import type { Io } from './commands.ts';
import { cliActor, withWritableCore } from './device-commands.ts';
import { EXIT } from './exit-codes.ts';

/** Prints a fresh setup code while no account exists (whoever runs this is at the appliance's console). */
export function uiSetupCodeCommand(configPath: string | undefined, io: Io): number {
  return withWritableCore(configPath, (core) => {
    const code = core.users.issueSetupCode();
    if (!code) {
      io.err('the UI is set up already: accounts exist, there is no setup code');
      return EXIT.failure;
    }
    // The console shows the code that works now: the previous one stopped working.
    const unpublished = publishSetupCode(core.config.ui.setupCodeFile, code, core.config.ui.port);
    if (unpublished) io.err(unpublished);
    io.out(code);
    return EXIT.ok;
  });
}

/**
 * Clears an account's failed-login count and lock (audited with who ran it). For the admin who cannot wait for
 * the lock to lapse; the lock never stops a right password and code from an address without recent failures.
 */
export function uiUserUnlockCommand(configPath: string | undefined, username: string, io: Io): number {
  return withWritableCore(configPath, (core) => {
    const before = core.users.unlock(username, cliActor());
    const was = before.lockedUntil ? `locked until ${before.lockedUntil}` : 'not locked';
    io.out(`unlocked ${username} (${was}, ${before.failures} failed attempts forgotten)`);
    return EXIT.ok;
  });
}
