import { createECDH, createPublicKey, diffieHellman, generateKeyPairSync } from 'node:crypto';
import { AlertDescription, type GroupName } from './constants.ts';
import { DtlsError } from './errors.ts';

/** An ephemeral key pair for one handshake; generated only after the peer returned a valid cookie. */
export interface EphemeralKey {
  readonly group: GroupName;
  readonly publicPoint: Buffer;
  /** The shared secret with the peer's public point; a bad point is an illegal_parameter failure. */
  derive(peerPoint: Buffer): Buffer;
}

const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

function badPoint(): DtlsError {
  return new DtlsError(
    'ERR_DTLS_BAD_KEY_SHARE',
    'peer sent an invalid ECDHE public key',
    AlertDescription.illegalParameter,
  );
}

export function generateEphemeral(group: GroupName): EphemeralKey {
  if (group === 'secp256r1') {
    const ecdh = createECDH('prime256v1');
    const publicPoint = ecdh.generateKeys();
    return {
      group,
      publicPoint,
      derive(peer) {
        if (peer.length !== 65 || peer[0] !== 4) throw badPoint();
        try {
          return ecdh.computeSecret(peer);
        } catch {
          throw badPoint();
        }
      },
    };
  }
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const publicPoint = publicKey.export({ format: 'der', type: 'spki' }).subarray(X25519_SPKI_PREFIX.length);
  return {
    group,
    publicPoint,
    derive(peer) {
      if (peer.length !== 32) throw badPoint();
      try {
        const peerKey = createPublicKey({
          key: Buffer.concat([X25519_SPKI_PREFIX, peer]),
          format: 'der',
          type: 'spki',
        });
        const secret = diffieHellman({ privateKey, publicKey: peerKey });
        // RFC 7748 §6.1: an all-zero result means a low-order point.
        if (secret.every((b) => b === 0)) throw badPoint();
        return secret;
      } catch {
        throw badPoint();
      }
    },
  };
}
