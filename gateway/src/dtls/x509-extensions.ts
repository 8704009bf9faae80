/**
 * The X.509 v3 extensions a client-certificate check acts on, read from DER that node:crypto already parsed.
 * node:crypto does not expose critical flags, pathLenConstraint or key usage bits; @peculiar/x509 does, but
 * costs ~1 ms per certificate here (0.4 ms in its ASN.1 layer alone) — more than node's parse and signature
 * check together — on the handshake path. This reader walks only TBSCertificate's extensions, strictly: any
 * malformation is an error, which the caller turns into a refusal.
 */

export interface CertificateExtensions {
  /** Dotted OIDs of the extensions marked critical. */
  critical: string[];
  /** basicConstraints pathLenConstraint, if given. */
  pathLength: number | undefined;
  /** keyUsage, undefined without the extension (then every usage is allowed). */
  keyUsage: { digitalSignature: boolean; keyCertSign: boolean; cRLSign: boolean } | undefined;
  /** extendedKeyUsage purposes as dotted OIDs, undefined without the extension. */
  extKeyUsage: string[] | undefined;
}

export class DerError extends Error {}

export interface Tlv {
  tag: number;
  start: number;
  end: number;
}

/** One DER TLV at `off`, ending at or before `limit`; with `tag`, it must be that tag. */
export function tlv(b: Buffer, off: number, limit: number, tag?: number): Tlv {
  if (off + 2 > limit) throw new DerError('truncated');
  const t = b[off] as number;
  if ((t & 0x1f) === 0x1f) throw new DerError('high tag number');
  if (tag !== undefined && t !== tag) throw new DerError(`expected tag ${tag}, got ${t}`);
  let len = b[off + 1] as number;
  let p = off + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 3) throw new DerError('bad length');
    if (p + n > limit) throw new DerError('truncated');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (b[p++] as number);
  }
  const end = p + len;
  if (end > limit) throw new DerError('truncated');
  return { tag: t, start: p, end };
}

/** An OBJECT IDENTIFIER's content as a dotted string. */
export function oid(b: Buffer, t: Tlv): string {
  if (t.end === t.start) throw new DerError('empty OID');
  const parts: number[] = [];
  let v = 0;
  for (let i = t.start; i < t.end; i++) {
    const byte = b[i] as number;
    v = v * 128 + (byte & 0x7f);
    if (v > Number.MAX_SAFE_INTEGER / 128) throw new DerError('OID arc too large');
    if ((byte & 0x80) === 0) {
      if (parts.length === 0) parts.push(v < 80 ? Math.floor(v / 40) : 2, v < 80 ? v % 40 : v - 80);
      else parts.push(v);
      v = 0;
    }
  }
  if ((b[t.end - 1] as number) & 0x80) throw new DerError('truncated OID');
  return parts.join('.');
}

const BASIC_CONSTRAINTS = '2.5.29.19';
const KEY_USAGE = '2.5.29.15';
const EXT_KEY_USAGE = '2.5.29.37';

function basicConstraints(b: Buffer, v: Tlv): number | undefined {
  const seq = tlv(b, v.start, v.end, 0x30);
  let p = seq.start;
  let pathLength: number | undefined;
  if (p < seq.end && b[p] === 0x01) p = tlv(b, p, seq.end, 0x01).end;
  if (p < seq.end) {
    const n = tlv(b, p, seq.end, 0x02);
    const len = n.end - n.start;
    if (len < 1 || len > 4 || ((b[n.start] as number) & 0x80) !== 0) throw new DerError('bad pathLen');
    pathLength = 0;
    for (let i = n.start; i < n.end; i++) pathLength = pathLength * 256 + (b[i] as number);
    p = n.end;
  }
  if (p !== seq.end) throw new DerError('trailing data in basicConstraints');
  return pathLength;
}

function keyUsage(b: Buffer, v: Tlv): CertificateExtensions['keyUsage'] {
  const bits = tlv(b, v.start, v.end, 0x03);
  if (bits.end - bits.start < 1) throw new DerError('empty keyUsage');
  // Byte 0: unused bits; then bit 0 (digitalSignature) is the first byte's high bit, bit 5 keyCertSign, 6 cRLSign.
  const first = bits.end - bits.start > 1 ? (b[bits.start + 1] as number) : 0;
  return {
    digitalSignature: (first & 0x80) !== 0,
    keyCertSign: (first & 0x04) !== 0,
    cRLSign: (first & 0x02) !== 0,
  };
}

function extKeyUsage(b: Buffer, v: Tlv): string[] {
  const seq = tlv(b, v.start, v.end, 0x30);
  const out: string[] = [];
  for (let p = seq.start; p < seq.end; ) {
    const o = tlv(b, p, seq.end, 0x06);
    out.push(oid(b, o));
    p = o.end;
  }
  if (out.length === 0) throw new DerError('empty extKeyUsage');
  return out;
}

/** The extensions of a DER certificate; throws DerError on malformed DER or a repeated extension. */
export function readExtensions(der: Buffer): CertificateExtensions {
  const out: CertificateExtensions = {
    critical: [],
    pathLength: undefined,
    keyUsage: undefined,
    extKeyUsage: undefined,
  };
  const cert = tlv(der, 0, der.length, 0x30);
  const tbs = tlv(der, cert.start, cert.end, 0x30);
  let exts: Tlv | undefined;
  for (let p = tbs.start; p < tbs.end; ) {
    const field = tlv(der, p, tbs.end);
    if (field.tag === 0xa3) exts = tlv(der, field.start, field.end, 0x30);
    p = field.end;
  }
  if (!exts) return out;
  const seen = new Set<string>();
  for (let p = exts.start; p < exts.end; ) {
    const ext = tlv(der, p, exts.end, 0x30);
    const id = tlv(der, ext.start, ext.end, 0x06);
    const name = oid(der, id);
    if (seen.has(name)) throw new DerError(`extension ${name} repeated`);
    seen.add(name);
    let q = id.end;
    let critical = false;
    if (der[q] === 0x01) {
      const c = tlv(der, q, ext.end, 0x01);
      if (c.end - c.start !== 1) throw new DerError('bad critical flag');
      critical = der[c.start] !== 0;
      q = c.end;
    }
    const value = tlv(der, q, ext.end, 0x04);
    if (value.end !== ext.end) throw new DerError('trailing data in extension');
    if (critical) out.critical.push(name);
    if (name === BASIC_CONSTRAINTS) out.pathLength = basicConstraints(der, value);
    else if (name === KEY_USAGE) out.keyUsage = keyUsage(der, value);
    else if (name === EXT_KEY_USAGE) out.extKeyUsage = extKeyUsage(der, value);
    p = ext.end;
  }
  return out;
}
