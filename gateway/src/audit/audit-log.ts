import type { Clock } from '../clock.ts';
import { isoTime } from '../clock.ts';
import { PortcullisError } from '../errors.ts';
import type { AuditCheckpointRow, AuditHeadRow, AuditRow, Store } from '../store/index.ts';
import { type AuditContent, entryHash, GENESIS_HASH } from './chain.ts';
import { type AuditSealing, checkpointMessage, headMac, macMatches, verifyCheckpoint } from './sealing.ts';

export class AuditError extends PortcullisError {
  constructor(
    code:
      | 'ERR_AUDIT_SECRET_FIELD'
      | 'ERR_AUDIT_INVALID_ENTRY'
      | 'ERR_AUDIT_DATA'
      | 'ERR_AUDIT_TOO_LARGE'
      | 'ERR_AUDIT_TAMPERED'
      | 'ERR_AUDIT_STATE',
    message: string,
  ) {
    super(code, message);
  }
}

/** The largest `details` an entry may carry, as JSON: entries are evidence, not storage (and go to the SIEM). */
export const MAX_DETAILS_BYTES = 8 * 1024;
/** Nesting deeper than this in `details` is refused: no legitimate entry needs it, and walking it costs stack. */
export const MAX_DETAILS_DEPTH = 16;
/** A checkpoint is scheduled after this many entries since the last one (besides the gateway's timer). */
export const CHECKPOINT_EVERY = 256;
/** The running gateway's checkpoint timer (docs/audit.md: why not one TPM counter increment per entry). */
export const CHECKPOINT_INTERVAL_MS = 5 * 60_000;

export interface AuditEntry extends AuditContent {
  prevHash: string;
  hash: string;
}

export interface NewAuditEntry {
  /** Who did it: `user:alice`, `cli:root`, `system`, `flow-token:<id>`, `anomaly-engine`. */
  actor: string;
  /** Dotted verb, e.g. `device.quarantine`. */
  action: string;
  target?: string | null;
  details?: Record<string, unknown>;
}

export type VerifyResult =
  | {
      ok: true;
      entries: number;
      headSeq: number;
      /** Present when the head was checked against the keystore (see docs/audit.md). */
      keyed?: { anchor: 'tpm2-nv' | 'file'; counter: number; headCounter: number; checkpoints: number };
    }
  | { ok: false; entries: number; firstBadSeq: number; reason: string };

export type AuditCheckpoint = AuditCheckpointRow;

/** An identity a restore replaced: it signed the checkpoints before `untilSeq`. */
interface EarlierIdentity {
  untilSeq: number;
  certificate: string;
}

/** Field names that would carry secrets. Audit entries are exported to SIEMs: a secret there is a leak. */
const SECRET_KEY =
  /^(psk|secret|password|passphrase|private_?key|token|totp|otp|setup_?code|key_?material)$/i;

const TOO_DEEP = Symbol('too deep');

function findSecretField(value: unknown, path: string, depth = 0): string | typeof TOO_DEEP | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  if (depth >= MAX_DETAILS_DEPTH) return TOO_DEEP;
  for (const [k, v] of Object.entries(value)) {
    if (SECRET_KEY.test(k)) return path ? `${path}.${k}` : k;
    const nested = findSecretField(v, path ? `${path}.${k}` : k, depth + 1);
    if (nested) return nested;
  }
  return undefined;
}

export function rowToEntry(row: AuditRow): AuditEntry {
  return {
    seq: row.seq,
    ts: row.ts,
    actor: row.actor,
    action: row.action,
    target: row.target,
    details: JSON.parse(row.details) as Record<string, unknown>,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

/** Append-only, hash-chained audit log, with a head keyed by the keystore when it has one (docs/audit.md). */
export class AuditLog {
  /** The keystore counter's value as this process last saw it: a head bound to less is a rolled-back copy. */
  private anchored: number | null = null;
  /** Why the keyed head no longer matches; appends are refused until `reseal`. */
  private tampered: string | null = null;
  private lastCheckpointSeq = 0;
  private checkpointScheduled = false;
  private checkpointTimer: NodeJS.Timeout | undefined;

  /**
   * `sealing`: the keystore's head key, counter and identity signer. With it and a writable store the head is
   * bound at once (a log that was never keyed is keyed now; a head that does not match is remembered and
   * refuses further appends). Read-only opens only check, in `verify`.
   */
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly sealing?: AuditSealing,
    options: { readonly?: boolean } = {},
  ) {
    if (sealing && !options.readonly) this.bind(sealing);
  }

  /** Whether appends are refused because the head was changed outside the gateway (and why). */
  get tamperedReason(): string | null {
    return this.tampered;
  }

  private bind(sealing: AuditSealing): void {
    const { value, fresh } = sealing.counter.open();
    this.anchored = value;
    const repo = this.store.audit;
    this.store.transaction(() => {
      const head = repo.head();
      if (fresh && !head?.mac) {
        // First keying by this keystore: a new log, or one written before heads were keyed.
        const seq = head?.seq ?? 0;
        const hash = head?.hash ?? GENESIS_HASH;
        repo.setHead({ seq, hash, counter: value, mac: headMac(sealing.key, seq, hash, value) });
        return;
      }
      const problem = fresh
        ? 'the head is keyed, but this keystore has no audit counter (was the keystore replaced?)'
        : this.headProblem(head, value);
      if (problem) this.tampered = problem;
    });
    this.lastCheckpointSeq = repo.lastCheckpoint()?.seq ?? 0;
    const head = repo.head();
    // A checkpoint bound the head to counter + 1 and crashed before counting: count now (never an attack: only
    // the key holder can bind a head to a value the keystore has not reached).
    if (!this.tampered && head?.counter != null && head.counter > value) this.catchUp(sealing, head.counter);
  }

  /**
   * Advances the keystore's counter to `target` (a head bound ahead of it). Inside a write transaction and from
   * the counter's actual value, so two processes catching up at once (the gateway and a CLI command) serialise
   * on the database lock and never count past the head, which would read as a rollback.
   */
  private catchUp(sealing: AuditSealing, target: number): void {
    this.store.transaction(() => {
      let v = sealing.counter.open().value;
      while (v < target) v = sealing.counter.increment();
      this.anchored = v;
    });
  }

  /** Why `head` is not a head this gateway wrote under its key at counter ≥ `counter`; null when it is. */
  private headProblem(head: AuditHeadRow | undefined, counter: number): string | null {
    if (!this.sealing) return null;
    if (!head) return 'the audit head is missing';
    if (head.mac === null || head.counter === null) return 'the audit head is not keyed';
    if (!macMatchesHead(this.sealing, head)) {
      return `the keyed head (seq ${head.seq}) does not match its key: it was rewritten outside the gateway`;
    }
    if (head.counter < counter) {
      return `the head is bound to counter ${head.counter} but the ${this.sealing.counter.kind} counter is at ${counter}: the database was rolled back to an earlier copy`;
    }
    return null;
  }

  append(entry: NewAuditEntry): AuditEntry {
    if (!entry.actor || !entry.action) {
      throw new AuditError('ERR_AUDIT_INVALID_ENTRY', 'audit entry needs an actor and an action');
    }
    const details = entry.details ?? {};
    const secret = findSecretField(details, '');
    if (secret === TOO_DEEP) {
      throw new AuditError(
        'ERR_AUDIT_INVALID_ENTRY',
        `audit entry ${entry.action}: details nest deeper than ${MAX_DETAILS_DEPTH} levels`,
      );
    }
    if (secret) {
      throw new AuditError(
        'ERR_AUDIT_SECRET_FIELD',
        `audit entry ${entry.action}: field "${secret}" looks like a secret and is refused`,
      );
    }
    const detailsJson = JSON.stringify(details);
    const size = Buffer.byteLength(detailsJson, 'utf8');
    if (size > MAX_DETAILS_BYTES) {
      throw new AuditError(
        'ERR_AUDIT_TOO_LARGE',
        `audit entry ${entry.action}: details are ${size} bytes as JSON, more than ${MAX_DETAILS_BYTES}`,
      );
    }
    const e = this.store.transaction(() => this.appendRow(entry, details, detailsJson, false));
    this.scheduleCheckpoint(e.seq);
    return e;
  }

  private appendRow(
    entry: NewAuditEntry,
    details: Record<string, unknown>,
    detailsJson: string,
    resealing: boolean,
  ): AuditEntry {
    const repo = this.store.audit;
    const head = repo.head();
    let counter: number | null = null;
    if (this.sealing) {
      const problem = this.tampered ?? this.headProblem(head, this.anchored ?? 0);
      if (problem && !resealing) {
        this.tampered = problem;
        throw new AuditError(
          'ERR_AUDIT_TAMPERED',
          `${problem}; nothing more is appended until an operator runs "portcullis audit reseal"`,
        );
      }
      counter = Math.max(head?.counter ?? 0, this.anchored ?? 0);
    }
    const content: AuditContent = {
      seq: (head?.seq ?? 0) + 1,
      ts: isoTime(this.clock),
      actor: entry.actor,
      action: entry.action,
      target: entry.target ?? null,
      details,
    };
    const prevHash = head?.hash ?? GENESIS_HASH;
    const hash = entryHash(content, prevHash);
    const mac =
      this.sealing && counter !== null ? headMac(this.sealing.key, content.seq, hash, counter) : null;
    repo.insert({ ...content, details: detailsJson, prev_hash: prevHash, hash }, { mac, counter });
    return { ...content, prevHash, hash };
  }

  /**
   * After a detected tampering, lets the gateway write again: appends `audit.reseal` (naming what was found
   * and the head it found) under a fresh keyed head, then a checkpoint. It does not make `verify` pass: the
   * evidence of what was lost stays (the entry, and checkpoints beyond the old end).
   */
  reseal(actor: string, reason: string): AuditEntry {
    if (!this.sealing) throw new AuditError('ERR_AUDIT_STATE', 'the audit log is not keyed (no keystore)');
    const head = this.store.audit.head();
    const problem = this.tampered ?? this.headProblem(head, this.anchored ?? 0) ?? 'none';
    const details = {
      reason: reason.slice(0, 500),
      problem,
      foundHead: head ? { seq: head.seq, hash: head.hash, counter: head.counter } : null,
    };
    const e = this.store.transaction(() => {
      // A deleted head row: carry on after the last entry there is, so the new entry does not collide with it.
      const last = head ? undefined : this.store.audit.lastEntry();
      if (last) this.store.audit.setHead({ ...last, mac: null, counter: null });
      return this.appendRow({ actor, action: 'audit.reseal' }, details, JSON.stringify(details), true);
    });
    this.tampered = null;
    this.checkpoint({ force: true });
    return e;
  }

  private scheduleCheckpoint(seq: number): void {
    if (!this.sealing || this.checkpointScheduled || seq - this.lastCheckpointSeq < CHECKPOINT_EVERY) return;
    this.checkpointScheduled = true;
    // After the caller's transaction has committed: a checkpoint counts in the keystore, which cannot roll back.
    setImmediate(() => {
      this.checkpointScheduled = false;
      try {
        this.checkpoint();
      } catch {
        // The store may have closed meanwhile, or the head no longer matches (remembered in `tampered`).
      }
    }).unref();
  }

  /**
   * Signs (seq, hash, counter, ts) of the current head with the identity key, stores it for the export, and
   * advances the keystore's counter. The head is bound to the new counter value in the database first and the
   * counter is advanced after the commit: a crash in between leaves the head one ahead (caught up at the next
   * start), never behind, which would read as a rollback. Returns null without a keystore, when the head has
   * not moved since the last checkpoint (unless `force`), or while tampering is pending.
   */
  checkpoint(options: { force?: boolean } = {}): AuditCheckpoint | null {
    const sealing = this.sealing;
    if (!sealing || this.tampered) return null;
    const repo = this.store.audit;
    const cp = this.store.transaction(() => {
      const head = repo.head();
      const problem = this.headProblem(head, this.anchored ?? 0);
      if (problem || !head || head.counter === null) {
        this.tampered = problem ?? 'the audit head is missing';
        return null;
      }
      const last = repo.lastCheckpoint();
      if (!options.force && last && last.seq === head.seq && last.hash === head.hash) return null;
      const counter = Math.max(head.counter, this.anchored ?? 0) + 1;
      const c = { seq: head.seq, hash: head.hash, counter, ts: isoTime(this.clock) };
      const signature = sealing.sign(checkpointMessage(c)).toString('base64');
      repo.setHead({ ...head, counter, mac: headMac(sealing.key, head.seq, head.hash, counter) });
      const row = { ...c, signature };
      repo.addCheckpoint(row);
      return row;
    });
    if (cp) {
      this.lastCheckpointSeq = cp.seq;
      this.catchUp(sealing, cp.counter);
    }
    return cp;
  }

  /**
   * The running gateway's checkpoints: one every `intervalMs` while entries arrive (a quiet log makes none), so
   * the entries a rolled-back copy could hide are bounded by this interval or CHECKPOINT_EVERY entries.
   */
  startCheckpoints(intervalMs = CHECKPOINT_INTERVAL_MS): void {
    if (!this.sealing || this.checkpointTimer) return;
    this.checkpointTimer = setInterval(() => {
      try {
        this.checkpoint();
      } catch {
        // Remembered in `tampered` when the head no longer matches; the next append reports it.
      }
    }, intervalMs);
    this.checkpointTimer.unref();
  }

  /** Stops the timer and makes a last checkpoint (at gateway stop), so the export covers the final entry. */
  stopCheckpoints(): void {
    if (this.checkpointTimer) clearInterval(this.checkpointTimer);
    this.checkpointTimer = undefined;
    try {
      this.checkpoint();
    } catch {
      // A stop must not hang on it; the next start's timer checkpoints the same head.
    }
  }

  /** The newest signed checkpoint (the fleet's reported state carries it as an anchor outside the box). */
  lastCheckpoint(): AuditCheckpoint | undefined {
    return this.store.audit.lastCheckpoint();
  }

  /** Checkpoints from `fromSeq` on, in the order they were made (for the export). */
  checkpoints(fromSeq = 0): AuditCheckpoint[] {
    return this.store.audit.checkpoints(fromSeq);
  }

  *entries(fromSeq = 1): Generator<AuditEntry> {
    for (const row of this.store.audit.iterate(fromSeq)) yield rowToEntry(row);
  }

  /**
   * Walk the whole chain. Reports the first sequence number at which the log stops being what was written:
   * an edited entry (its hash no longer matches), a deleted one (a gap, or a head past the last entry), or a
   * reordered one (the sequence number is hashed, so a moved entry fails where it now stands). With the
   * keystore it also checks the keyed head (a truncated log whose head was set to the new last entry), the
   * counter (a database rolled back to an earlier copy), and every stored checkpoint (signature, and that the
   * entry it names is still there with the same hash).
   */
  verify(): VerifyResult {
    const chain = this.walkChain();
    if ('firstBadSeq' in chain) return chain;
    const { count, lastSeq, prevHash, earlierIdentities } = chain;
    const fail = (firstBadSeq: number, reason: string): VerifyResult => ({
      ok: false,
      entries: count,
      firstBadSeq,
      reason,
    });
    const head = this.store.audit.head();
    if ((head?.seq ?? 0) !== lastSeq || (head && head.hash !== prevHash)) {
      return fail(lastSeq + 1, `log ends at entry ${lastSeq} but its head records entry ${head?.seq ?? 0}`);
    }
    if (!this.sealing) return { ok: true, entries: count, headSeq: lastSeq };

    const sealing = this.sealing;
    const checkpoints = this.store.audit.checkpoints(0);
    const badCheckpoint = this.checkCheckpoints(checkpoints, lastSeq, earlierIdentities);
    if (badCheckpoint) return fail(badCheckpoint.seq, badCheckpoint.reason);
    // Never creates the counter: a verify before the first keyed start must not make that start see a counter
    // beside an unkeyed head (which reads as tampering).
    const { value, fresh } = sealing.counter.open(false);
    const problem = fresh
      ? head?.mac
        ? 'the head is keyed, but this keystore has no audit counter (was the keystore replaced?)'
        : null
      : this.headProblem(head, value);
    if (problem) {
      const truncation =
        head?.mac && !macMatchesHead(sealing, head)
          ? `truncated or rewritten: the log ends at entry ${lastSeq}, but the head was not written by the gateway (its key does not match); entries after ${lastSeq} were removed or the head was set by hand`
          : problem;
      return fail(lastSeq + 1, truncation);
    }
    // Written before heads were keyed, and not opened for writing since: nothing to check yet.
    if (fresh) return { ok: true, entries: count, headSeq: lastSeq };
    return {
      ok: true,
      entries: count,
      headSeq: lastSeq,
      keyed: {
        anchor: sealing.counter.kind,
        counter: value,
        headCounter: head?.counter ?? value,
        checkpoints: checkpoints.length,
      },
    };
  }

  /** Every entry in order: its place, its link and its hash; and the identities a restore replaced. */
  private walkChain():
    | Extract<VerifyResult, { ok: false }>
    | { count: number; lastSeq: number; prevHash: string; earlierIdentities: EarlierIdentity[] } {
    let expectedSeq = 1;
    let prevHash = GENESIS_HASH;
    let count = 0;
    const fail = (firstBadSeq: number, reason: string) => ({
      ok: false as const,
      entries: count,
      firstBadSeq,
      reason,
    });
    // Checkpoints made before a restore were signed by the old gateway's identity key; its certificate is in
    // the `backup.restore` entry, which the chain and this gateway's keyed head protect (docs/backup.md).
    const earlierIdentities: EarlierIdentity[] = [];
    for (const row of this.store.audit.iterate()) {
      count++;
      if (row.seq !== expectedSeq)
        return fail(expectedSeq, `entry ${expectedSeq} is missing (next present is ${row.seq})`);
      if (row.prev_hash !== prevHash) return fail(row.seq, 'link to the previous entry is broken');
      let details: Record<string, unknown>;
      try {
        details = JSON.parse(row.details) as Record<string, unknown>;
      } catch {
        return fail(row.seq, 'details are not valid JSON');
      }
      const content: AuditContent = {
        seq: row.seq,
        ts: row.ts,
        actor: row.actor,
        action: row.action,
        target: row.target,
        details,
      };
      if (entryHash(content, row.prev_hash) !== row.hash)
        return fail(row.seq, 'content does not match its hash');
      if (row.action === 'backup.restore' && typeof details.previousIdentityCertificate === 'string') {
        earlierIdentities.push({ untilSeq: row.seq, certificate: details.previousIdentityCertificate });
      }
      prevHash = row.hash;
      expectedSeq++;
    }
    return { count, lastSeq: expectedSeq - 1, prevHash, earlierIdentities };
  }

  /** The first checkpoint that shows truncation, has no valid signature, or names an entry that changed. */
  private checkCheckpoints(
    checkpoints: AuditCheckpoint[],
    lastSeq: number,
    earlierIdentities: EarlierIdentity[],
  ): { seq: number; reason: string } | undefined {
    if (checkpoints.length === 0 || !this.sealing) return undefined;
    const cert = this.sealing.identityCertificate();
    for (const cp of checkpoints) {
      if (cp.seq > lastSeq) {
        return {
          seq: lastSeq + 1,
          reason: `truncated: the log ends at entry ${lastSeq} but a signed checkpoint (${cp.ts}) shows it reached entry ${cp.seq}; entries ${lastSeq + 1}-${cp.seq} at least were removed`,
        };
      }
      const signedBy = [
        cert,
        ...earlierIdentities.filter((i) => cp.seq < i.untilSeq).map((i) => i.certificate),
      ];
      if (!signedBy.some((c) => verifyCheckpoint(cp, c))) {
        return {
          seq: cp.seq,
          reason: `the checkpoint at entry ${cp.seq} (${cp.ts}) has no valid identity signature`,
        };
      }
      if (cp.seq > 0 && this.store.audit.hashAt(cp.seq) !== cp.hash) {
        return {
          seq: cp.seq,
          reason: `entry ${cp.seq} differs from the one its signed checkpoint (${cp.ts}) names`,
        };
      }
    }
    return undefined;
  }
}

/**
 * A restored database (gateway/src/backup) carries the old gateway's head, keyed under the old gateway's key:
 * this gateway binds it to its own key and counter once, at the start that puts the restored copy in place,
 * before anything else opens it. Only a holder of this keystore can do it, as for any head.
 */
export function adoptRestoredHead(store: Store, sealing: AuditSealing): void {
  const { value } = sealing.counter.open();
  store.transaction(() => {
    const head = store.audit.head();
    if (!head) return;
    store.audit.setHead({
      seq: head.seq,
      hash: head.hash,
      counter: value,
      mac: headMac(sealing.key, head.seq, head.hash, value),
    });
  });
}

function macMatchesHead(sealing: AuditSealing, head: AuditHeadRow): boolean {
  if (head.mac === null || head.counter === null) return false;
  return macMatches(headMac(sealing.key, head.seq, head.hash, head.counter), head.mac);
}
