/**
 * What a duplicate of an answered CON gets when its answer was a bare code (no options, no payload — a 2.04 to
 * a reading): the answer is rebuilt from the code with the duplicate's message ID and token, which a
 * retransmission shares with the original (RFC 7252 §4.5), so it comes out byte for byte the same. Shared per
 * code: remembering such an answer allocates nothing.
 */
export interface CodeOnly {
  readonly code: string;
  /** Its place in the shared table (1-based), which a remembered entry stores instead of a pointer. */
  readonly index: number;
}

const codeOnly = new Map<string, CodeOnly>();
const byIndex: CodeOnly[] = [];
/** Codes come from the resources' handlers, a handful; a bound all the same (an index must fit 8 bits). */
const MAX_CODES = 64;

/** The shared CodeOnly answer for `code`, or null (then the packet itself is remembered). */
export function codeOnlyAnswer(code: string): CodeOnly | null {
  let c = codeOnly.get(code);
  if (!c && codeOnly.size < MAX_CODES) {
    c = { code, index: byIndex.length + 1 };
    codeOnly.set(code, c);
    byIndex.push(c);
  }
  return c ?? null;
}

/** A remembered answer: the packet as a latin1 string (one character a byte), a bare code, or none yet. */
export type Answer = string | CodeOnly | null;

/** An entry's answer field: none yet, a shared code's index (1..MAX_CODES), or "in `others`". */
const NO_ANSWER = 0;
const OTHER = 0xff;
/** Times are kept as milliseconds after `base` in 32 bits; past this (or before base) the ring is rebased. */
const SPAN = 0xffff_ffff;
const FIRST_CAPACITY = 8;

/**
 * The message IDs one peer used within the exchange lifetime, oldest first, with when each arrived and what it
 * was answered (RFC 7252 §4.5: a duplicate is answered again, its request handled once). At most `max` are
 * kept, in a ring of two 32-bit words an entry — the arrival (ms after the ring's base) and the 16-bit message ID
 * with its answer's code index — that doubles as it fills and does not shrink (a quiet session keeps what its
 * busiest minutes needed, 2 KiB at most). A sensor reading every second holds ~247 entries for the whole exchange
 * lifetime: 2.4 KB a session here, where three JavaScript arrays (an ID, an unboxed double and a pointer each)
 * took 8.8 KB, all of it in V8's old space (measured, 10,000 sessions at the bound; issue 23). Only a packet
 * answer (not a bare code) takes an object, kept in a side map by slot.
 */
export class MessageIdDedupe {
  /** [at, id << 8 | answer] per slot. */
  private ring = new Uint32Array(2 * FIRST_CAPACITY);
  private mask = FIRST_CAPACITY - 1;
  private head = 0;
  private count = 0;
  private base = Number.NaN;
  private others: Map<number, string | CodeOnly> | null = null;

  constructor(
    private readonly lifetimeMs: number,
    private readonly max: number,
  ) {}

  get size(): number {
    return this.count;
  }

  /**
   * Whether `id` (a CoAP message ID, 16 bits) was seen within the lifetime, and its answer (null while its
   * request is still being handled); undefined when it is new.
   */
  lookup(id: number, now: number): { answer: Answer } | undefined {
    const slot = this.find(id);
    if (slot < 0) return undefined;
    // Newest first: if the latest use of the ID has expired, any older one has too.
    if (this.age(slot, now) >= this.lifetimeMs) return undefined;
    return { answer: this.answerAt(slot) };
  }

  /** Remembers `id` as seen at `now`, without an answer yet; forgets what is expired or over the bound. */
  add(id: number, now: number): void {
    if (Number.isNaN(this.base)) this.base = now;
    const rel = now - this.base;
    if (rel < 0 || rel > SPAN) this.rebase(now);
    while (this.count > 0 && (this.count >= this.max || this.age(this.head, now) >= this.lifetimeMs)) {
      this.clear(this.head);
      this.head = (this.head + 1) & this.mask;
      this.count--;
    }
    if (this.count > this.mask) this.grow();
    const slot = (this.head + this.count) & this.mask;
    this.ring[2 * slot] = now - this.base;
    this.ring[2 * slot + 1] = ((id & 0xffff) << 8) | NO_ANSWER;
    this.count++;
  }

  /** The answer given to `id` (its latest use); nothing if it was forgotten meanwhile. */
  answer(id: number, answer: Answer): void {
    const slot = this.find(id);
    if (slot < 0) return;
    this.clear(slot);
    let code = NO_ANSWER;
    if (answer !== null && typeof answer !== 'string' && byIndex[answer.index - 1] === answer)
      code = answer.index;
    else if (answer !== null) {
      code = OTHER;
      if (!this.others) this.others = new Map();
      this.others.set(slot, answer);
    }
    // clear() left the answer field at NO_ANSWER (0).
    this.ring[2 * slot + 1] = (this.ring[2 * slot + 1] as number) | code;
  }

  /** The slot of the newest entry for `id`, or -1. */
  private find(id: number): number {
    for (let k = this.count - 1; k >= 0; k--) {
      const slot = (this.head + k) & this.mask;
      if ((this.ring[2 * slot + 1] as number) >>> 8 === (id & 0xffff)) return slot;
    }
    return -1;
  }

  private age(slot: number, now: number): number {
    return now - this.base - (this.ring[2 * slot] as number);
  }

  private answerAt(slot: number): Answer {
    const code = (this.ring[2 * slot + 1] as number) & 0xff;
    if (code === NO_ANSWER) return null;
    if (code === OTHER) return this.others?.get(slot) ?? null;
    return byIndex[code - 1] ?? null;
  }

  private clear(slot: number): void {
    if (((this.ring[2 * slot + 1] as number) & 0xff) === OTHER) this.others?.delete(slot);
    this.ring[2 * slot + 1] = (((this.ring[2 * slot + 1] as number) >>> 8) << 8) | NO_ANSWER;
  }

  /** Doubles the ring, oldest entry first at slot 0 (packet answers move with their slots). */
  private grow(): void {
    const cap = this.mask + 1;
    const next = new Uint32Array(4 * cap);
    const moved = this.others && new Map<number, string | CodeOnly>();
    for (let k = 0; k < this.count; k++) {
      const slot = (this.head + k) & this.mask;
      next[2 * k] = this.ring[2 * slot] as number;
      next[2 * k + 1] = this.ring[2 * slot + 1] as number;
      const other = this.others?.get(slot);
      if (moved && other !== undefined) moved.set(k, other);
    }
    this.ring = next;
    this.mask = 2 * cap - 1;
    this.head = 0;
    this.others = moved;
  }

  /**
   * Moves the base to `now - lifetime` when `now` no longer fits 32 bits after it (a session older than 49 days)
   * or falls before it (the clock was set back). An entry older than the new base was expired and stays
   * expired (clamped to the base, its age is the lifetime); one from the future stays fresh.
   */
  private rebase(now: number): void {
    const base = now - this.lifetimeMs;
    for (let k = 0; k < this.count; k++) {
      const slot = (this.head + k) & this.mask;
      const at = this.base + (this.ring[2 * slot] as number);
      this.ring[2 * slot] = Math.min(SPAN, Math.max(0, at - base));
    }
    this.base = base;
  }
}
