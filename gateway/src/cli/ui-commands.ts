import type { Io } from './commands.ts';
import { withWritableCore } from './device-commands.ts';
import { EXIT } from './exit-codes.ts';

/** Prints a fresh setup code while no account exists (whoever runs this is at the appliance's console). */
export function uiSetupCodeCommand(configPath: string | undefined, io: Io): number {
  return withWritableCore(configPath, (core) => {
    const code = core.users.issueSetupCode();
    if (!code) {
      io.err('the UI is set up already: accounts exist, there is no setup code');
      return EXIT.failure;
    }
    io.out(code);
    return EXIT.ok;
  });
}
