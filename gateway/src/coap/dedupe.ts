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
/** Codes come from the resources' handlers, a handful; a bound all the same (an index must fit 6 bits). */
const MAX_CODES = 62;

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
const OTHER = 0x3f;
/**
 * Arrival times are kept in ticks of about a 512th of the lifetime, as 10 bits after the ring's base tick; when
 * a tick no longer fits the ring is rebased.
 */
const TICKS_PER_LIFETIME = 512;
const TICK_SPAN = 0x3ff;
const FIRST_CAPACITY = 8;

/**
 * The message IDs one peer used within the exchange lifetime, oldest first, with when each arrived and what it
 * was answered (RFC 7252 §4.5: a duplicate is answered again, its request handled once). At most `max` are
 * kept, in a ring of one 32-bit word an entry — the 16-bit message ID, its arrival tick and its answer's code
 * index — that doubles as it fills and does not shrink (a quiet session keeps what its busiest minutes needed,
 * 1 KiB at most). A sensor reading every second holds ~247 entries for the whole exchange lifetime: 1.3 KB a
 * session here, where two words an entry (a millisecond time of its own) took 2.4 KB and three JavaScript arrays
 * 8.8 KB, all of it in V8's old space (measured, 10,000 sessions at the bound; issue 23). Only a packet answer
 * (not a bare code) takes an object, kept in a side map by slot.
 *
 * A tick is ~0.5 s at CoAP's 247 s: an ID is remembered for at least the lifetime and forgotten within two
 * ticks after it (the arrival is rounded down, the expiry test up), so a duplicate is never handled twice on a
 * clock that does not step (see tick()); a peer reusing an ID within that second after the lifetime gets the
 * first answer again.
 */
export class MessageIdDedupe {
  /** id << 16 | tick << 6 | answer, per slot. */
  private ring = new Uint32Array(FIRST_CAPACITY);
  private mask = FIRST_CAPACITY - 1;
  private head = 0;
  private count = 0;
  /** The tick that an entry's 10 bits count from (set again whenever the ring is empty). */
  private base = 0;
  private others: Map<number, string | CodeOnly> | null = null;
  private readonly tickMs: number;
  /** The lifetime in ticks, rounded up: an entry this many ticks old is still fresh, one more is expired. */
  private readonly lifetimeTicks: number;

  constructor(
    lifetimeMs: number,
    private readonly max: number,
  ) {
    this.tickMs = Math.max(1, Math.ceil(lifetimeMs / TICKS_PER_LIFETIME));
    this.lifetimeTicks = Math.ceil(lifetimeMs / this.tickMs);
  }

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
    if (this.expired(slot, this.tick(now))) return undefined;
    return { answer: this.answerAt(slot) };
  }

  /** Remembers `id` as seen at `now`, without an answer yet; forgets what is expired or over the bound. */
  add(id: number, now: number): void {
    const tick = this.tick(now);
    if (this.count === 0) this.base = tick;
    else if (tick - this.base > TICK_SPAN) this.rebase(tick);
    while (this.count > 0 && (this.count >= this.max || this.expired(this.head, tick))) {
      this.clear(this.head);
      this.head = (this.head + 1) & this.mask;
      this.count--;
    }
    if (this.count > this.mask) this.grow();
    const slot = (this.head + this.count) & this.mask;
    this.ring[slot] = (((id & 0xffff) << 16) | ((tick - this.base) << 6) | NO_ANSWER) >>> 0;
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
    this.ring[slot] = ((this.ring[slot] as number) | code) >>> 0;
  }

  /**
   * `now` in ticks, never before the newest entry's: a clock set back stops the ring's time until it catches
   * up, so what it holds is kept longer, not shorter, and is as old as it was if the clock is set forward
   * again. What arrives meanwhile is stamped with the stopped time, and would look older by the time the clock
   * was behind if it were then set forward: no stamp holds both sides of a step that is undone. The endpoint's
   * clock is monotonic, which does neither.
   */
  private tick(now: number): number {
    const tick = Math.floor(now / this.tickMs);
    if (this.count === 0) return tick;
    return Math.max(tick, this.arrival((this.head + this.count - 1) & this.mask));
  }

  /** The tick the entry in `slot` arrived at. */
  private arrival(slot: number): number {
    return this.base + (((this.ring[slot] as number) >>> 6) & TICK_SPAN);
  }

  /** The slot of the newest entry for `id`, or -1. */
  private find(id: number): number {
    for (let k = this.count - 1; k >= 0; k--) {
      const slot = (this.head + k) & this.mask;
      if ((this.ring[slot] as number) >>> 16 === (id & 0xffff)) return slot;
    }
    return -1;
  }

  private expired(slot: number, tick: number): boolean {
    return tick - this.arrival(slot) > this.lifetimeTicks;
  }

  private answerAt(slot: number): Answer {
    const code = (this.ring[slot] as number) & OTHER;
    if (code === NO_ANSWER) return null;
    if (code === OTHER) return this.others?.get(slot) ?? null;
    return byIndex[code - 1] ?? null;
  }

  private clear(slot: number): void {
    const word = this.ring[slot] as number;
    if ((word & OTHER) === OTHER) this.others?.delete(slot);
    this.ring[slot] = (word & ~OTHER) >>> 0;
  }

  /** Doubles the ring, oldest entry first at slot 0 (packet answers move with their slots). */
  private grow(): void {
    const cap = this.mask + 1;
    const next = new Uint32Array(2 * cap);
    const moved = this.others && new Map<number, string | CodeOnly>();
    for (let k = 0; k < this.count; k++) {
      const slot = (this.head + k) & this.mask;
      next[k] = this.ring[slot] as number;
      const other = this.others?.get(slot);
      if (moved && other !== undefined) moved.set(k, other);
    }
    this.ring = next;
    this.mask = 2 * cap - 1;
    this.head = 0;
    this.others = moved;
  }

  /**
   * Moves the base to one tick before the lifetime ends at `tick`, when `tick` no longer fits 10 bits after it
   * (about once a lifetime at CoAP's). No entry is newer than `tick` (see tick()); one older than the new base
   * was expired and stays expired (clamped to the base, it is a tick past the lifetime).
   */
  private rebase(tick: number): void {
    const base = tick - this.lifetimeTicks - 1;
    for (let k = 0; k < this.count; k++) {
      const slot = (this.head + k) & this.mask;
      const rel = Math.max(0, this.arrival(slot) - base);
      this.ring[slot] = (((this.ring[slot] as number) & ~(TICK_SPAN << 6)) | (rel << 6)) >>> 0;
    }
    this.base = base;
  }
}
