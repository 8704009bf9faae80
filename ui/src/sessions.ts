import { randomBytes } from 'node:crypto';
import type { Clock } from '../../gateway/src/clock.ts';
import { sha256Hex } from '../../gateway/src/digest.ts';
import type { Store } from '../../gateway/src/store/index.ts';

/** Idle and absolute limits of a UI session. */
export const IDLE_MS = 15 * 60_000;
export const ABSOLUTE_MS = 8 * 3600_000;
/** Dangerous actions need the password and a code again within this time. */
export const REAUTH_MS = 5 * 60_000;

export interface UiSession {
  tokenHash: string;
  username: string;
  mfaPassed: boolean;
  csrf: string;
  createdAt: number;
  lastSeenAt: number;
  reauthAt: number | null;
  /** The client address that logged in (shown on the sessions list). */
  address: string | null;
}

interface Row {
  token_hash: string;
  username: string;
  mfa_passed: number;
  csrf: string;
  created_at: string;
  last_seen_at: string;
  reauth_at: string | null;
  address: string | null;
}

/** Server-side sessions in the store; the browser holds only a random token, the store only its hash. */
export class UiSessions {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
  ) {}

  private iso(ms = this.clock.now()): string {
    return new Date(ms).toISOString();
  }

  create(
    username: string,
    mfaPassed: boolean,
    address: string | null = null,
  ): { token: string; session: UiSession } {
    const token = randomBytes(32).toString('base64url');
    const now = this.iso();
    this.store.db
      .prepare(
        'INSERT INTO ui_sessions (token_hash, username, mfa_passed, csrf, created_at, last_seen_at, address) VALUES (?, ?, ?, ?, ?, ?, ?)',
      )
      .run(
        sha256Hex(token),
        username,
        mfaPassed ? 1 : 0,
        randomBytes(24).toString('base64url'),
        now,
        now,
        address,
      );
    return { token, session: this.get(token) as UiSession };
  }

  /** The live session for a token, touched; expired ones are deleted and answer undefined. */
  get(token: string | undefined): UiSession | undefined {
    if (!token || token.length > 100) return undefined;
    const h = sha256Hex(token);
    const r = this.store.db.prepare('SELECT * FROM ui_sessions WHERE token_hash = ?').get(h) as
      | Row
      | undefined;
    if (!r) return undefined;
    const now = this.clock.now();
    const s: UiSession = {
      tokenHash: r.token_hash,
      username: r.username,
      mfaPassed: r.mfa_passed === 1,
      csrf: r.csrf,
      createdAt: Date.parse(r.created_at),
      lastSeenAt: Date.parse(r.last_seen_at),
      reauthAt: r.reauth_at ? Date.parse(r.reauth_at) : null,
      address: r.address,
    };
    if (now - s.lastSeenAt > IDLE_MS || now - s.createdAt > ABSOLUTE_MS) {
      this.store.db.prepare('DELETE FROM ui_sessions WHERE token_hash = ?').run(h);
      return undefined;
    }
    this.store.db
      .prepare('UPDATE ui_sessions SET last_seen_at = ? WHERE token_hash = ?')
      .run(this.iso(now), h);
    return { ...s, lastSeenAt: now };
  }

  /**
   * Whether a session is still live, without touching it: a long-lived event stream must not keep an idle
   * session alive, and must end when the session does.
   */
  alive(tokenHash: string): boolean {
    const r = this.store.db
      .prepare('SELECT created_at, last_seen_at FROM ui_sessions WHERE token_hash = ?')
      .get(tokenHash) as Pick<Row, 'created_at' | 'last_seen_at'> | undefined;
    if (!r) return false;
    const now = this.clock.now();
    return now - Date.parse(r.last_seen_at) <= IDLE_MS && now - Date.parse(r.created_at) <= ABSOLUTE_MS;
  }

  /**
   * After the second factor: a new token (the pre-MFA one stops working, so a token seen before login —
   * session fixation — gains nothing).
   */
  promote(old: UiSession): { token: string; session: UiSession } {
    this.destroyHash(old.tokenHash);
    return this.create(old.username, true, old.address);
  }

  markReauth(s: UiSession): void {
    this.store.db
      .prepare('UPDATE ui_sessions SET reauth_at = ? WHERE token_hash = ?')
      .run(this.iso(), s.tokenHash);
  }

  destroyHash(tokenHash: string): void {
    this.store.db.prepare('DELETE FROM ui_sessions WHERE token_hash = ?').run(tokenHash);
  }

  destroyAllFor(username: string): void {
    this.store.db.prepare('DELETE FROM ui_sessions WHERE username = ?').run(username);
  }
}
