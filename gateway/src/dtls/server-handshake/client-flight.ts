import { type KeyObject, randomBytes, verify } from 'node:crypto';
import { Reader, Writer } from '../bytes.ts';
import {
  certificateFingerprint,
  parseRawPublicKey,
  spkiFingerprint,
  verifyCertificateChain,
} from '../certificates.ts';
import { AlertDescription, CertificateType, ECDSA_SECP256R1_SHA256, HandshakeType } from '../constants.ts';
import type { EphemeralKey } from '../ecdhe.ts';
import { DtlsError, decodeError } from '../errors.ts';
import { encodeHandshake, type HandshakeMessage } from '../handshake.ts';
import type { ResolvedOptions } from '../options.ts';
import { masterSecret } from '../prf.ts';
import { usesPsk } from '../suites.ts';
import type { PeerCredential } from '../types.ts';
import { installKeys } from './key-schedule.ts';
import type { HandshakeContext, HandshakeState } from './state.ts';

const MAX_PSK_IDENTITY = 256;

function fail(code: string, message: string, alert: number): DtlsError {
  return new DtlsError(code, message, alert);
}

/**
 * One message of the client's flight, in order: [Certificate,] ClientKeyExchange, [CertificateVerify,]
 * Finished. Each but the Finished is handled and added to the transcript here; the Finished (which completes
 * the handshake) is returned, as it was encoded, for the connection to check and answer.
 */
export function readClientMessage(
  ctx: HandshakeContext,
  hs: HandshakeState,
  m: HandshakeMessage,
): Buffer | null {
  const expected = hs.expect.shift();
  if (m.type !== expected) {
    throw fail(
      'ERR_DTLS_UNEXPECTED_MESSAGE',
      `unexpected handshake message ${m.type}`,
      AlertDescription.unexpectedMessage,
    );
  }
  const encoded = m.encoded ?? encodeHandshake(m.type, m.seq, m.body);
  switch (m.type) {
    case HandshakeType.certificate:
      onClientCertificate(ctx, hs, m.body);
      break;
    case HandshakeType.clientKeyExchange:
      // The master secret's session hash (RFC 7627) covers the ClientKeyExchange itself.
      hs.transcript.bytes(encoded);
      onClientKeyExchange(ctx, hs, m.body);
      return null;
    case HandshakeType.certificateVerify:
      onCertificateVerify(hs, m.body);
      break;
    case HandshakeType.finished:
      return encoded;
  }
  hs.transcript.bytes(encoded);
  return null;
}

/** The client's chain (verified to a trust anchor) or raw public key, then the verifyPeer policy. */
function onClientCertificate(ctx: HandshakeContext, hs: HandshakeState, body: Buffer): void {
  const o = ctx.opts;
  const r = new Reader(body, 'Certificate');
  const list = r.vec24();
  r.end();
  let credential: PeerCredential;
  let key: KeyObject;
  if (hs.clientCertType === CertificateType.rawPublicKey) {
    if (list.length === 0) {
      throw fail('ERR_DTLS_NO_CERTIFICATE', 'peer sent no raw public key', AlertDescription.handshakeFailure);
    }
    ctx.params.claimedCertificate = { kind: 'rpk', fingerprint: spkiFingerprint(list) };
    key = parseRawPublicKey(list);
    credential = { kind: 'rpk', spki: Buffer.from(list), fingerprint: spkiFingerprint(list) };
  } else {
    const lr = new Reader(list, 'Certificate list');
    const ders: Buffer[] = [];
    while (lr.remaining > 0) ders.push(Buffer.from(lr.vec24()));
    // SHA-256 of the leaf's DER: the same hex as certificateFingerprint once it parses.
    if (ders[0]) ctx.params.claimedCertificate = { kind: 'x509', fingerprint: spkiFingerprint(ders[0]) };
    const chain = verifyCertificateChain(ders, o.trustAnchors, new Date(o.now()), o.revocation);
    ctx.params.chainDer = ders;
    const leaf = chain[0] as (typeof chain)[0];
    key = leaf.publicKey;
    credential = { kind: 'x509', chain, fingerprint: certificateFingerprint(leaf) };
  }
  if (!o.verifyPeer(credential, ctx.peer)) {
    throw fail('ERR_DTLS_PEER_REJECTED', 'peer credential rejected by policy', AlertDescription.accessDenied);
  }
  hs.clientKey = key;
  ctx.params.credential = credential;
}

/** The PSK identity and/or the client's ECDH point: the premaster secret, the master secret, epoch 1's keys. */
function onClientKeyExchange(ctx: HandshakeContext, hs: HandshakeState, body: Buffer): void {
  const r = new Reader(body, 'ClientKeyExchange');
  const psk = usesPsk(hs.suite) ? readPskIdentity(ctx, hs, r) : null;
  let pms: Buffer;
  if (hs.suite.keyExchange === 'psk') {
    pms = plainPskPremaster(psk as Buffer);
  } else {
    const shared = (hs.ephemeral as EphemeralKey).derive(r.vec8());
    pms = psk ? new Writer().vec16(shared).vec16(psk).finish() : shared;
  }
  r.end();
  hs.ephemeral = null;
  const { crypto } = ctx.opts;
  hs.master = masterSecret(
    crypto.prf,
    pms,
    hs.clientRandom,
    hs.serverRandom,
    ctx.params.extendedMasterSecret ? crypto.sha256([hs.transcript.finish()]) : null,
  );
  pms.fill(0);
  installKeys(ctx, hs);
}

/** The PSK for the identity the client names; for an unknown identity a random key (see below). */
function readPskIdentity(ctx: HandshakeContext, hs: HandshakeState, r: Reader): Buffer {
  const identity = r.vec16();
  if (identity.length === 0 || identity.length > MAX_PSK_IDENTITY) throw decodeError('PSK identity');
  // A copy of the datagram's bytes; once established, the session moves it into its own allocation (packSession).
  ctx.params.credential = { kind: 'psk', identity: Buffer.from(identity) };
  const lookup = ctx.opts.lookupPsk as NonNullable<ResolvedOptions['lookupPsk']>;
  const found = lookup(identity, ctx.peer);
  // RFC 4279 §2: carry on with a random key so an unknown identity looks exactly like a wrong key.
  hs.unknownPskIdentity = found === undefined;
  if (found && ctx.sessions) hs.pskDigest = ctx.opts.crypto.sha256([found]);
  return found ?? randomBytes(16);
}

/** RFC 4279 §2: uint16 N, N zero bytes, uint16 N, the PSK. */
function plainPskPremaster(psk: Buffer): Buffer {
  const pms = Buffer.allocUnsafe(4 + 2 * psk.length);
  pms.writeUInt16BE(psk.length, 0);
  pms.fill(0, 2, 2 + psk.length);
  pms.writeUInt16BE(psk.length, 2 + psk.length);
  psk.copy(pms, 4 + psk.length);
  return pms;
}

/** The client's signature over the transcript with the key of the certificate it sent. */
function onCertificateVerify(hs: HandshakeState, body: Buffer): void {
  const r = new Reader(body, 'CertificateVerify');
  const scheme = r.u16();
  const sig = r.vec16();
  r.end();
  if (scheme !== ECDSA_SECP256R1_SHA256) {
    throw fail(
      'ERR_DTLS_BAD_SIGNATURE_SCHEME',
      'unsupported CertificateVerify scheme',
      AlertDescription.illegalParameter,
    );
  }
  let ok = false;
  try {
    ok = verify('sha256', hs.transcript.finish(), hs.clientKey as KeyObject, sig);
  } catch {
    ok = false;
  }
  if (!ok) {
    throw fail(
      'ERR_DTLS_BAD_CERTIFICATE_VERIFY',
      'CertificateVerify signature is invalid',
      AlertDescription.decryptError,
    );
  }
}
