import { sign } from 'node:crypto';
import { Writer } from '../bytes.ts';
import {
  CertificateType,
  CLIENT_CERT_TYPE_ECDSA_SIGN,
  ContentType,
  DTLS_1_2,
  ECDSA_SECP256R1_SHA256,
  ExtensionType,
  HandshakeType,
  MAX_PLAINTEXT,
  NamedGroup,
} from '../constants.ts';
import { type EphemeralKey, generateEphemeral } from '../ecdhe.ts';
import type { FlightItem } from '../flight.ts';
import { beginHandshake, endHandshake } from '../handshake.ts';
import type { ResolvedOptions } from '../options.ts';
import { usesEcdhe } from '../suites.ts';
import type { HelloOffer, SizeLimit } from './client-hello.ts';
import { installKeys, serverFinished } from './key-schedule.ts';
import type { Negotiated, Resumption } from './negotiate.ts';
import type { HandshakeContext, HandshakeState } from './state.ts';

/** Only ever copied into records. */
export const CHANGE_CIPHER_SPEC = Buffer.from([1]);

/** What the ServerHello answers, beside the suite and session ID. */
export interface HelloAnswer {
  offer: HelloOffer;
  negotiated: Negotiated;
  size: SizeLimit;
  /** Our CID when the client asked for the extension (RFC 9146), else null. */
  ownCid: Buffer | null;
  resuming: Resumption | undefined;
}

/**
 * The server's flight to a cookie-verified ClientHello, each message added to the transcript. The whole flight
 * is written into one buffer; each message is a view of it, kept for retransmission.
 */
export function writeServerFlight(ctx: HandshakeContext, hs: HandshakeState, a: HelloAnswer): FlightItem[] {
  const w = new Writer(a.negotiated.suite.keyExchange === 'ecdhe_ecdsa' ? 1024 : 128);
  const flight: FlightItem[] = [];
  addToFlight(hs, flight, writeServerHello(w, ctx, hs, a));
  if (a.resuming) {
    resumedFinish(ctx, hs, a.resuming, flight);
    return flight;
  }
  const { group, serverCertType } = a.negotiated;
  if (usesEcdhe(hs.suite)) hs.ephemeral = generateEphemeral(group as NonNullable<typeof group>);
  if (hs.suite.keyExchange === 'ecdhe_ecdsa') {
    const identity = ctx.opts.identity as NonNullable<ResolvedOptions['identity']>;
    addToFlight(hs, flight, writeCertificate(w, hs, identity, serverCertType));
    addToFlight(hs, flight, writeSignedKeyExchange(w, hs, identity));
    const start = beginHandshake(w, HandshakeType.certificateRequest, hs.nextSendSeq++);
    w.u8(1).u8(CLIENT_CERT_TYPE_ECDSA_SIGN).u16(2).u16(ECDSA_SECP256R1_SHA256).u16(0);
    addToFlight(hs, flight, endHandshake(w, start));
  } else if (hs.suite.keyExchange === 'ecdhe_psk') {
    const eph = hs.ephemeral as EphemeralKey;
    const start = beginHandshake(w, HandshakeType.serverKeyExchange, hs.nextSendSeq++);
    // RFC 5489 §2: an empty PSK identity hint, then the ECDH parameters.
    w.u16(0).u8(3).u16(NamedGroup[eph.group]).vec8(eph.publicPoint);
    addToFlight(hs, flight, endHandshake(w, start));
  }
  addToFlight(
    hs,
    flight,
    endHandshake(w, beginHandshake(w, HandshakeType.serverHelloDone, hs.nextSendSeq++)),
  );
  return flight;
}

/** A clear handshake message of our flight, hashed into the transcript. */
function addToFlight(hs: HandshakeState, flight: FlightItem[], message: Buffer): void {
  hs.transcript.bytes(message);
  flight.push({ epoch: 0, type: ContentType.handshake, payload: message });
}

function writeServerHello(w: Writer, ctx: HandshakeContext, hs: HandshakeState, a: HelloAnswer): Buffer {
  const { offer } = a;
  const start = beginHandshake(w, HandshakeType.serverHello, hs.nextSendSeq++);
  w.u16(DTLS_1_2).bytes(hs.serverRandom).vec8(ctx.params.sessionId).u16(hs.suite.id).u8(0);
  const extensionsAt = w.length;
  w.u16(0);
  if (offer.secureRenegotiation) w.u16(ExtensionType.renegotiationInfo).u16(1).u8(0);
  if (offer.extendedMasterSecret) w.u16(ExtensionType.extendedMasterSecret).u16(0);
  if (usesEcdhe(hs.suite) && offer.pointFormats) w.u16(ExtensionType.ecPointFormats).u16(2).u8(1).u8(0);
  if (!a.resuming && hs.suite.keyExchange === 'ecdhe_ecdsa') {
    if (offer.clientCertTypeSent) {
      w.u16(ExtensionType.clientCertificateType)
        .u16(1)
        .u8(a.negotiated.clientCertType as number);
    }
    if (offer.serverCertTypeSent) {
      w.u16(ExtensionType.serverCertificateType)
        .u16(1)
        .u8(a.negotiated.serverCertType as number);
    }
  }
  // Our own record size limit: the DTLS 1.2 maximum; we take any record size.
  if (a.size.echoRecordSizeLimit) w.u16(ExtensionType.recordSizeLimit).u16(2).u16(MAX_PLAINTEXT);
  else if (a.size.echoMaxFragmentLength !== null) {
    w.u16(ExtensionType.maxFragmentLength).u16(1).u8(a.size.echoMaxFragmentLength);
  }
  if (a.ownCid) {
    w.u16(ExtensionType.connectionId)
      .u16(1 + a.ownCid.length)
      .vec8(a.ownCid);
  }
  const extensionsLength = w.length - extensionsAt - 2;
  // No extensions: the field is left out altogether (RFC 5246 §7.4.1.3).
  if (extensionsLength > 0) w.u16At(extensionsAt, extensionsLength);
  else w.truncate(extensionsAt);
  return endHandshake(w, start);
}

/** Our chain, or our raw public key to a client that asked for one (RFC 7250). */
function writeCertificate(
  w: Writer,
  hs: HandshakeState,
  identity: NonNullable<ResolvedOptions['identity']>,
  certType: number | undefined,
): Buffer {
  const start = beginHandshake(w, HandshakeType.certificate, hs.nextSendSeq++);
  if (certType === CertificateType.rawPublicKey) {
    w.vec24(identity.spki);
  } else {
    const list = new Writer();
    for (const der of identity.chain as Buffer[]) list.vec24(der);
    w.vec24(list.finish());
  }
  return endHandshake(w, start);
}

/** ECDHE parameters signed with our key over both randoms (RFC 8422 §5.4). */
function writeSignedKeyExchange(
  w: Writer,
  hs: HandshakeState,
  identity: NonNullable<ResolvedOptions['identity']>,
): Buffer {
  const eph = hs.ephemeral as EphemeralKey;
  const params = new Writer().u8(3).u16(NamedGroup[eph.group]).vec8(eph.publicPoint).finish();
  const signature = sign(
    'sha256',
    Buffer.concat([hs.clientRandom, hs.serverRandom, params]),
    identity.privateKey,
  );
  const start = beginHandshake(w, HandshakeType.serverKeyExchange, hs.nextSendSeq++);
  w.bytes(params).u16(ECDSA_SECP256R1_SHA256).vec16(signature);
  return endHandshake(w, start);
}

/**
 * The rest of the abbreviated handshake's flight (RFC 5246 §7.3): ChangeCipherSpec and Finished under keys
 * from the remembered master secret and the new randoms. The client's Finished then completes it.
 */
function resumedFinish(ctx: HandshakeContext, hs: HandshakeState, r: Resumption, flight: FlightItem[]): void {
  ctx.params.credential = r.cached.credential;
  ctx.params.resumed = true;
  ctx.params.chainDer = r.cached.chainDer;
  hs.master = Buffer.from(r.cached.master);
  hs.pskDigest = r.cached.pskDigest;
  installKeys(ctx, hs);
  const finished = serverFinished(ctx, hs);
  hs.transcript.bytes(finished);
  flight.push({ epoch: 0, type: ContentType.changeCipherSpec, payload: CHANGE_CIPHER_SPEC });
  flight.push({ epoch: 1, type: ContentType.handshake, payload: finished });
}
