import type { AeadKey } from './aead.ts';
import { ContentType, MAX_CIPHERTEXT, RECORD_HEADER_LENGTH } from './constants.ts';

export interface DtlsRecord {
  type: number;
  version: number;
  epoch: number;
  seq: number;
  /** The Connection ID carried by an RFC 9146 record, else null. */
  cid: Buffer | null;
  fragment: Buffer;
}

/**
 * Splits a datagram into records. A malformed record ends parsing (the rest of the datagram cannot be framed),
 * but the well-formed records before it are still returned, as RFC 6347 §4.1.2.7 allows.
 * `cidLength` is the fixed length of the Connection IDs this endpoint issues (0: none).
 */
export function parseRecords(datagram: Buffer, cidLength: number): DtlsRecord[] {
  const out: DtlsRecord[] = [];
  let off = 0;
  while (off < datagram.length) {
    const type = datagram[off] as number;
    const isCid = type === ContentType.tls12Cid;
    if (isCid && cidLength === 0) break;
    const headerLen = RECORD_HEADER_LENGTH + (isCid ? cidLength : 0);
    if (datagram.length - off < headerLen) break;
    const version = datagram.readUInt16BE(off + 1);
    if (version >> 8 !== 0xfe) break;
    const epoch = datagram.readUInt16BE(off + 3);
    const seq = datagram.readUIntBE(off + 5, 6);
    const cid = isCid ? datagram.subarray(off + 11, off + 11 + cidLength) : null;
    const length = datagram.readUInt16BE(off + headerLen - 2);
    if (length > MAX_CIPHERTEXT || datagram.length - off - headerLen < length) break;
    out.push({
      type,
      version,
      epoch,
      seq,
      cid,
      fragment: datagram.subarray(off + headerLen, off + headerLen + length),
    });
    off += headerLen + length;
  }
  return out;
}

// Every record gets its own nonce and AAD: two small allocations from Buffer's pool. A module-wide scratch
// buffer would save them only by making "the AEAD consumes it before returning" a rule for every caller.
export function explicitNonce(epoch: number, seq: number): Buffer {
  return writeExplicitNonce(Buffer.allocUnsafe(8), epoch, seq);
}

/** RFC 5246 §6.2.3.3 additional data: seq_num || type || version || length. */
export function plainAad(epoch: number, seq: number, type: number, version: number, length: number): Buffer {
  return writePlainAad(Buffer.allocUnsafe(13), epoch, seq, type, version, length);
}

/** RFC 9146 §5 additional data for a tls12_cid record. */
export function cidAad(
  epoch: number,
  seq: number,
  version: number,
  cid: Buffer,
  innerLength: number,
): Buffer {
  return writeCidAad(Buffer.allocUnsafe(23 + cid.length), epoch, seq, version, cid, innerLength);
}

function writeExplicitNonce(b: Buffer, epoch: number, seq: number): Buffer {
  b.writeUInt16BE(epoch, 0);
  b.writeUIntBE(seq, 2, 6);
  return b;
}

function writePlainAad(
  b: Buffer,
  epoch: number,
  seq: number,
  type: number,
  version: number,
  length: number,
): Buffer {
  b.writeUInt16BE(epoch, 0);
  b.writeUIntBE(seq, 2, 6);
  b[8] = type;
  b.writeUInt16BE(version, 9);
  b.writeUInt16BE(length, 11);
  return b;
}

function writeCidAad(
  b: Buffer,
  epoch: number,
  seq: number,
  version: number,
  cid: Buffer,
  innerLength: number,
): Buffer {
  b.fill(0xff, 0, 8);
  b[8] = ContentType.tls12Cid;
  b[9] = cid.length;
  b[10] = ContentType.tls12Cid;
  b.writeUInt16BE(version, 11);
  b.writeUInt16BE(epoch, 13);
  b.writeUIntBE(seq, 15, 6);
  cid.copy(b, 21);
  b.writeUInt16BE(innerLength, 21 + cid.length);
  return b;
}

export function encodeRecord(
  type: number,
  version: number,
  epoch: number,
  seq: number,
  fragment: Buffer,
  cid: Buffer | null = null,
): Buffer {
  const cidLen = cid ? cid.length : 0;
  const b = Buffer.allocUnsafe(RECORD_HEADER_LENGTH + cidLen + fragment.length);
  writeHeader(b, 0, type, version, epoch, seq, cid, fragment.length);
  fragment.copy(b, RECORD_HEADER_LENGTH + cidLen);
  return b;
}

/** Writes an unprotected (epoch 0) record at `offset`; returns its length. */
export function encodeRecordInto(
  type: number,
  version: number,
  seq: number,
  fragment: Buffer,
  out: Buffer,
  offset: number,
): number {
  writeHeader(out, offset, type, version, 0, seq, null, fragment.length);
  fragment.copy(out, offset + RECORD_HEADER_LENGTH);
  return RECORD_HEADER_LENGTH + fragment.length;
}

function writeHeader(
  b: Buffer,
  at: number,
  type: number,
  version: number,
  epoch: number,
  seq: number,
  cid: Buffer | null,
  length: number,
): void {
  b[at] = type;
  b.writeUInt16BE(version, at + 1);
  b.writeUInt16BE(epoch, at + 3);
  b.writeUIntBE(seq, at + 5, 6);
  const cidLen = cid ? cid.length : 0;
  if (cid) cid.copy(b, at + 11);
  b.writeUInt16BE(length, at + 11 + cidLen);
}

/** The length of the record sealRecord makes of `plaintextLength` bytes. */
export function sealedRecordLength(key: AeadKey, plaintextLength: number, cid: Buffer | null): number {
  // With a peer CID the header carries it and the real content type rides inside (one more byte).
  const cidExtra = cid && cid.length > 0 ? cid.length + 1 : 0;
  return RECORD_HEADER_LENGTH + key.overhead + plaintextLength + cidExtra;
}

/** Protects one record. With a peer CID, the real type moves inside (DTLSInnerPlaintext, no padding). */
export function sealRecord(
  key: AeadKey,
  type: number,
  version: number,
  epoch: number,
  seq: number,
  plaintext: Buffer,
  cid: Buffer | null,
): Buffer {
  const b = Buffer.allocUnsafe(sealedRecordLength(key, plaintext.length, cid));
  sealRecordInto(key, type, version, epoch, seq, plaintext, cid, b, 0);
  return b;
}

/** sealRecord, written at `offset` of `out` (room for sealedRecordLength bytes); returns the length. */
export function sealRecordInto(
  key: AeadKey,
  type: number,
  version: number,
  epoch: number,
  seq: number,
  plaintext: Buffer,
  cid: Buffer | null,
  out: Buffer,
  offset: number,
): number {
  const nonce = explicitNonce(epoch, seq);
  if (cid && cid.length > 0) {
    const inner = Buffer.allocUnsafe(plaintext.length + 1);
    plaintext.copy(inner, 0);
    inner[plaintext.length] = type;
    const length = key.overhead + inner.length;
    writeHeader(out, offset, ContentType.tls12Cid, version, epoch, seq, cid, length);
    const aad = cidAad(epoch, seq, version, cid, inner.length);
    key.sealInto(nonce, aad, inner, out, offset + RECORD_HEADER_LENGTH + cid.length);
    return RECORD_HEADER_LENGTH + cid.length + length;
  }
  const length = key.overhead + plaintext.length;
  writeHeader(out, offset, type, version, epoch, seq, null, length);
  key.sealInto(
    nonce,
    plainAad(epoch, seq, type, version, plaintext.length),
    plaintext,
    out,
    offset + RECORD_HEADER_LENGTH,
  );
  return RECORD_HEADER_LENGTH + length;
}

/** Returns the record's real type and plaintext, or null when it does not authenticate. */
export function openRecord(key: AeadKey, rec: DtlsRecord): { type: number; data: Buffer } | null {
  const length = key.plaintextLength(rec.fragment.length);
  if (length < 0) return null;
  if (rec.cid) {
    const aad = cidAad(rec.epoch, rec.seq, rec.version, rec.cid, length);
    const inner = key.open(rec.fragment, aad, explicitNonce(rec.epoch, rec.seq));
    if (!inner) return null;
    // Strip zero padding; the last non-zero byte is the real content type.
    let end = inner.length - 1;
    while (end >= 0 && inner[end] === 0) end--;
    if (end < 0) return null;
    return { type: inner[end] as number, data: inner.subarray(0, end) };
  }
  const data = key.open(
    rec.fragment,
    plainAad(rec.epoch, rec.seq, rec.type, rec.version, length),
    explicitNonce(rec.epoch, rec.seq),
  );
  return data ? { type: rec.type, data } : null;
}
