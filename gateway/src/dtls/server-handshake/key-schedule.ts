import { HandshakeType } from '../constants.ts';
import { encodeHandshake } from '../handshake.ts';
import { finishedVerifyData, keyBlock } from '../prf.ts';
import { aeadParameters } from '../suites.ts';
import type { HandshakeContext, HandshakeState } from './state.ts';

/** Derives epoch 1's keys from the master secret and both randoms (RFC 5246 §6.3) into the record layer. */
export function installKeys(ctx: HandshakeContext, hs: HandshakeState): void {
  const { crypto } = ctx.opts;
  const kb = keyBlock(
    crypto.prf,
    hs.master as Buffer,
    hs.clientRandom,
    hs.serverRandom,
    aeadParameters(hs.suite.aead),
  );
  ctx.records.setKeys(
    crypto.aeadKey(hs.suite, kb.clientKey, kb.clientSalt),
    crypto.aeadKey(hs.suite, kb.serverKey, kb.serverSalt),
  );
}

/** The verify_data `side`'s Finished must carry over the transcript so far (RFC 5246 §7.4.9). */
export function expectedVerifyData(
  ctx: HandshakeContext,
  hs: HandshakeState,
  side: 'client' | 'server',
): Buffer {
  const { crypto } = ctx.opts;
  return finishedVerifyData(crypto.prf, hs.master as Buffer, side, crypto.sha256([hs.transcript.finish()]));
}

/** Our Finished message, numbered next. */
export function serverFinished(ctx: HandshakeContext, hs: HandshakeState): Buffer {
  return encodeHandshake(HandshakeType.finished, hs.nextSendSeq++, expectedVerifyData(ctx, hs, 'server'));
}
