import { firstErrorLine, runTool } from '../keystore/tools.ts';
import { UpdateError } from './errors.ts';

/**
 * A counter that only goes up, outside the database: restoring an old copy of the store cannot lower it. The
 * installer increments it on every kept update and stores the value it saw; a TPM counter ahead of the store
 * means the store was rolled back, and updates are refused.
 */
export interface RollbackCounter {
  readonly where: string;
  /** The current value, or undefined while it was never incremented. */
  read(): bigint | undefined;
  increment(): bigint;
}

/** Owner-hierarchy NV index in the range the TCG leaves to platform/owner use. */
export const DEFAULT_NV_INDEX = 0x01500016;

/** A TPM 2.0 NV counter index (TPM_NT_COUNTER) through tpm2-tools. */
export class TpmNvCounter implements RollbackCounter {
  private readonly env: NodeJS.ProcessEnv;
  readonly where: string;

  constructor(
    tcti: string,
    private readonly index = DEFAULT_NV_INDEX,
  ) {
    this.env = { ...process.env, TPM2TOOLS_TCTI: tcti };
    this.where = `TPM NV index 0x${index.toString(16)}`;
  }

  private run(cmd: string, args: string[]): Buffer {
    try {
      return runTool(cmd, args, this.env);
    } catch (err) {
      throw new UpdateError('ERR_UPDATE_CONFIG', `${this.where}: ${cmd} failed (${firstErrorLine(err)})`);
    }
  }

  private hex() {
    return `0x${this.index.toString(16)}`;
  }

  private defined(): boolean {
    try {
      runTool('tpm2_nvreadpublic', [this.hex()], this.env);
      return true;
    } catch {
      return false;
    }
  }

  read(): bigint | undefined {
    if (!this.defined()) return undefined;
    try {
      const out = runTool('tpm2_nvread', [this.hex(), '-C', 'o', '-s', '8'], this.env);
      return out.length === 8 ? out.readBigUInt64BE(0) : undefined;
    } catch {
      return undefined; // defined but never incremented: no value yet
    }
  }

  increment(): bigint {
    if (!this.defined()) {
      this.run('tpm2_nvdefine', [
        this.hex(),
        '-C',
        'o',
        '-s',
        '8',
        '-a',
        'ownerread|ownerwrite|nt=counter|no_da',
      ]);
    }
    this.run('tpm2_nvincrement', [this.hex(), '-C', 'o']);
    const v = this.read();
    if (v === undefined)
      throw new UpdateError('ERR_UPDATE_CONFIG', `${this.where}: incremented but unreadable`);
    return v;
  }
}
