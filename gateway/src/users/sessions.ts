import { randomBytes } from 'node:crypto';
import type { Clock } from '../clock.ts';
import { sha256Hex } from '../digest.ts';
import type { Store, StoredUiSession } from '../store/index.ts';

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

const toSession = (r: StoredUiSession): UiSession => ({
  ...r,
  createdAt: Date.parse(r.createdAt),
  lastSeenAt: Date.parse(r.lastSeenAt),
  reauthAt: r.reauthAt ? Date.parse(r.reauthAt) : null,
});

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
    const csrf = randomBytes(24).toString('base64url');
    this.store.uiSessions.insert(
      { tokenHash: sha256Hex(token), username, mfaPassed, csrf, address },
      this.iso(),
    );
    return { token, session: this.get(token) as UiSession };
  }

  /** The live session for a token, touched; expired ones are deleted and answer undefined. */
  get(token: string | undefined): UiSession | undefined {
    if (!token || token.length > 100) return undefined;
    const h = sha256Hex(token);
    const r = this.store.uiSessions.get(h);
    if (!r) return undefined;
    const now = this.clock.now();
    const s = toSession(r);
    if (now - s.lastSeenAt > IDLE_MS || now - s.createdAt > ABSOLUTE_MS) {
      this.store.users.deleteSession(h);
      return undefined;
    }
    this.store.uiSessions.touch(h, this.iso(now));
    return { ...s, lastSeenAt: now };
  }

  /**
   * Whether a session is still live, without touching it: a long-lived event stream must not keep an idle
   * session alive, and must end when the session does.
   */
  alive(tokenHash: string): boolean {
    const r = this.store.uiSessions.get(tokenHash);
    if (!r) return false;
    const now = this.clock.now();
    return now - Date.parse(r.lastSeenAt) <= IDLE_MS && now - Date.parse(r.createdAt) <= ABSOLUTE_MS;
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
    this.store.uiSessions.markReauth(s.tokenHash, this.iso());
  }

  destroyHash(tokenHash: string): void {
    this.store.users.deleteSession(tokenHash);
  }

  destroyAllFor(username: string): void {
    this.store.users.deleteSessions(username);
  }
}
