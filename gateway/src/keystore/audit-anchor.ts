import { createSecretKey, hkdfSync, type KeyObject } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { KeystoreError } from './errors.ts';
import { firstErrorLine } from './tools.ts';
import type { MonotonicCounter } from './types.ts';

/** HKDF-SHA-256 from the data key; `purpose` is the info string, so each purpose gets an unrelated key. */
export function deriveFromDataKey(dataKey: KeyObject, purpose: string): KeyObject {
  return createSecretKey(Buffer.from(hkdfSync('sha256', dataKey, Buffer.alloc(0), purpose, 32)));
}

/** Writes `text` to `path` so that a crash leaves either the old or the new content, never a torn file. */
function replaceFile(path: string, text: string): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/**
 * The software backend's counter: a decimal number in `<keystore>/audit.counter` (0600). It defends against
 * someone who can write the database but not the keystore directory (a restored or copied database); whoever can
 * write the keystore directory holds the data key as well, and no software counter stops them.
 */
export class FileCounter implements MonotonicCounter {
  readonly kind = 'file' as const;
  private readonly path: string;

  constructor(dir: string) {
    this.path = join(dir, 'audit.counter');
  }

  private read(): number {
    const text = readFileSync(this.path, 'utf8').trim();
    const n = Number(text);
    if (!/^\d{1,15}$/.test(text) || !Number.isSafeInteger(n)) {
      throw new KeystoreError('ERR_KEYSTORE_FILE', `${this.path} does not hold a counter value`);
    }
    return n;
  }

  open(create = true): { value: number; fresh: boolean } {
    if (existsSync(this.path)) return { value: this.read(), fresh: false };
    if (!create) return { value: 0, fresh: true };
    replaceFile(this.path, '0\n');
    return { value: 0, fresh: true };
  }

  increment(): number {
    const next = this.read() + 1;
    replaceFile(this.path, `${next}\n`);
    return next;
  }
}

/**
 * An NV index in the owner hierarchy for Portcullis's audit counter. NV counters only count up, and a counter
 * defined anew (after someone undefines it) starts at the highest value any counter on the TPM ever had, so
 * undefining it does not roll it back either.
 */
export const AUDIT_NV_INDEX = '0x01500a0d';

/**
 * The `tpm2` backend's counter: a TPM 2.0 NV counter (`tpm2_nvdefine -a nt=counter`). `<keystore>/audit-nv-index`
 * records that this keystore owns it: without that file the index is taken over (its current value is the base),
 * with it a missing index means the TPM was cleared, which is refused.
 */
export class TpmNvCounter implements MonotonicCounter {
  readonly kind = 'tpm2-nv' as const;
  private readonly marker: string;

  constructor(
    dir: string,
    private readonly run: (cmd: string, args: string[]) => Buffer,
    private readonly index = AUDIT_NV_INDEX,
  ) {
    this.marker = join(dir, 'audit-nv-index');
  }

  private tool(cmd: string, args: string[]): Buffer {
    try {
      return this.run(cmd, args);
    } catch (err) {
      throw new KeystoreError(
        'ERR_KEYSTORE_TPM',
        `audit counter: ${cmd} ${this.index} failed (${firstErrorLine(err)})`,
      );
    }
  }

  private read(): number {
    const raw = this.tool('tpm2_nvread', [this.index, '-C', 'o', '-s', '8']);
    if (raw.length !== 8) throw new KeystoreError('ERR_KEYSTORE_TPM', 'audit counter: short NV read');
    const n = raw.readBigUInt64BE(0);
    if (n > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new KeystoreError('ERR_KEYSTORE_TPM', 'audit counter: value out of range');
    }
    return Number(n);
  }

  private defined(): boolean {
    try {
      this.run('tpm2_nvreadpublic', [this.index]);
      return true;
    } catch {
      return false;
    }
  }

  open(create = true): { value: number; fresh: boolean } {
    if (existsSync(this.marker)) {
      if (!this.defined()) {
        throw new KeystoreError(
          'ERR_KEYSTORE_TPM',
          `the audit counter (NV index ${this.index}) is gone from the TPM: was the TPM cleared?`,
        );
      }
      return { value: this.read(), fresh: false };
    }
    if (!create) return { value: 0, fresh: true };
    if (!this.defined()) {
      this.tool('tpm2_nvdefine', [
        this.index,
        '-C',
        'o',
        '-s',
        '8',
        '-a',
        'nt=counter|ownerread|ownerwrite|authread|authwrite|no_da',
      ]);
      // A counter cannot be read until it was incremented once.
      this.tool('tpm2_nvincrement', [this.index, '-C', 'o']);
    }
    const value = this.read();
    replaceFile(this.marker, `${this.index}\n`);
    return { value, fresh: true };
  }

  increment(): number {
    this.tool('tpm2_nvincrement', [this.index, '-C', 'o']);
    return this.read();
  }
}
