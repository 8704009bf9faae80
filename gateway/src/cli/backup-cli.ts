import type { Command } from 'commander';
import type { Io } from './io.ts';

/** `portcullis backup …`: registered here, loaded (crypto, store) only when one of them runs. */
export function backupCommands(cli: {
  program: Command;
  io: Io;
  setCode: (code: number) => void;
  configOpt: () => string | undefined;
}): void {
  const { program, io, setCode, configOpt } = cli;
  const load = () => import('./backup-commands.ts');
  const backup = program
    .command('backup')
    .description('encrypted, signed backups of the configuration and database; restore onto a replacement');
  backup
    .command('create')
    .description('write an encrypted archive (passphrase from --passphrase-file or standard input)')
    .requiredOption('--out <file>', 'the archive to write (refuses to overwrite)')
    .option('--passphrase-file <file>', 'read the passphrase from this file (first line)')
    .action(async (o: { out: string; passphraseFile?: string }) =>
      setCode(await (await load()).backupCreateCommand(configOpt(), o, io)),
    );
  backup
    .command('inspect <archive>')
    .description('who made an archive, when, with which versions; checks its signature (no passphrase)')
    .action(async (archive: string) => setCode((await load()).backupInspectCommand(archive, io)));
  backup
    .command('restore <archive>')
    .description('check an archive completely, then stage it; the next gateway start puts it in place')
    .option('--passphrase-file <file>', 'read the passphrase from this file (first line)')
    .option('--keep-config', "restore the database only; keep this gateway's configuration file")
    .option('--expect-identity <sha256>', 'refuse unless the archive was signed by this identity fingerprint')
    .action(
      async (
        archive: string,
        o: { passphraseFile?: string; keepConfig?: boolean; expectIdentity?: string },
      ) => setCode(await (await load()).backupRestoreCommand(configOpt(), archive, o, io)),
    );
}
