import { timingSafeEqual } from 'node:crypto';
import { AlertDescription, ContentType } from '../constants.ts';
import { DtlsError } from '../errors.ts';
import type { FlightItem } from '../flight.ts';
import { expectedVerifyData, serverFinished } from './key-schedule.ts';
import { CHANGE_CIPHER_SPEC } from './server-flight.ts';
import type { HandshakeContext, HandshakeState } from './state.ts';

/** The client's Finished must match the transcript under the master secret: the peer is authenticated. */
export function checkClientFinished(ctx: HandshakeContext, hs: HandshakeState, body: Buffer): void {
  const expected = expectedVerifyData(ctx, hs, 'client');
  if (body.length !== expected.length || !timingSafeEqual(body, expected)) {
    throw new DtlsError(
      'ERR_DTLS_BAD_FINISHED',
      'client Finished does not match the handshake',
      AlertDescription.decryptError,
    );
  }
}

/**
 * Ends a handshake whose client Finished checked (and whose session was admitted). A full handshake leaves a
 * resumable session behind and returns our final flight (ChangeCipherSpec, Finished); an abbreviated one is
 * complete (our Finished went first) and returns null. The master secret is wiped either way.
 */
export function finishHandshake(
  ctx: HandshakeContext,
  hs: HandshakeState,
  clientFinished: Buffer,
): FlightItem[] | null {
  const master = hs.master as Buffer;
  if (hs.resumed) {
    master.fill(0);
    return null;
  }
  const p = ctx.params;
  // The cache copies the master secret.
  ctx.sessions?.put(p.sessionId, {
    master,
    suiteId: hs.suite.id,
    extendedMasterSecret: p.extendedMasterSecret,
    credential: p.credential as NonNullable<typeof p.credential>,
    pskDigest: hs.pskDigest,
    chainDer: p.chainDer,
  });
  hs.transcript.bytes(clientFinished);
  // Kept for resending until the peer's first application data, so possibly for the session's whole idle life:
  // the connection moves it into the session's own allocation (packSession), so no pool slab stays pinned.
  const finished = serverFinished(ctx, hs);
  master.fill(0);
  return [
    { epoch: 0, type: ContentType.changeCipherSpec, payload: CHANGE_CIPHER_SPEC },
    { epoch: 1, type: ContentType.handshake, payload: finished },
  ];
}
