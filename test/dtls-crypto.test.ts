/**
 * The DTLS server's per-record and per-handshake cryptography: the native addon (native/dtls-crypto) against
 * published test vectors and against node:crypto, forged records refused by both, bad arguments refused with a
 * typed error, and the fallback to node:crypto where the addon does not load.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ContentType } from '../gateway/src/dtls/constants.ts';
import {
  type CryptoImplementation,
  type DtlsCrypto,
  dtlsCryptoStatus,
  resolveDtlsCrypto,
  selfTest,
} from '../gateway/src/dtls/crypto.ts';
import { loadDtlsCryptoAddon } from '../gateway/src/dtls/native.ts';
import { explicitNonce, openRecord, parseRecords, plainAad, sealRecord } from '../gateway/src/dtls/record.ts';
import { CIPHER_SUITES, type CipherSuite } from '../gateway/src/dtls/suites.ts';
import { tempDir } from './helpers/tmp.ts';

const hex = (s: string) => Buffer.from(s, 'hex');
const IMPLEMENTATIONS: readonly CryptoImplementation[] = ['native', 'node-crypto'];
const CCM: CipherSuite = { name: 'TLS_PSK_WITH_AES_128_CCM_8', ...CIPHER_SUITES.TLS_PSK_WITH_AES_128_CCM_8 };
const GCM: CipherSuite = {
  name: 'TLS_PSK_WITH_AES_128_GCM_SHA256',
  ...CIPHER_SUITES.TLS_PSK_WITH_AES_128_GCM_SHA256,
};
const DTLS_1_2 = 0xfefd;

describe('DTLS crypto: the native addon', () => {
  it('is built, loads and passes its self-test against node:crypto here', () => {
    assert.deepEqual(dtlsCryptoStatus(), { implementation: 'native' });
    assert.equal(resolveDtlsCrypto().implementation, 'native');
  });

  for (const implementation of IMPLEMENTATIONS) {
    const c = resolveDtlsCrypto(implementation);
    it(`${implementation}: matches the published vectors (TLS 1.2 PRF, RFC 4231 HMAC, SHA-256, GCM)`, () => {
      // The TLS 1.2 PRF SHA-256 vector circulated on the IETF TLS list (label "test label", 100 bytes).
      const secret = hex('9bbe436ba940f017b17652849a71db35');
      const seed = Buffer.concat([Buffer.from('test label'), hex('a0ba9f936cda311827a6f796ffd5198c')]);
      assert.equal(
        c.prf(secret, seed, 100).toString('hex'),
        'e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a46b4e14baf9af' +
          '0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff7' +
          '0187347b66',
      );
      // RFC 4231 test cases 2 and 6 (a key longer than the block is hashed first).
      assert.equal(
        c
          .hmacSha256(Buffer.from('Jefe'), Buffer.from('what do ya '), Buffer.from('want for nothing?'))
          .toString('hex'),
        '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
      );
      assert.equal(
        c
          .hmacSha256(
            Buffer.alloc(131, 0xaa),
            Buffer.from('Test Using Larger Than Block-Size Key - Hash Key First'),
          )
          .toString('hex'),
        '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
      );
      assert.equal(
        c.sha256([Buffer.from('a'), Buffer.alloc(0), Buffer.from('bc')]).toString('hex'),
        'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
      );
      // The GCM specification's test case 4, as a DTLS record: salt cafebabe, explicit nonce facedbaddecaf888.
      const plaintext = hex(
        'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525' +
          'b16aedf5aa0de657ba637b39',
      );
      const aad = hex('feedfacedeadbeeffeedfacedeadbeefabaddad2');
      const key = c.aeadKey(GCM, hex('feffe9928665731c6d6a8f9467308308'), hex('cafebabe'));
      const sealed = key.seal(hex('facedbaddecaf888'), aad, plaintext);
      assert.equal(
        sealed.toString('hex'),
        'facedbaddecaf888' +
          '42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa05' +
          '1ba30b396a0aac973d58e091' +
          '5bc94fbc3221a5db94fae95ae7121a47',
      );
      assert.deepEqual(key.open(sealed, aad), plaintext);
    });
  }

  it('seals byte-for-byte what node:crypto seals and opens its records, CCM_8 and GCM, 0 to 16384 bytes', () => {
    const native = resolveDtlsCrypto('native');
    const reference = resolveDtlsCrypto('node-crypto');
    for (const suite of [CCM, GCM]) {
      for (const length of [0, 1, 15, 16, 17, 31, 32, 33, 64, 255, 1024, 1500, 16_384]) {
        const key = randomBytes(16);
        const salt = randomBytes(4);
        const explicit = randomBytes(8);
        const aad = randomBytes(13);
        // A slice of real memory, as the server's plaintexts are: node:crypto's CCM (the reference) cannot seal an
        // empty Buffer that has no memory behind it at all (randomBytes(0)); the addon can.
        const plaintext = Buffer.concat([randomBytes(length), Buffer.alloc(1)]).subarray(0, length);
        const ours = native.aeadKey(suite, key, salt);
        const theirs = reference.aeadKey(suite, key, salt);
        const sealed = ours.seal(explicit, aad, plaintext);
        assert.deepEqual(sealed, theirs.seal(explicit, aad, plaintext), `${suite.aead} ${length}`);
        assert.deepEqual(theirs.open(sealed, aad), plaintext);
        assert.deepEqual(ours.open(sealed, aad), plaintext);
      }
      const long = randomBytes(200);
      assert.deepEqual(native.prf(long, long, 256), reference.prf(long, long, 256));
    }
  });

  it('protects whole records, with and without a Connection ID, the same way on both', () => {
    const native = resolveDtlsCrypto('native');
    const reference = resolveDtlsCrypto('node-crypto');
    for (const suite of [CCM, GCM]) {
      const [key, salt] = [randomBytes(16), randomBytes(4)];
      for (const cid of [null, randomBytes(8), randomBytes(255)]) {
        const payload = randomBytes(40);
        const record = sealRecord(
          native.aeadKey(suite, key, salt),
          ContentType.applicationData,
          DTLS_1_2,
          1,
          7,
          payload,
          cid,
        );
        assert.deepEqual(
          record,
          sealRecord(
            reference.aeadKey(suite, key, salt),
            ContentType.applicationData,
            DTLS_1_2,
            1,
            7,
            payload,
            cid,
          ),
        );
        const [parsed] = parseRecords(record, cid?.length ?? 0);
        assert.ok(parsed);
        for (const c of [native, reference]) {
          assert.deepEqual(openRecord(c.aeadKey(suite, key, salt), parsed), {
            type: ContentType.applicationData,
            data: payload,
          });
        }
      }
    }
  });

  for (const implementation of IMPLEMENTATIONS) {
    it(`${implementation}: refuses a record with any one bit flipped in nonce, ciphertext, tag or AAD`, () => {
      const c = resolveDtlsCrypto(implementation);
      for (const suite of [CCM, GCM]) {
        const [key, salt] = [randomBytes(16), randomBytes(4)];
        const aad = plainAad(1, 9, ContentType.applicationData, DTLS_1_2, 24);
        const sealed = c.aeadKey(suite, key, salt).seal(explicitNonce(1, 9), aad, randomBytes(24));
        const opener = c.aeadKey(suite, key, salt);
        assert.ok(opener.open(sealed, aad), 'the genuine record opens');
        for (let bit = 0; bit < sealed.length * 8; bit++) {
          const forged = Buffer.from(sealed);
          forged[bit >> 3] = (forged[bit >> 3] as number) ^ (1 << (bit & 7));
          assert.equal(opener.open(forged, aad), null, `${suite.aead}: bit ${bit} flipped`);
        }
        for (let bit = 0; bit < aad.length * 8; bit++) {
          const forgedAad = Buffer.from(aad);
          forgedAad[bit >> 3] = (forgedAad[bit >> 3] as number) ^ (1 << (bit & 7));
          assert.equal(opener.open(sealed, forgedAad), null, `${suite.aead}: AAD bit ${bit} flipped`);
        }
        // A record under another key, a truncated one, an empty one with a forged tag.
        assert.equal(c.aeadKey(suite, randomBytes(16), salt).open(sealed, aad), null);
        assert.equal(opener.open(sealed.subarray(0, sealed.length - 1), aad), null);
        assert.equal(opener.open(sealed.subarray(0, 7), aad), null);
        const empty = c.aeadKey(suite, key, salt).seal(explicitNonce(1, 10), aad, Buffer.alloc(0));
        assert.deepEqual(opener.open(empty, aad), Buffer.alloc(0));
        empty[empty.length - 1] = (empty[empty.length - 1] as number) ^ 1;
        assert.equal(opener.open(empty, aad), null, `${suite.aead}: empty record with a forged tag`);
      }
    });
  }

  it('refuses bad arguments with a typed error instead of reading or writing out of bounds', () => {
    const addon = loadDtlsCryptoAddon();
    assert.ok(typeof addon !== 'string', String(addon));
    const keySalt = randomBytes(20);
    const code = { name: 'TypeError', code: 'ERR_DTLS_CRYPTO_ARGUMENT' };
    const nonce = randomBytes(8);
    const aad = randomBytes(13);
    assert.throws(
      () => addon.seal(false, randomBytes(16), nonce, aad, randomBytes(4), Buffer.alloc(64), 0),
      code,
    );
    assert.throws(
      () => addon.seal(false, keySalt, randomBytes(7), aad, randomBytes(4), Buffer.alloc(64), 0),
      code,
    );
    // No room for nonce + 40 bytes + tag at that offset.
    assert.throws(() => addon.seal(false, keySalt, nonce, aad, randomBytes(40), Buffer.alloc(64), 10), code);
    assert.throws(
      () => addon.seal(true, keySalt, nonce, randomBytes(300), randomBytes(4), Buffer.alloc(64), 0),
      code,
    );
    assert.throws(() => addon.open(true, keySalt, randomBytes(23), aad, Buffer.alloc(0)), code);
    assert.throws(() => addon.open(false, keySalt, randomBytes(40), aad, Buffer.alloc(40)), code);
    assert.throws(() => addon.prf(keySalt, aad, Buffer.alloc(0)), code);
    assert.throws(() => addon.prf(keySalt, aad, Buffer.alloc(257)), code);
    assert.throws(() => addon.hmacSha256(keySalt, Buffer.alloc(31)), code);
    assert.throws(() => addon.hmacSha256(keySalt, Buffer.alloc(32), 'text' as unknown as Buffer), code);
    assert.throws(() => addon.sha256([aad, 'text' as unknown as Buffer], Buffer.alloc(32)), code);
    assert.throws(() => (addon.seal as (...a: unknown[]) => number)(false, keySalt), code);
    // Still working afterwards.
    const out = Buffer.alloc(32);
    addon.sha256([Buffer.from('abc')], out);
    assert.equal(out.toString('hex').slice(0, 8), 'ba7816bf');
  });

  it('reports a self-test failure for an implementation that disagrees with node:crypto', () => {
    const reference = resolveDtlsCrypto('node-crypto');
    const broken: DtlsCrypto = { ...reference, sha256: () => Buffer.alloc(32) };
    assert.equal(selfTest(reference), null);
    assert.equal(selfTest(broken), 'SHA-256');
  });

  it('falls back to node:crypto, with the reason, where the addon does not load, and refuses an explicit native', (t) => {
    const dir = tempDir(t);
    // Makes the addon unresolvable, as on a machine where it was never built.
    const hide = join(dir, 'hide-addon.cjs');
    writeFileSync(
      hide,
      `const M = require('node:module'); const r = M._resolveFilename;
       M._resolveFilename = function (id, ...rest) {
         if (id === 'portcullis-dtls-crypto') throw Object.assign(new Error("Cannot find module '" + id + "'"), { code: 'MODULE_NOT_FOUND' });
         return r.call(this, id, ...rest);
       };`,
    );
    const probe = `
      import { dtlsCryptoStatus, resolveDtlsCrypto } from ${JSON.stringify(new URL('../gateway/src/dtls/crypto.ts', import.meta.url).pathname)};
      let refused = null;
      try { resolveDtlsCrypto('native'); } catch (e) { refused = e.code + ': ' + e.message; }
      const c = resolveDtlsCrypto();
      console.log(JSON.stringify({ status: dtlsCryptoStatus(), refused, implementation: c.implementation }));`;
    const r = spawnSync(
      process.execPath,
      ['--require', hide, '--import', 'tsx', '--input-type=module', '-e', probe],
      {
        encoding: 'utf8',
        cwd: new URL('..', import.meta.url).pathname,
      },
    );
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as {
      status: { implementation: string; fallbackReason: string };
      refused: string;
      implementation: string;
    };
    assert.equal(out.status.implementation, 'node-crypto');
    assert.match(
      out.status.fallbackReason,
      /portcullis-dtls-crypto addon does not load \(Cannot find module/,
    );
    assert.match(out.refused, /^ERR_DTLS_OPTIONS: native DTLS crypto requested, but .*does not load/);
    assert.equal(out.implementation, 'node-crypto');
  });

  it('refuses an unknown implementation name with ERR_DTLS_OPTIONS', () => {
    assert.throws(() => resolveDtlsCrypto('fast' as CryptoImplementation), { code: 'ERR_DTLS_OPTIONS' });
  });
});
