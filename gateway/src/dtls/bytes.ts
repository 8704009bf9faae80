import { decodeError } from './errors.ts';

/**
 * A copy with a backing store of its own, for bytes a session keeps for its lifetime (PSK identity, session and
 * connection IDs). Buffer.from and allocUnsafe take small buffers from Node's shared 8 KiB pool: one kept slice
 * pins its whole slab, and 1,000 idle sessions held ~2 MiB of slabs that way.
 */
export function ownCopy(b: Uint8Array): Buffer {
  const out = Buffer.allocUnsafeSlow(b.length);
  out.set(b);
  return out;
}

/**
 * Moves several small byte strings a session keeps for its life into one allocation of their own: `visit` is
 * called twice with a `move` for each string it keeps — first to size them, then to copy each and take back
 * its view of the shared allocation — so it must visit the same strings both times. A small Buffer of its
 * own costs ~0.6 KiB resident (its Uint8Array, ArrayBuffer and backing store; measured, issue 23) for its few
 * bytes, against ~0.3 KiB for one more view of a shared one.
 */
export function packOwned(visit: (move: (b: Buffer) => Buffer) => void): void {
  let total = 0;
  visit((b) => {
    total += b.length;
    return b;
  });
  if (total === 0) return;
  const arena = Buffer.allocUnsafeSlow(total);
  let at = 0;
  visit((b) => {
    if (b.length === 0) return b;
    arena.set(b, at);
    at += b.length;
    return arena.subarray(at - b.length, at);
  });
}

/** Bounds-checked big-endian reader; every overrun is a decode error, never an exception from Buffer. */
export class Reader {
  private pos = 0;

  constructor(
    private readonly buf: Buffer,
    private readonly what: string,
  ) {}

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  get offset(): number {
    return this.pos;
  }

  private need(n: number): void {
    if (n > this.buf.length - this.pos) throw decodeError(this.what);
  }

  u8(): number {
    this.need(1);
    return this.buf[this.pos++] as number;
  }

  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  u24(): number {
    this.need(3);
    const v = this.buf.readUIntBE(this.pos, 3);
    this.pos += 3;
    return v;
  }

  u48(): number {
    this.need(6);
    const v = this.buf.readUIntBE(this.pos, 6);
    this.pos += 6;
    return v;
  }

  bytes(n: number): Buffer {
    this.need(n);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  /** Steps over `n` bytes. */
  skip(n: number): void {
    this.need(n);
    this.pos += n;
  }

  vec8(): Buffer {
    return this.bytes(this.u8());
  }

  vec16(): Buffer {
    return this.bytes(this.u16());
  }

  vec24(): Buffer {
    return this.bytes(this.u24());
  }

  rest(): Buffer {
    return this.bytes(this.remaining);
  }

  end(): void {
    if (this.remaining !== 0) throw decodeError(this.what);
  }
}

/** Big-endian writer that grows as needed. */
export class Writer {
  private buf: Buffer;
  private pos = 0;

  constructor(initial = 64) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u8(v: number): this {
    this.room(1);
    this.buf[this.pos++] = v;
    return this;
  }

  u16(v: number): this {
    this.room(2);
    this.buf.writeUInt16BE(v, this.pos);
    this.pos += 2;
    return this;
  }

  u24(v: number): this {
    this.room(3);
    this.buf.writeUIntBE(v, this.pos, 3);
    this.pos += 3;
    return this;
  }

  u48(v: number): this {
    this.room(6);
    this.buf.writeUIntBE(v, this.pos, 6);
    this.pos += 6;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.room(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  vec8(b: Uint8Array): this {
    return this.u8(b.length).bytes(b);
  }

  vec16(b: Uint8Array): this {
    return this.u16(b.length).bytes(b);
  }

  vec24(b: Uint8Array): this {
    return this.u24(b.length).bytes(b);
  }

  /** Bytes written so far. */
  get length(): number {
    return this.pos;
  }

  /** Overwrites three bytes already written (a length known only after what it covers). */
  u24At(offset: number, v: number): this {
    if (offset + 3 > this.pos) throw new RangeError('u24At beyond what was written');
    this.buf.writeUIntBE(v, offset, 3);
    return this;
  }

  /** Overwrites two bytes already written. */
  u16At(offset: number, v: number): this {
    if (offset + 2 > this.pos) throw new RangeError('u16At beyond what was written');
    this.buf.writeUInt16BE(v, offset);
    return this;
  }

  /** Drops what was written from `length` on. */
  truncate(length: number): this {
    if (length < 0 || length > this.pos) throw new RangeError('truncate beyond what was written');
    this.pos = length;
    return this;
  }

  /**
   * A view of bytes written so far, without a copy. Later writes append (into a new buffer if this one is
   * full), so the view keeps its content unless u16At/u24At rewrite its bytes or truncate drops them.
   */
  view(start: number, end: number): Buffer {
    return this.buf.subarray(start, end);
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}
