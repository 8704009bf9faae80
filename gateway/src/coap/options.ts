/** CoAP option helpers (RFC 7252 §3.2 uint encoding, RFC 7959 §2.2 block options). */

export function encodeUint(v: number): Buffer {
  if (v === 0) return Buffer.alloc(0);
  const bytes: number[] = [];
  for (let x = v; x > 0; x = Math.floor(x / 256)) bytes.unshift(x % 256);
  return Buffer.from(bytes);
}

export function decodeUint(b: Buffer): number {
  let v = 0;
  for (const byte of b) v = v * 256 + byte;
  return v;
}

export interface BlockOption {
  num: number;
  more: boolean;
  /** Block size exponent: size = 2^(szx + 4); 7 is reserved (BERT over TCP only). */
  szx: number;
}

export function blockSize(szx: number): number {
  return 1 << (szx + 4);
}

/** Returns null for a malformed or reserved block option. */
export function decodeBlock(b: Buffer): BlockOption | null {
  if (b.length > 3) return null;
  const v = decodeUint(b);
  const szx = v & 7;
  if (szx === 7) return null;
  return { num: v >>> 4, more: (v & 8) !== 0, szx };
}

export function encodeBlock(o: BlockOption): Buffer {
  return encodeUint(o.num * 16 + (o.more ? 8 : 0) + o.szx);
}
