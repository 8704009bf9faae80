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

export function explicitNonce(epoch: number, seq: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeUInt16BE(epoch, 0);
  b.writeUIntBE(seq, 2, 6);
  return b;
}

/** RFC 5246 §6.2.3.3 additional data: seq_num || type || version || length. */
export function plainAad(epoch: number, seq: number, type: number, version: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(13);
  b.writeUInt16BE(epoch, 0);
  b.writeUIntBE(seq, 2, 6);
  b[8] = type;
  b.writeUInt16BE(version, 9);
  b.writeUInt16BE(length, 11);
  return b;
}

/** RFC 9146 §5 additional data for a tls12_cid record. */
export function cidAad(
  epoch: number,
  seq: number,
  version: number,
  cid: Buffer,
  innerLength: number,
): Buffer {
  const b = Buffer.allocUnsafe(23 + cid.length);
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
  b[0] = type;
  b.writeUInt16BE(version, 1);
  b.writeUInt16BE(epoch, 3);
  b.writeUIntBE(seq, 5, 6);
  if (cid) cid.copy(b, 11);
  b.writeUInt16BE(fragment.length, 11 + cidLen);
  fragment.copy(b, 13 + cidLen);
  return b;
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
  const nonce = explicitNonce(epoch, seq);
  if (cid && cid.length > 0) {
    const inner = Buffer.concat([plaintext, Buffer.from([type])]);
    const frag = key.seal(nonce, cidAad(epoch, seq, version, cid, inner.length), inner);
    return encodeRecord(ContentType.tls12Cid, version, epoch, seq, frag, cid);
  }
  // One allocation for the whole record: header, then the AEAD output written in place.
  const length = key.overhead + plaintext.length;
  const b = Buffer.allocUnsafe(RECORD_HEADER_LENGTH + length);
  b[0] = type;
  b.writeUInt16BE(version, 1);
  b.writeUInt16BE(epoch, 3);
  b.writeUIntBE(seq, 5, 6);
  b.writeUInt16BE(length, 11);
  key.sealInto(
    nonce,
    plainAad(epoch, seq, type, version, plaintext.length),
    plaintext,
    b,
    RECORD_HEADER_LENGTH,
  );
  return b;
}

/** Returns the record's real type and plaintext, or null when it does not authenticate. */
export function openRecord(key: AeadKey, rec: DtlsRecord): { type: number; data: Buffer } | null {
  const length = key.plaintextLength(rec.fragment.length);
  if (length < 0) return null;
  if (rec.cid) {
    const inner = key.open(rec.fragment, cidAad(rec.epoch, rec.seq, rec.version, rec.cid, length));
    if (!inner) return null;
    // Strip zero padding; the last non-zero byte is the real content type.
    let end = inner.length - 1;
    while (end >= 0 && inner[end] === 0) end--;
    if (end < 0) return null;
    return { type: inner[end] as number, data: inner.subarray(0, end) };
  }
  const data = key.open(rec.fragment, plainAad(rec.epoch, rec.seq, rec.type, rec.version, length));
  return data ? { type: rec.type, data } : null;
}
