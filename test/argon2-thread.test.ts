/**
 * Password hashing off the event loop (issue 25, appliance point 5: on the booted appliance a re-authentication's
 * argon2 held the gateway's only thread past systemd's watchdog). The hashes are the same argon2id PHC strings
 * as before — one made on the main thread verifies in the worker and the other way round — and while one is
 * computed the event loop keeps turning (counted in loop turns, not timed).
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { argon2id, argon2Verify } from 'hash-wasm';
import {
  argon2idInThread,
  argon2VerifyInThread,
  stopArgon2Thread,
} from '../gateway/src/users/argon2-thread.ts';
import { argon2Hasher } from '../gateway/src/users/index.ts';

const PARAMS = { parallelism: 1, iterations: 2, memorySize: 19_456, hashLength: 32 };

describe('argon2 in a worker thread', () => {
  after(() => stopArgon2Thread());

  it('makes and checks the same PHC strings as before, and refuses a wrong password', async () => {
    const salt = new Uint8Array(16).fill(7);
    const mine = await argon2idInThread({ password: 'a long first password', salt, ...PARAMS });
    const before = await argon2id({
      password: 'a long first password',
      salt,
      ...PARAMS,
      outputType: 'encoded',
    });
    assert.equal(mine, before, 'byte for byte what the main thread made');
    assert.equal(await argon2Verify({ password: 'a long first password', hash: mine }), true);
    assert.equal(await argon2VerifyInThread(before, 'a long first password'), true);
    assert.equal(await argon2VerifyInThread(before, 'a long first passwore'), false);
    // The service's hasher (random salt) goes through it too; a malformed hash is a refusal, not a crash.
    const h = await argon2Hasher.hash('another long password');
    assert.match(h, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    assert.equal(await argon2Hasher.verify(h, 'another long password'), true);
    assert.equal(await argon2Hasher.verify('not a hash', 'another long password'), false);
  });

  it('leaves the event loop turning while it hashes', async () => {
    await argon2VerifyInThread(await argon2Hasher.hash('warm up the thread'), 'warm up the thread');
    let turns = 0;
    let done = false;
    const spin = () => {
      turns++;
      if (!done) setImmediate(spin);
    };
    setImmediate(spin);
    await argon2Hasher.hash('a password hashed while the loop turns');
    done = true;
    // In the calling thread the hash would run between two turns: at most one or two.
    assert.ok(turns > 10, `the event loop turned ${turns} times during the hash`);
  });
});
