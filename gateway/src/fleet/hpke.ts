/**
 * PSKs for remotely added devices travel sealed to the receiving gateway with HPKE (RFC 9180, base mode,
 * DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM; the `@hpke/core` package). The gateway's key pair is
 * derived from its keystore (the data key sealed in the TPM on `tpm2`), so it needs no file of its own and is the
 * same after every restart. `info` binds the ciphertext to the device and PSK identity: a sealed key cannot be
 * moved to another device entry of the same document.
 */
import { createHash } from 'node:crypto';
import { Aes128Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from '@hpke/core';
import type { Keystore } from '../keystore/index.ts';
import type { SealedPsk } from './document.ts';
import { FleetError } from './errors.ts';

export const HPKE_KEY_PURPOSE = 'portcullis fleet hpke v1';

const suite = () =>
  new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes128Gcm() });

const info = (deviceId: string, pskIdentity: string) =>
  new TextEncoder().encode(`portcullis fleet psk v1\n${deviceId}\n${pskIdentity}\n`);

export function hpkeKeyId(publicKey: Buffer): string {
  return createHash('sha256').update(publicKey).digest('hex').slice(0, 16);
}

/** The message the identity key signs to vouch for the HPKE public key published in the reported state. */
export function hpkeBindingMessage(prefix: string, publicKey: string): Buffer {
  return Buffer.from(`portcullis fleet hpke key v1\nprefix=${prefix}\nkey=${publicKey}\n`);
}

export interface GatewayHpkeKey {
  publicKey: Buffer;
  keyId: string;
  open(sealed: SealedPsk, deviceId: string, pskIdentity: string): Promise<Buffer>;
}

export async function gatewayHpkeKey(keystore: Keystore): Promise<GatewayHpkeKey> {
  const s = suite();
  const ikm = keystore.deriveKey(HPKE_KEY_PURPOSE).export();
  const pair = await s.kem.deriveKeyPair(new Uint8Array(ikm).buffer);
  const publicKey = Buffer.from(await s.kem.serializePublicKey(pair.publicKey));
  return {
    publicKey,
    keyId: hpkeKeyId(publicKey),
    async open(sealed, deviceId, pskIdentity) {
      try {
        const pt = await s.open(
          {
            recipientKey: pair.privateKey,
            enc: new Uint8Array(Buffer.from(sealed.enc, 'base64')).buffer,
            info: info(deviceId, pskIdentity).buffer as ArrayBuffer,
          },
          new Uint8Array(Buffer.from(sealed.ct, 'base64')).buffer,
        );
        return Buffer.from(pt);
      } catch (err) {
        throw new FleetError(
          'ERR_FLEET_SEALED',
          `the PSK for device ${deviceId} does not open with this gateway's key`,
          {
            cause: err,
          },
        );
      }
    },
  };
}

/** The operator side: seals `psk` to one gateway's published HPKE key. */
export async function sealPsk(
  recipientPublicKey: Buffer,
  psk: Buffer,
  deviceId: string,
  pskIdentity: string,
): Promise<SealedPsk> {
  const s = suite();
  const pk = await s.kem.deserializePublicKey(new Uint8Array(recipientPublicKey).buffer);
  const { ct, enc } = await s.seal(
    { recipientPublicKey: pk, info: info(deviceId, pskIdentity).buffer as ArrayBuffer },
    new Uint8Array(psk).buffer,
  );
  return {
    to: hpkeKeyId(recipientPublicKey),
    enc: Buffer.from(enc).toString('base64'),
    ct: Buffer.from(ct).toString('base64'),
  };
}
