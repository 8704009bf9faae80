import { renameSync, rmSync, writeFileSync } from 'node:fs';

/**
 * The appliance's console shows the one-time setup code (nobody can log in to read the journal, and there is no
 * SSH): the gateway and `portcullis ui setup-code` also write it to `ui.setupCodeFile`, a local file (under /run,
 * 0600, the gateway's user) that systemd/portcullis-console turns into the login prompt's text on the serial and
 * screen consoles. Never anywhere the network reaches. Written whole (temporary file, then rename) so the console
 * never reads half a code (the UI's port beside it, for the address line); `null` removes it once accounts exist. Returns what went wrong, if anything.
 */
export function publishSetupCode(
  file: string | undefined,
  code: string | null,
  uiPort: number,
): string | undefined {
  if (!file) return undefined;
  try {
    if (code === null) {
      rmSync(file, { force: true });
      return undefined;
    }
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, `code=${code}\nport=${uiPort}\n`, { mode: 0o600 });
    renameSync(tmp, file);
    return undefined;
  } catch (err) {
    // Not fatal: the code is still in the journal and the pairing button still works. The message names the
    // file and the errno, never the code.
    return `cannot write the setup code file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`;
  }
}
