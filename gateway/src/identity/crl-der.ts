/**
 * A strict DER reader for X.509 CRLs (RFC 5280 §5) and the one certificate field CRL checks need (the subject).
 * @peculiar/x509 parses CRLs too, but its ASN.1 layer stops at 10,000 nodes — a CRL of some 1,400 entries with
 * reason codes — and parses each entry twice; a manufacturer's CRL after a recall is larger than that. This
 * walks the DER once, keeps raw bytes where they are compared or signed, and leaves the signature to
 * node:crypto. Any malformation throws DerError.
 */
import { DerError, oid, type Tlv, tlv } from '../dtls/x509-extensions.ts';

export { DerError };

export interface CrlExtension {
  oid: string;
  critical: boolean;
  /** The extnValue OCTET STRING's content. */
  value: Buffer;
}

export interface ParsedCrl {
  /** TBSCertList as signed (header included). */
  tbs: Buffer;
  /** The signature AlgorithmIdentifier inside TBSCertList and the outer one, as DER (they must be equal). */
  tbsSignatureAlgorithm: Buffer;
  signatureAlgorithm: Buffer;
  signatureOid: string;
  /** The signatureValue BIT STRING's bytes (no unused bits). */
  signature: Buffer;
  /** The issuer Name as DER. */
  issuer: Buffer;
  thisUpdate: Date;
  nextUpdate: Date | null;
  entries: { serialHex: string; extensions: CrlExtension[] }[];
  extensions: CrlExtension[];
}

const digits = (s: string) => /^[0-9]+$/.test(s);

/** UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ), as RFC 5280 §4.1.2.5 allows them. */
function time(b: Buffer, t: Tlv): Date {
  const s = b.subarray(t.start, t.end).toString('latin1');
  let full: string;
  if (t.tag === 0x17 && s.length === 13 && s.endsWith('Z') && digits(s.slice(0, 12))) {
    const yy = Number(s.slice(0, 2));
    full = `${yy >= 50 ? 19 : 20}${s.slice(0, 12)}`;
  } else if (t.tag === 0x18 && s.length === 15 && s.endsWith('Z') && digits(s.slice(0, 14))) {
    full = s.slice(0, 14);
  } else {
    throw new DerError('bad time');
  }
  const d = new Date(
    `${full.slice(0, 4)}-${full.slice(4, 6)}-${full.slice(6, 8)}T${full.slice(8, 10)}:${full.slice(10, 12)}:${full.slice(12, 14)}Z`,
  );
  if (Number.isNaN(d.getTime())) throw new DerError('bad time');
  return d;
}

const isTime = (tag: number | undefined) => tag === 0x17 || tag === 0x18;

/** Extensions ::= SEQUENCE OF Extension, starting at `off`. */
function extensions(b: Buffer, off: number, limit: number): { list: CrlExtension[]; end: number } {
  const seq = tlv(b, off, limit, 0x30);
  const list: CrlExtension[] = [];
  for (let p = seq.start; p < seq.end; ) {
    const ext = tlv(b, p, seq.end, 0x30);
    const id = tlv(b, ext.start, ext.end, 0x06);
    let q = id.end;
    let critical = false;
    if (b[q] === 0x01) {
      const c = tlv(b, q, ext.end, 0x01);
      if (c.end - c.start !== 1) throw new DerError('bad critical flag');
      critical = b[c.start] !== 0;
      q = c.end;
    }
    const value = tlv(b, q, ext.end, 0x04);
    if (value.end !== ext.end) throw new DerError('trailing data in extension');
    list.push({ oid: oid(b, id), critical, value: b.subarray(value.start, value.end) });
    p = ext.end;
  }
  return { list, end: seq.end };
}

/** CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue BIT STRING }. */
export function parseCrlDer(der: Buffer): ParsedCrl {
  const outer = tlv(der, 0, der.length, 0x30);
  if (outer.end !== der.length) throw new DerError('trailing data after the CRL');
  const tbsAt = outer.start;
  const tbs = tlv(der, tbsAt, outer.end, 0x30);
  let p = tbs.start;
  if (der[p] === 0x02) {
    const version = tlv(der, p, tbs.end, 0x02);
    if (version.end - version.start !== 1 || der[version.start] !== 1)
      throw new DerError('unknown CRL version');
    p = version.end;
  }
  const tbsAlg = tlv(der, p, tbs.end, 0x30);
  const tbsSignatureAlgorithm = der.subarray(p, tbsAlg.end);
  p = tbsAlg.end;
  const issuerTlv = tlv(der, p, tbs.end, 0x30);
  const issuer = der.subarray(p, issuerTlv.end);
  p = issuerTlv.end;
  const thisTlv = tlv(der, p, tbs.end);
  const thisUpdate = time(der, thisTlv);
  p = thisTlv.end;
  let nextUpdate: Date | null = null;
  if (p < tbs.end && isTime(der[p])) {
    const t = tlv(der, p, tbs.end);
    nextUpdate = time(der, t);
    p = t.end;
  }
  const entries: ParsedCrl['entries'] = [];
  if (p < tbs.end && der[p] === 0x30) {
    const revoked = tlv(der, p, tbs.end, 0x30);
    for (let q = revoked.start; q < revoked.end; ) {
      const entry = tlv(der, q, revoked.end, 0x30);
      const serial = tlv(der, entry.start, entry.end, 0x02);
      if (serial.end === serial.start) throw new DerError('empty serial number');
      const when = tlv(der, serial.end, entry.end);
      // The revocation date is not used (revoked means revoked now): its tag is checked, not its text.
      if (!isTime(when.tag)) throw new DerError('bad revocation date');
      let exts: CrlExtension[] = [];
      if (when.end < entry.end) {
        const e = extensions(der, when.end, entry.end);
        if (e.end !== entry.end) throw new DerError('trailing data in a CRL entry');
        exts = e.list;
      }
      entries.push({ serialHex: der.subarray(serial.start, serial.end).toString('hex'), extensions: exts });
      q = entry.end;
    }
    p = revoked.end;
  }
  let crlExtensions: CrlExtension[] = [];
  if (p < tbs.end && der[p] === 0xa0) {
    const wrapper = tlv(der, p, tbs.end, 0xa0);
    const e = extensions(der, wrapper.start, wrapper.end);
    if (e.end !== wrapper.end) throw new DerError('trailing data in crlExtensions');
    crlExtensions = e.list;
    p = wrapper.end;
  }
  if (p !== tbs.end) throw new DerError('trailing data in tbsCertList');
  const alg = tlv(der, tbs.end, outer.end, 0x30);
  const signatureAlgorithm = der.subarray(tbs.end, alg.end);
  const signatureOid = oid(der, tlv(der, alg.start, alg.end, 0x06));
  const sig = tlv(der, alg.end, outer.end, 0x03);
  if (sig.end !== outer.end) throw new DerError('trailing data after the signature');
  if (sig.end - sig.start < 2 || der[sig.start] !== 0) throw new DerError('bad signature bit string');
  return {
    tbs: der.subarray(tbsAt, tbs.end),
    tbsSignatureAlgorithm,
    signatureAlgorithm,
    signatureOid,
    signature: der.subarray(sig.start + 1, sig.end),
    issuer,
    thisUpdate,
    nextUpdate,
    entries,
    extensions: crlExtensions,
  };
}

/** A certificate's subject Name as DER: what a CRL's issuer must equal (RFC 5280 §7.1, binary comparison). */
export function certificateSubject(certDer: Buffer): Buffer {
  const cert = tlv(certDer, 0, certDer.length, 0x30);
  const tbs = tlv(certDer, cert.start, cert.end, 0x30);
  let p = tbs.start;
  if (certDer[p] === 0xa0) p = tlv(certDer, p, tbs.end, 0xa0).end; // version
  p = tlv(certDer, p, tbs.end, 0x02).end; // serialNumber
  p = tlv(certDer, p, tbs.end, 0x30).end; // signature
  p = tlv(certDer, p, tbs.end, 0x30).end; // issuer
  p = tlv(certDer, p, tbs.end, 0x30).end; // validity
  const subject = tlv(certDer, p, tbs.end, 0x30);
  return certDer.subarray(p, subject.end);
}
