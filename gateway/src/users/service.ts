import { randomBytes, timingSafeEqual } from 'node:crypto';
import { argon2id, argon2Verify } from 'hash-wasm';
import { generateSecret, generateURI, verifySync } from 'otplib';
import { z } from 'zod';
import type { AuditLog } from '../audit/index.ts';
import type { Clock } from '../clock.ts';
import { sha256Hex } from '../digest.ts';
import type { Keystore } from '../keystore/index.ts';
import { type Role, type Store, StoreError, type User } from '../store/index.ts';
import { UserError } from './errors.ts';

export const usernameSchema = z.string().regex(/^[a-z][a-z0-9._-]{1,31}$/, {
  error: 'must be 2-32 characters: lower-case letters, digits, ".", "_" or "-", starting with a letter',
});
/** ETSI EN 303 645 5.1: no weak passwords. Length over composition rules (NIST SP 800-63B). */
export const passwordSchema = z.string().min(12, { error: 'must be at least 12 characters' }).max(256);

const LOCK_AFTER = 5;
const LOCK_MS = 15 * 60_000;
const RECOVERY_CODES = 10;
const ISSUER = 'Portcullis';

/**
 * argon2id with OWASP's minimum parameters (19 MiB, 2 passes, 1 lane), as a PHC string. WebAssembly
 * (hash-wasm): the native argon2 package's prebuilt binary crashed on load here, and building it needs a
 * compiler and Node's headers from the internet.
 */
function hashPassword(password: string): Promise<string> {
  return argon2id({
    password,
    salt: randomBytes(16),
    parallelism: 1,
    iterations: 2,
    memorySize: 19_456,
    hashLength: 32,
    outputType: 'encoded',
  });
}

function verifyPassword(hash: string, password: string): Promise<boolean> {
  return argon2Verify({ password, hash }).catch(() => false);
}

/** A code a person types: 10 characters from an alphabet without look-alikes, shown as two groups. */
function humanCode(): string {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';
  const bytes = randomBytes(10);
  const chars = [...bytes].map((b) => alphabet[b % alphabet.length]).join('');
  return `${chars.slice(0, 5)}-${chars.slice(5)}`;
}

const normaliseCode = (s: string) => s.trim().toUpperCase().replace(/[\s-]/g, '');

function totpContext(username: string): string {
  return `user:totp:${username}`;
}

/** A hash to verify unknown users against, so the answer takes as long as for a real one. */
let dummyHash: Promise<string> | undefined;

/**
 * Accounts of the technician UI: first-boot setup by proof of presence (no default password), argon2id
 * passwords, lockout, TOTP second factor with recovery codes. Every change is audited; no secret is logged.
 */
export class UserService {
  constructor(
    private readonly store: Store,
    private readonly keystore: Keystore,
    private readonly audit: AuditLog,
    private readonly clock: Clock,
  ) {}

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
    this.store.db
      .prepare(
        'INSERT INTO setup_code (id, code_hash, created_at) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET code_hash = excluded.code_hash, created_at = excluded.created_at',
      )
      .run(sha256Hex(normaliseCode(code)), this.nowIso());
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
  ): Promise<User> {
    const name = usernameSchema.safeParse(username);
    if (!name.success) throw new UserError('ERR_USER_INVALID', `username ${name.error.issues[0]?.message}`);
    const pw = passwordSchema.safeParse(password);
    if (!pw.success) throw new UserError('ERR_USER_INVALID', `password ${pw.error.issues[0]?.message}`);
    const hash = await hashPassword(pw.data);
    return this.store.transaction(() => {
      const row = this.store.db.prepare('SELECT code_hash FROM setup_code WHERE id = 1').get() as
        | { code_hash: string }
        | undefined;
      if (!this.needsSetup() || (!row && !buttonPressed))
        throw new UserError('ERR_USER_SETUP', 'setup is closed');
      const given = Buffer.from(sha256Hex(normaliseCode(code ?? '')), 'hex');
      const codeOk =
        code !== null && row !== undefined && timingSafeEqual(given, Buffer.from(row.code_hash, 'hex'));
      if (!codeOk && !buttonPressed) {
        this.audit.append({ actor: 'ui:setup', action: 'user.setup.failed', details: {} });
        throw new UserError('ERR_USER_SETUP', 'wrong setup code');
      }
      this.store.db.prepare('DELETE FROM setup_code').run();
      const user = this.store.users.insert(
        { username: name.data, role: 'admin', passwordHash: hash },
        this.nowIso(),
      );
      this.audit.append({
        actor: `ui:${name.data}`,
        action: 'user.setup',
        target: name.data,
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
    const hash = await hashPassword(pw.data);
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

  /** Password check with lockout; one message for unknown user and wrong password. */
  async authenticate(username: string, password: string): Promise<User> {
    const user = this.store.users.get(username);
    if (!user || user.disabledAt) {
      dummyHash ??= hashPassword('portcullis-timing-equaliser');
      await verifyPassword(await dummyHash, password);
      throw new UserError('ERR_USER_CREDENTIALS', 'wrong username or password');
    }
    this.assertNotLocked(user);
    const ok = await verifyPassword(user.passwordHash, password);
    if (!ok) {
      this.fail(user.username, 'password');
      throw new UserError('ERR_USER_CREDENTIALS', 'wrong username or password');
    }
    return user;
  }

  private assertNotLocked(user: User): void {
    if (user.lockedUntil && Date.parse(user.lockedUntil) > this.clock.now()) {
      throw new UserError(
        'ERR_USER_LOCKED',
        `account locked until ${user.lockedUntil} after repeated failures`,
      );
    }
  }

  private fail(username: string, factor: 'password' | 'second factor'): void {
    this.store.transaction(() => {
      const n = this.store.users.recordFailure(username, LOCK_AFTER, this.nowIso(LOCK_MS));
      this.audit.append({
        actor: `ui:${username}`,
        action: 'user.login.failed',
        target: username,
        details: { factor, failures: n, locked: n >= LOCK_AFTER },
      });
    });
  }

  /** Starts (or restarts) TOTP enrolment: the secret goes to the person once, as a URI for a QR code. */
  beginTotpEnrollment(username: string): { secret: string; uri: string } {
    const user = this.requireUser(username);
    if (user.totpEnrolledAt) throw new UserError('ERR_USER_MFA', 'a second factor is already enrolled');
    const secret = generateSecret();
    this.store.users.setTotp(username, this.keystore.wrap(Buffer.from(secret), totpContext(username)), null);
    return { secret, uri: generateURI({ issuer: ISSUER, label: username, secret }) };
  }

  /** Confirms enrolment with a first code; returns the recovery codes, shown once. */
  confirmTotpEnrollment(username: string, token: string): string[] {
    const user = this.requireUser(username);
    if (user.totpEnrolledAt || !user.totpSecretWrapped)
      throw new UserError('ERR_USER_MFA', 'no enrolment in progress');
    if (!this.checkTotp(user, token)) {
      this.fail(username, 'second factor');
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

  /** The second factor: a TOTP code not used before, or an unused recovery code (then spent). */
  verifySecondFactor(username: string, code: string): void {
    const user = this.requireUser(username);
    this.assertNotLocked(user);
    if (!user.totpEnrolledAt) throw new UserError('ERR_USER_MFA', 'no second factor enrolled');
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
    this.fail(username, 'second factor');
    throw new UserError('ERR_USER_CREDENTIALS', 'wrong code');
  }

  private checkTotp(user: User, token: string): boolean {
    return this.stepOf(user, token) !== undefined;
  }

  /** The time step a valid TOTP code belongs to (±1 step of clock drift), or undefined. */
  private stepOf(user: User, token: string): number | undefined {
    if (!user.totpSecretWrapped || !/^\d{6}$/.test(token.trim())) return undefined;
    const secret = this.keystore.unwrap(user.totpSecretWrapped, totpContext(user.username)).toString();
    const r = verifySync({
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

  get(username: string): User | undefined {
    return this.store.users.get(username);
  }

  list(): Pick<User, 'username' | 'role' | 'createdAt' | 'disabledAt' | 'totpEnrolledAt'>[] {
    return this.store.users.list().map(({ username, role, createdAt, disabledAt, totpEnrolledAt }) => ({
      username,
      role,
      createdAt,
      disabledAt,
      totpEnrolledAt,
    }));
  }
}
