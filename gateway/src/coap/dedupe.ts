/**
 * What a duplicate of an answered CON gets when its answer was a bare code (no options, no payload — a 2.04 to
 * a reading): the answer is rebuilt from the code with the duplicate's message ID and token, which a
 * retransmission shares with the original (RFC 7252 §4.5), so it comes out byte for byte the same. Shared per
 * code: remembering such an answer allocates nothing.
 */
export interface CodeOnly {
  readonly code: string;
}

const codeOnly = new Map<string, CodeOnly>();
/** Codes come from the resources' handlers, a handful; a bound all the same. */
const MAX_CODES = 64;

/** The shared CodeOnly answer for `code`, or null (then the packet itself is remembered). */
export function codeOnlyAnswer(code: string): CodeOnly | null {
  let c = codeOnly.get(code);
  if (!c && codeOnly.size < MAX_CODES) {
    c = { code };
    codeOnly.set(code, c);
  }
  return c ?? null;
}

/** A remembered answer: the packet as a latin1 string (one character a byte), a bare code, or none yet. */
export type Answer = string | CodeOnly | null;

/**
 * The message IDs one peer used within the exchange lifetime, oldest first, with when each arrived and what it
 * was answered (RFC 7252 §4.5: a duplicate is answered again, its request handled once). At most `max` are
 * kept. Three flat arrays, not a Map of entry objects: an entry is ~16 bytes (an ID, an unboxed time, a
 * pointer to its answer) where a Map slot, an entry object, a boxed time and the answer's own Buffer were
 * ~0.6 KiB — and under traffic a busy session holds `max` of them for minutes, promoted to V8's old space.
 */
export class MessageIdDedupe {
  private ids: number[] = [];
  private times: number[] = [];
  private answers: Answer[] = [];
  private head = 0;

  constructor(
    private readonly lifetimeMs: number,
    private readonly max: number,
  ) {}

  get size(): number {
    return this.ids.length - this.head;
  }

  /**
   * Whether `id` was seen within the lifetime, and its answer (null while its request is still being handled);
   * undefined when it is new.
   */
  lookup(id: number, now: number): { answer: Answer } | undefined {
    // Newest first: if the latest use of the ID has expired, any older one has too.
    for (let i = this.ids.length - 1; i >= this.head; i--) {
      if (this.ids[i] === id) {
        return now - (this.times[i] as number) < this.lifetimeMs
          ? { answer: this.answers[i] as Answer }
          : undefined;
      }
    }
    return undefined;
  }

  /** Remembers `id` as seen at `now`, without an answer yet; forgets what is expired or over the bound. */
  add(id: number, now: number): void {
    while (
      this.head < this.ids.length &&
      (this.size >= this.max || now - (this.times[this.head] as number) >= this.lifetimeMs)
    ) {
      this.answers[this.head] = null;
      this.head++;
    }
    if (this.head > 0 && (this.head === this.ids.length || this.head >= 64)) {
      this.ids = this.ids.slice(this.head);
      this.times = this.times.slice(this.head);
      this.answers = this.answers.slice(this.head);
      this.head = 0;
    }
    this.ids.push(id);
    this.times.push(now);
    this.answers.push(null);
  }

  /** The answer given to `id` (its latest use); nothing if it was forgotten meanwhile. */
  answer(id: number, answer: Answer): void {
    for (let i = this.ids.length - 1; i >= this.head; i--) {
      if (this.ids[i] === id) {
        this.answers[i] = answer;
        return;
      }
    }
  }
}
