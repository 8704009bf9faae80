import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { AuditLog } from '../audit/index.ts';
import type { Clock } from '../clock.ts';
import { sha256Hex } from '../digest.ts';
import { PortcullisError } from '../errors.ts';
import type { Store, StoredControlToken } from '../store/index.ts';

/** Codes: ERR_CONTROL_INVALID, ERR_CONTROL_CONFLICT, ERR_CONTROL_NOT_FOUND. */
export class ControlError extends PortcullisError {}

/** What a flow may do through the control socket; granted per token by an admin, nothing by default. */
export const SCOPES = [
  'events:read',
  'device:read',
  'device:quarantine',
  'uplink:publish',
  'audit:write',
  /** Register as a synchronous decision point for profiles that name the token (docs/policy.md). */
  'policy:decide',
] as const;
export type Scope = (typeof SCOPES)[number];

export interface ControlToken {
  name: string;
  scopes: Scope[];
  createdBy: string;
  createdAt: string;
  revokedAt: string | null;
}

const toToken = (r: StoredControlToken): ControlToken => ({ ...r, scopes: r.scopes as Scope[] });

const nameSchema = z
  .string()
  .regex(/^[a-z][a-z0-9._-]{0,31}$/, { error: 'must be 1-32 characters: a-z, 0-9, ".", "_", "-"' });

/** Tokens for the control socket: shown once at creation, stored as a hash, checked on every call. */
export class ControlTokens {
  constructor(
    private readonly store: Store,
    private readonly audit: AuditLog,
    private readonly clock: Clock,
  ) {}

  create(name: string, scopes: string[], actor: string): { token: string; info: ControlToken } {
    const n = nameSchema.safeParse(name);
    if (!n.success) throw new ControlError('ERR_CONTROL_INVALID', `token name ${n.error.issues[0]?.message}`);
    const unknown = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
    if (scopes.length === 0 || unknown.length > 0) {
      throw new ControlError(
        'ERR_CONTROL_INVALID',
        `scopes must be some of ${SCOPES.join(', ')}${unknown.length ? ` (unknown: ${unknown.join(', ')})` : ''}`,
      );
    }
    const token = `pct_${randomBytes(24).toString('base64url')}`;
    const now = new Date(this.clock.now()).toISOString();
    try {
      this.store.transaction(() => {
        this.store.controlTokens.insert(
          {
            name: n.data,
            tokenHash: sha256Hex(token),
            scopes: [...new Set(scopes)].sort(),
            createdBy: actor,
          },
          now,
        );
        this.audit.append({ actor, action: 'control.token.create', target: n.data, details: { scopes } });
      });
    } catch (err) {
      if ((err as { code?: string }).code?.startsWith('SQLITE_CONSTRAINT')) {
        throw new ControlError('ERR_CONTROL_CONFLICT', `a token named ${n.data} exists`);
      }
      throw err;
    }
    return { token, info: this.get(n.data) as ControlToken };
  }

  get(name: string): ControlToken | undefined {
    const r = this.store.controlTokens.get(name);
    return r && toToken(r);
  }

  list(): ControlToken[] {
    return this.store.controlTokens.list().map(toToken);
  }

  revoke(name: string, actor: string): void {
    this.store.transaction(() => {
      if (!this.store.controlTokens.revoke(name, new Date(this.clock.now()).toISOString())) {
        throw new ControlError('ERR_CONTROL_NOT_FOUND', `no live token named ${name}`);
      }
      this.audit.append({ actor, action: 'control.token.revoke', target: name, details: {} });
    });
  }

  /** The live token for a presented secret; read from the store on every call, so a revocation is immediate. */
  verify(presented: string | undefined): ControlToken | undefined {
    if (!presented || presented.length > 100) return undefined;
    const r = this.store.controlTokens.findLive(sha256Hex(presented));
    return r && toToken(r);
  }

  /** Whether the named token still exists unrevoked (an open event stream re-checks this). */
  isActive(name: string): boolean {
    const r = this.store.controlTokens.get(name);
    return r !== undefined && r.revokedAt === null;
  }
}
