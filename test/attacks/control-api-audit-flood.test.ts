/**
 * Issue 19, finding 9: a flow token with `audit:write` wrote 80 × 390 KB entries in 2 s into the append-only
 * log. Now an entry's details are at most 8 KiB (413 ERR_CONTROL_AUDIT_TOO_LARGE) and each token has an entry
 * and a byte budget (429 ERR_CONTROL_AUDIT_RATE with Retry-After). Time is a ManualClock: no sleeps.
 */
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { AuditError, MAX_DETAILS_BYTES } from '../../gateway/src/audit/index.ts';
import { ManualClock } from '../../gateway/src/clock.ts';
import { AUDIT_WRITE_LIMITS } from '../../gateway/src/control/audit-rate.ts';
import { call, controlSocket } from './control-api-helpers.ts';

/** An audit body whose details are exactly `n` bytes as JSON. */
function detailsOf(n: number): string {
  const pad = n - '{"note":""}'.length;
  return JSON.stringify({ action: 'note', details: { note: 'x'.repeat(pad) } });
}

describe('attack: audit flood through the control API', () => {
  it('80 entries of 390 KB in a burst: every one refused with 413, nothing written, the database does not grow', async (t) => {
    const { socket, token, auditCount, dir } = await controlSocket(t, new ManualClock());
    const flood = token('flood', ['audit:write']);
    const before = auditCount();
    const db = join(dir, 'var', 'portcullis.db');
    const size = () => statSync(db).size + (statSync(`${db}-wal`, { throwIfNoEntry: false })?.size ?? 0);
    const sizeBefore = size();
    const big = detailsOf(390 * 1000);
    const replies = await Promise.all(
      Array.from({ length: 80 }, () => call(socket, flood, 'POST', '/v1/audit', big)),
    );
    // Past 50 calls a second the token's call rate answers first; either way nothing is written.
    for (const r of replies) {
      assert.ok(
        (r.status === 413 && r.data.error?.code === 'ERR_CONTROL_AUDIT_TOO_LARGE') ||
          (r.status === 429 && r.data.error?.code === 'ERR_CONTROL_RATE' && r.headers['retry-after'] === '1'),
        JSON.stringify(r.data),
      );
    }
    assert.ok(replies.filter((r) => r.status === 413).length >= 50);
    assert.equal(auditCount(), before);
    assert.ok(size() - sizeBefore < 64 * 1024, `the database grew by ${size() - sizeBefore} bytes`);
  });

  it('8 KiB of details is accepted, one byte more is refused (by the control API and by the audit log itself)', async (t) => {
    const { core, socket, token } = await controlSocket(t, new ManualClock());
    const w = token('w', ['audit:write']);
    assert.equal((await call(socket, w, 'POST', '/v1/audit', detailsOf(MAX_DETAILS_BYTES))).status, 201);
    const over = await call(socket, w, 'POST', '/v1/audit', detailsOf(MAX_DETAILS_BYTES + 1));
    assert.equal(over.status, 413);
    assert.equal(over.data.error?.code, 'ERR_CONTROL_AUDIT_TOO_LARGE');
    assert.throws(
      () =>
        core.audit.append({ actor: 'system', action: 'x', details: { note: 'x'.repeat(MAX_DETAILS_BYTES) } }),
      (e: unknown) => e instanceof AuditError && e.code === 'ERR_AUDIT_TOO_LARGE',
    );
  });

  it('a token writing entries faster than its budget gets 429 with Retry-After; other tokens are unaffected', async (t) => {
    const clock = new ManualClock();
    const { socket, token, auditCount } = await controlSocket(t, clock);
    const flood = token('flood', ['audit:write']);
    const other = token('other', ['audit:write']);
    const small = JSON.stringify({ action: 'tick', details: { n: 1 } });
    const before = auditCount();
    for (let i = 0; i < AUDIT_WRITE_LIMITS.entriesBurst; i++) {
      assert.equal((await call(socket, flood, 'POST', '/v1/audit', small)).status, 201, `entry ${i}`);
    }
    const refused = await call(socket, flood, 'POST', '/v1/audit', small);
    assert.equal(refused.status, 429);
    assert.equal(refused.data.error?.code, 'ERR_CONTROL_AUDIT_RATE');
    assert.equal(refused.headers['retry-after'], '1');
    assert.equal(auditCount(), before + AUDIT_WRITE_LIMITS.entriesBurst);
    assert.equal((await call(socket, other, 'POST', '/v1/audit', small)).status, 201, 'per token');
    // A second later the token has two more entries.
    clock.advance(1000);
    assert.equal((await call(socket, flood, 'POST', '/v1/audit', small)).status, 201);
    assert.equal((await call(socket, flood, 'POST', '/v1/audit', small)).status, 201);
    assert.equal((await call(socket, flood, 'POST', '/v1/audit', small)).status, 429);
  });

  it('large entries exhaust the byte budget first; Retry-After says when the next fits', async (t) => {
    const clock = new ManualClock();
    const { socket, token } = await controlSocket(t, clock);
    const w = token('w', ['audit:write']);
    const entry = detailsOf(MAX_DETAILS_BYTES);
    const fit = Math.floor(AUDIT_WRITE_LIMITS.bytesBurst / MAX_DETAILS_BYTES);
    for (let i = 0; i < fit; i++)
      assert.equal((await call(socket, w, 'POST', '/v1/audit', entry)).status, 201);
    const refused = await call(socket, w, 'POST', '/v1/audit', entry);
    assert.equal(refused.status, 429);
    assert.match(refused.data.error?.message ?? '', /bytes of audit details a second/);
    const wait = Number(refused.headers['retry-after']);
    assert.equal(wait, Math.ceil(MAX_DETAILS_BYTES / AUDIT_WRITE_LIMITS.bytesPerSecond));
    clock.advance((wait - 1) * 1000);
    assert.equal((await call(socket, w, 'POST', '/v1/audit', entry)).status, 429, 'not yet');
    clock.advance(1000);
    assert.equal((await call(socket, w, 'POST', '/v1/audit', entry)).status, 201, 'after Retry-After');
  });
});
