import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createRequire } from 'node:module';
import { z } from 'zod';
import { AuditAggregator } from '../audit/aggregate.ts';
import type { AuditLog } from '../audit/index.ts';
import type { Clock } from '../clock.ts';
import { sha256Hex } from '../digest.ts';
import type { Keystore } from '../keystore/index.ts';
import { type Role, type Store, StoreError, type User } from '../store/index.ts';
import { argon2idInThread, argon2VerifyInThread } from './argon2-thread.ts';
import { UserError } from './errors.ts';
import { SourceFailures, sourceOf } from './source-failures.ts';

/** otplib (and its hash and base32 libraries) loads with the first TOTP enrolment or code, not at start. */
let otp: typeof import('otplib') | undefined;
const otplib = () => {
  otp ??= createRequire(import.meta.url)('otplib') as typeof import('otplib');
  return otp;
};

export const usernameSchema = z.string().regex(/^[a-z][a-z0-9._-]{1,31}$/, {
  error: 'must be 2-32 characters: lower-case letters, digits, ".", "_" or "-", starting with a letter',
});
/** ETSI EN 303 645 5.1: no weak passwords. Length over composition rules (NIST SP 800-63B). */
export const passwordSchema = z.string().min(12, { error: 'must be at least 12 characters' }).max(256);

/**
 * Consecutive failures (password or code, from anywhere) after which an account is locked, and for how long
 * after its last failure. The lock never stops everyone: see `refusedWhileLocked`.
 */
const LOCK_AFTER = 5;
const LOCK_MS = 15 * 60_000;
/** A source with this many recent failures is a suspect: it cannot log in to a locked account at all. */
const SUSPECT_AFTER = 3;
/** Failed attempts are audited once per source per minute, with counts; at most this many sources a minute. */
const AUDIT_WINDOW_MS = 60_000;
const AUDIT_MAX_SOURCES = 1000;
/** The name recorded for attempts on names that are no account (never the name typed: it may be a password). */
const UNKNOWN_NAME = '(unknown)';
const RECOVERY_CODES = 10;
const ISSUER = 'Portcullis';

/** How passwords are hashed and checked (tests wrap it to count the work each answer does). */
export interface PasswordHasher {
  hash(password: string): Promise<string>;
  verify(hash: string, password: string): Promise<boolean>;
}

/**
 * argon2id with OWASP's minimum parameters (19 MiB, 2 passes, 1 lane), as a PHC string. WebAssembly
 * (hash-wasm): the native argon2 package's prebuilt binary crashed on load here, and building it needs a
 * compiler and Node's headers from the internet. Computed in a worker thread (argon2-thread.ts), so a login
 * never holds the gateway's event loop.
 */
async function hashPassword(password: string): Promise<string> {
  return argon2idInThread({
    password,
    salt: randomBytes(16),
    parallelism: 1,
    iterations: 2,
    memorySize: 19_456,
    hashLength: 32,
  });
}

async function verifyPassword(hash: string, password: string): Promise<boolean> {
  return argon2VerifyInThread(hash, password).catch(() => false);
}

export const argon2Hasher: PasswordHasher = { hash: hashPassword, verify: verifyPassword };

/** A code a person types: 10 characters from an alphabet without look-alikes, shown as two groups. */
function humanCode(): string {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';
  const bytes = randomBytes(10);
  const chars = [...bytes].map((b) => alphabet[b % alphabet.length]).join('');
  return `${chars.slice(0, 5)}-${chars.slice(5)}`;
}

const normaliseCode = (s: string) => s.trim().toUpperCase().replace(/[\s-]/g, '');

const WRONG_SETUP_CODE = 'wrong setup code';
/** Where failures go once AUDIT_MAX_SOURCES sources failed within a minute: one entry for all the rest. */
const OVERFLOW_LOGIN = { action: 'user.login.failed', actor: 'ui', target: null, fixed: { source: 'other' } };
const OVERFLOW_SETUP = {
  action: 'user.setup.failed',
  actor: 'ui:setup',
  target: null,
  fixed: { source: 'other' },
};

export function totpContext(username: string): string {
  return `user:totp:${username}`;
}

/** The one answer to every failed login, whatever failed and whether the name exists. */
const CREDENTIALS_MESSAGE = 'wrong username or password, or too many recent failures from this address';

/**
 * Accounts of the technician UI: first-boot setup by proof of presence (no default password), argon2id
 * passwords, throttling per source and a lock per account that an attacker cannot turn against the account's
 * owner (docs/security.md), TOTP second factor with recovery codes. Every change is audited; failed attempts
 * are audited per source per minute; no secret is logged.
 */
export class UserService {
  private readonly hasher: PasswordHasher;
  /** A hash to verify unknown names against, made like a real one, so their answer does the same work. */
  private dummyHash: Promise<string> | undefined;
  private readonly sources: SourceFailures;
  private readonly failures: AuditAggregator;

  constructor(
    private readonly store: Store,
    private readonly keystore: Keystore,
    private readonly audit: AuditLog,
    private readonly clock: Clock,
    options: { hasher?: PasswordHasher } = {},
  ) {
    this.hasher = options.hasher ?? argon2Hasher;
    this.sources = new SourceFailures(() => clock.now());
    this.failures = new AuditAggregator((e) => audit.append(e), clock, {
      windowMs: AUDIT_WINDOW_MS,
      maxKeys: AUDIT_MAX_SOURCES,
      maxTallyValues: 10,
    });
  }

  /** Writes the pending per-source failure entries (at stop; later failures are no longer audited). */
  close(): void {
    this.failures.close();
  }

  /** Writes the failure entries whose minute is over (the timer does this too; tests move the clock). */
  flushFailureAudit(): void {
    this.failures.flushDue();
  }

  private nowIso(offsetMs = 0): string {
    return new Date(this.clock.now() + offsetMs).toISOString();
  }

  needsSetup(): boolean {
    return this.store.users.count() === 0;
  }

  /**
   * While no account exists: a fresh setup code (the previous one stops working), for the console and the
   * label. Returns null once set up.
   */
  issueSetupCode(): string | null {
    if (!this.needsSetup()) return null;
    const code = humanCode();
    this.store.users.setSetupCode(sha256Hex(normaliseCode(code)), this.nowIso());
    return code;
  }

  /**
   * First boot: the setup code — or the pairing button pressed moments ago (`buttonPressed`) — proves presence;
   * creates the first admin and closes setup for good.
   */
  async completeSetup(
    code: string | null,
    username: string,
    password: string,
    buttonPressed = false,
    address = 'local',
  ): Promise<User> {
    const source = sourceOf(address);
    this.assertSourceMayTry(source);
    const name = usernameSchema.safeParse(username);
    if (!name.success) throw new UserError('ERR_USER_INVALID', `username ${name.error.issues[0]?.message}`);
    const pw = passwordSchema.safeParse(password);
    if (!pw.success) throw new UserError('ERR_USER_INVALID', `password ${pw.error.issues[0]?.message}`);
    const hash = await this.hasher.hash(pw.data);
    try {
      return this.createFirstAdmin(code, name.data, hash, buttonPressed);
    } catch (err) {
      // Audited here, after the transaction rolled back: inside it, the entry went with the rollback.
      if (err instanceof UserError && err.message === WRONG_SETUP_CODE) {
        this.sources.fail(source);
        this.failures.record(
          { action: 'user.setup.failed', actor: 'ui:setup', target: source, fixed: { source } },
          {},
          OVERFLOW_SETUP,
        );
      }
      throw err;
    }
  }

  private createFirstAdmin(
    code: string | null,
    username: string,
    hash: string,
    buttonPressed: boolean,
  ): User {
    return this.store.transaction(() => {
      const stored = this.store.users.setupCodeHash();
      if (!this.needsSetup() || (!stored && !buttonPressed))
        throw new UserError('ERR_USER_SETUP', 'setup is closed');
      const given = Buffer.from(sha256Hex(normaliseCode(code ?? '')), 'hex');
      const codeOk =
        code !== null && stored !== undefined && timingSafeEqual(given, Buffer.from(stored, 'hex'));
      if (!codeOk && !buttonPressed) throw new UserError('ERR_USER_SETUP', WRONG_SETUP_CODE);
      this.store.users.clearSetupCode();
      const user = this.store.users.insert({ username, role: 'admin', passwordHash: hash }, this.nowIso());
      this.audit.append({
        actor: `ui:${username}`,
        action: 'user.setup',
        target: username,
        details: { role: 'admin', presence: codeOk ? 'setup code' : 'pairing button' },
      });
      return user;
    });
  }

  async createUser(req: { username: string; role: Role; password: string }, actor: string): Promise<User> {
    const name = usernameSchema.safeParse(req.username);
    if (!name.success) throw new UserError('ERR_USER_INVALID', `username ${name.error.issues[0]?.message}`);
    const pw = passwordSchema.safeParse(req.password);
    if (!pw.success) throw new UserError('ERR_USER_INVALID', `password ${pw.error.issues[0]?.message}`);
    const hash = await this.hasher.hash(pw.data);
    try {
      return this.store.transaction(() => {
        const u = this.store.users.insert(
          { username: name.data, role: req.role, passwordHash: hash },
          this.nowIso(),
        );
        this.audit.append({ actor, action: 'user.add', target: u.username, details: { role: u.role } });
        return u;
      });
    } catch (err) {
      if (err instanceof StoreError && err.code === 'ERR_STORE_CONFLICT')
        throw new UserError('ERR_USER_CONFLICT', err.message);
      throw err;
    }
  }

  /**
   * The password step of a login from `address`. Every answer but a throttled source's (429, whatever the
   * name) does exactly one hash verification — against the account's hash, or for names that are no account
   * (or a disabled one) against a dummy hash made with the same parameters — and every failure is the same
   * error with the same message, so neither the answer nor its time tells which names exist.
   */
  async authenticate(username: string, password: string, address = 'local'): Promise<User> {
    const source = sourceOf(address);
    this.assertSourceMayTry(source);
    this.dummyHash ??= this.hasher.hash('portcullis-timing-equaliser');
    const dummy = await this.dummyHash;
    const user = this.store.users.get(username);
    const usable = user && !user.disabledAt ? user : undefined;
    const ok = await this.hasher.verify(usable?.passwordHash ?? dummy, password);
    if (usable && ok && !this.refusedWhileLocked(usable, source)) return usable;
    this.fail(user?.username, source, 'wrong-password');
    throw new UserError('ERR_USER_CREDENTIALS', CREDENTIALS_MESSAGE);
  }

  /** A source that failed too often waits before its next attempt (whatever name it tries next). */
  private assertSourceMayTry(source: string): void {
    const wait = this.sources.waitMs(source);
    if (wait > 0) {
      throw new UserError(
        'ERR_USER_THROTTLED',
        `too many failed attempts from this address; try again in ${Math.ceil(wait / 1000)} s`,
      );
    }
  }

  /**
   * A locked account (LOCK_AFTER failures in a row, from anywhere) still opens for the right password and a
   * second factor from a source without recent failures: whoever locked it cannot keep its owner out. It stays
   * shut to suspect sources (the guessing ones), and to the password alone where no second factor is enrolled
   * yet (that session could enrol one). Refused as a wrong password: the lock is never visible.
   */
  private refusedWhileLocked(user: User, source: string): boolean {
    if (!user.lockedUntil || Date.parse(user.lockedUntil) <= this.clock.now()) return false;
    return this.sources.recent(source) >= SUSPECT_AFTER || !user.totpEnrolledAt;
  }

  /**
   * One failed attempt: counts for the source (throttling) and the account (the lock), and into the source's
   * audit entry of this minute. The lock itself is audited when it closes, once per lock.
   */
  private fail(username: string | undefined, source: string, factor: 'wrong-password' | 'wrong-code'): void {
    this.sources.fail(source);
    this.failures.record(
      { action: 'user.login.failed', actor: 'ui', target: source, fixed: { source } },
      { account: username ?? UNKNOWN_NAME, factor },
      OVERFLOW_LOGIN,
    );
    if (!username) return;
    this.store.transaction(() => {
      const n = this.store.users.recordFailure(username, LOCK_AFTER, this.nowIso(LOCK_MS));
      if (n === LOCK_AFTER) {
        this.audit.append({
          actor: 'ui',
          action: 'user.login.locked',
          target: username,
          details: { failures: n, lastSource: source, until: this.nowIso(LOCK_MS) },
        });
      }
    });
  }

  /**
   * `portcullis ui user unlock NAME`: forgets the account's failures and lock, audited with who did it.
   * Sources keep their own throttling (it ends on its own, and never blocks other sources).
   */
  unlock(username: string, actor: string): { failures: number; lockedUntil: string | null } {
    return this.store.transaction(() => {
      const user = this.store.users.get(username);
      if (!user) throw new UserError('ERR_USER_NOT_FOUND', `no account ${username}`);
      const before = { failures: user.failedLogins, lockedUntil: user.lockedUntil };
      this.store.users.clearFailures(username);
      this.audit.append({ actor, action: 'user.unlock', target: username, details: before });
      return before;
    });
  }

  /**
   * Starts TOTP enrolment, or continues the one in progress: the key stays the same across page reloads and
   * wrong codes (a technician who mistyped, or whose phone reloaded the tab, must not have to rescan), until
   * it is confirmed or `fresh` asks for a new one. Only a password-authenticated session of this account
   * reaches it. `renewed` says whether the key is new.
   */
  beginTotpEnrollment(
    username: string,
    options: { fresh?: boolean } = {},
  ): { secret: string; uri: string; renewed: boolean } {
    const user = this.requireUser(username);
    if (user.totpEnrolledAt) throw new UserError('ERR_USER_MFA', 'a second factor is already enrolled');
    let secret: string;
    let renewed = false;
    if (user.totpSecretWrapped && !options.fresh) {
      secret = this.keystore.unwrap(user.totpSecretWrapped, totpContext(username)).toString();
    } else {
      secret = otplib().generateSecret();
      renewed = true;
      this.store.users.setTotp(
        username,
        this.keystore.wrap(Buffer.from(secret), totpContext(username)),
        null,
      );
    }
    return { secret, uri: otplib().generateURI({ issuer: ISSUER, label: username, secret }), renewed };
  }

  /** Confirms enrolment with a first code; returns the recovery codes, shown once. */
  confirmTotpEnrollment(username: string, token: string, address = 'local'): string[] {
    this.assertSourceMayTry(sourceOf(address));
    const user = this.requireUser(username);
    if (user.totpEnrolledAt || !user.totpSecretWrapped)
      throw new UserError('ERR_USER_MFA', 'no enrolment in progress');
    if (!this.checkTotp(user, token)) {
      this.fail(username, sourceOf(address), 'wrong-code');
      throw new UserError('ERR_USER_CREDENTIALS', 'wrong code');
    }
    const codes = Array.from({ length: RECOVERY_CODES }, humanCode);
    this.store.transaction(() => {
      this.store.users.setTotp(username, user.totpSecretWrapped, this.nowIso());
      this.store.users.acceptTotpStep(username, this.stepOf(user, token) ?? 0);
      this.store.users.setRecoveryCodes(
        username,
        codes.map((c) => sha256Hex(normaliseCode(c))),
      );
      this.audit.append({
        actor: `ui:${username}`,
        action: 'user.mfa.enrol',
        target: username,
        details: { recoveryCodes: codes.length },
      });
    });
    return codes;
  }

  isEnrolled(username: string): boolean {
    return Boolean(this.store.users.get(username)?.totpEnrolledAt);
  }

  /**
   * The second factor: a TOTP code not used before, or an unused recovery code (then spent). On a locked
   * account only a source without recent failures may try (see `refusedWhileLocked`).
   */
  verifySecondFactor(username: string, code: string, address = 'local'): void {
    const source = sourceOf(address);
    this.assertSourceMayTry(source);
    const user = this.requireUser(username);
    if (!user.totpEnrolledAt) throw new UserError('ERR_USER_MFA', 'no second factor enrolled');
    if (this.refusedWhileLocked(user, source)) {
      this.fail(username, source, 'wrong-code');
      throw new UserError('ERR_USER_CREDENTIALS', 'wrong code');
    }
    const step = this.stepOf(user, code);
    if (step !== undefined && this.store.users.acceptTotpStep(username, step)) {
      this.store.users.clearFailures(username);
      return;
    }
    const h = sha256Hex(normaliseCode(code));
    if (user.recoveryCodeHashes.includes(h)) {
      this.store.transaction(() => {
        this.store.users.setRecoveryCodes(
          username,
          user.recoveryCodeHashes.filter((x) => x !== h),
        );
        this.store.users.clearFailures(username);
        this.audit.append({
          actor: `ui:${username}`,
          action: 'user.mfa.recovery-code',
          target: username,
          details: { left: user.recoveryCodeHashes.length - 1 },
        });
      });
      return;
    }
    this.fail(username, source, 'wrong-code');
    throw new UserError('ERR_USER_CREDENTIALS', 'wrong code');
  }

  private checkTotp(user: User, token: string): boolean {
    return this.stepOf(user, token) !== undefined;
  }

  /** The time step a valid TOTP code belongs to (±1 step of clock drift), or undefined. */
  private stepOf(user: User, token: string): number | undefined {
    if (!user.totpSecretWrapped || !/^\d{6}$/.test(token.trim())) return undefined;
    const secret = this.keystore.unwrap(user.totpSecretWrapped, totpContext(user.username)).toString();
    const r = otplib().verifySync({
      secret,
      token: token.trim(),
      epoch: Math.floor(this.clock.now() / 1000),
      epochTolerance: 30,
    });
    return r.valid ? Math.floor((r as { epoch: number }).epoch / 30) : undefined;
  }

  private requireUser(username: string): User {
    const u = this.store.users.get(username);
    if (!u) throw new UserError('ERR_USER_CREDENTIALS', 'wrong username or password');
    return u;
  }

  /**
   * A person changes their own password: the current one proves it (a wrong one counts as a failed login),
   * the new one follows the same rule as every password, and every other session of the account ends.
   */
  async changePassword(
    username: string,
    current: string,
    next: string,
    address = 'local',
    keepTokenHash?: string,
  ): Promise<{ sessionsEnded: number }> {
    const source = sourceOf(address);
    this.assertSourceMayTry(source);
    const user = this.store.users.get(username);
    if (!user || user.disabledAt) throw new UserError('ERR_USER_CREDENTIALS', CREDENTIALS_MESSAGE);
    if (!(await this.hasher.verify(user.passwordHash, current))) {
      this.fail(username, source, 'wrong-password');
      throw new UserError('ERR_USER_CREDENTIALS', 'the current password is wrong');
    }
    const pw = passwordSchema.safeParse(next);
    if (!pw.success) throw new UserError('ERR_USER_INVALID', `new password ${pw.error.issues[0]?.message}`);
    if (next === current)
      throw new UserError('ERR_USER_INVALID', 'the new password must differ from the old one');
    const hash = await this.hasher.hash(pw.data);
    return this.store.transaction(() => {
      this.store.users.setPassword(username, hash, false);
      const sessionsEnded = this.store.users.deleteSessions(username, keepTokenHash);
      this.audit.append({
        actor: `ui:${username}`,
        action: 'user.password.change',
        target: username,
        details: { sessionsEnded, wasRequired: user.passwordChangeRequired },
      });
      return { sessionsEnded };
    });
  }

  /**
   * An admin sets another account's password (forgotten, or a leaver's colleague takes over): the account's
   * sessions end and its owner must choose a new password at the next login.
   */
  async resetPassword(username: string, next: string, actor: string): Promise<{ sessionsEnded: number }> {
    const target = this.requireAccount(username);
    this.refuseSelf(target.username, actor, 'change your own password on the account page');
    const pw = passwordSchema.safeParse(next);
    if (!pw.success) throw new UserError('ERR_USER_INVALID', `password ${pw.error.issues[0]?.message}`);
    const hash = await this.hasher.hash(pw.data);
    return this.store.transaction(() => {
      this.store.users.setPassword(username, hash, true);
      const sessionsEnded = this.store.users.deleteSessions(username);
      this.audit.append({
        actor,
        action: 'user.password.reset',
        target: username,
        details: { changeRequired: true, sessionsEnded },
      });
      return { sessionsEnded };
    });
  }

  /** An admin clears another account's second factor (a lost phone): it enrols again at its next login. */
  resetMfa(username: string, actor: string): { sessionsEnded: number } {
    const target = this.requireAccount(username);
    this.refuseSelf(target.username, actor, 'another admin must reset your second factor');
    return this.store.transaction(() => {
      this.store.users.clearMfa(username);
      const sessionsEnded = this.store.users.deleteSessions(username);
      this.audit.append({
        actor,
        action: 'user.mfa.reset',
        target: username,
        details: { wasEnrolled: Boolean(target.totpEnrolledAt), sessionsEnded },
      });
      return { sessionsEnded };
    });
  }

  /** Disables (sessions end, logins refused like a wrong password) or enables an account; never the last admin. */
  setEnabled(username: string, enabled: boolean, actor: string): User {
    return this.store.transaction(() => {
      const target = this.requireAccount(username);
      this.refuseSelf(target.username, actor, 'another admin must do this');
      if (enabled === !target.disabledAt) {
        throw new UserError('ERR_USER_STATE', `${username} is already ${enabled ? 'enabled' : 'disabled'}`);
      }
      if (!enabled) this.refuseLastAdmin(target);
      this.store.users.setDisabled(username, enabled ? null : this.nowIso());
      const sessionsEnded = enabled ? 0 : this.store.users.deleteSessions(username);
      this.audit.append({
        actor,
        action: enabled ? 'user.enable' : 'user.disable',
        target: username,
        details: enabled ? {} : { sessionsEnded },
      });
      return this.store.users.get(username) as User;
    });
  }

  /** Deletes an account (its audit entries stay, under its name); never the last admin, never oneself. */
  deleteUser(username: string, actor: string): void {
    this.store.transaction(() => {
      const target = this.requireAccount(username);
      this.refuseSelf(target.username, actor, 'another admin must do this');
      this.refuseLastAdmin(target);
      this.store.users.delete(username);
      this.audit.append({ actor, action: 'user.delete', target: username, details: { role: target.role } });
    });
  }

  /** The UI sessions of one account, or of all (admins); newest use first. */
  sessions(username?: string) {
    return this.store.users.sessions(username);
  }

  /** Ends one session (by its token's hash, which the store holds; never the token). */
  revokeSession(tokenHash: string, actor: string): void {
    this.store.transaction(() => {
      const s = this.store.users.sessions().find((x) => x.tokenHash === tokenHash);
      if (!s) throw new UserError('ERR_USER_NOT_FOUND', 'no such session (it may have ended already)');
      this.store.users.deleteSession(tokenHash);
      this.audit.append({
        actor,
        action: 'user.session.revoke',
        target: s.username,
        details: { createdAt: s.createdAt, address: s.address },
      });
    });
  }

  private requireAccount(username: string): User {
    const u = this.store.users.get(username);
    if (!u) throw new UserError('ERR_USER_NOT_FOUND', `no account ${username}`);
    return u;
  }

  private refuseSelf(username: string, actor: string, hint: string): void {
    if (actor === `ui:${username}`) {
      throw new UserError('ERR_USER_STATE', `not on your own account: ${hint}`);
    }
  }

  private refuseLastAdmin(target: User): void {
    if (target.role === 'admin' && !target.disabledAt && this.store.users.countActiveAdmins() <= 1) {
      throw new UserError('ERR_USER_STATE', `${target.username} is the last enabled admin`);
    }
  }

  get(username: string): User | undefined {
    return this.store.users.get(username);
  }

  list(): Pick<
    User,
    'username' | 'role' | 'createdAt' | 'disabledAt' | 'totpEnrolledAt' | 'passwordChangeRequired'
  >[] {
    return this.store.users
      .list()
      .map(({ username, role, createdAt, disabledAt, totpEnrolledAt, passwordChangeRequired }) => ({
        username,
        role,
        createdAt,
        disabledAt,
        totpEnrolledAt,
        passwordChangeRequired,
      }));
  }
}
