import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { DtlsCrypto } from './crypto.ts';
import type { ClientHelloHead } from './handshake.ts';

const COOKIE_LENGTH = 16;

/**
 * Stateless HelloVerifyRequest cookies (RFC 6347 §4.2.1): HMAC-SHA256 over the peer's address and port and
 * the ClientHello up to its cookie (version, random, session id), under a secret that rotates; the previous
 * secret stays valid for one period so a handshake that straddles a rotation still completes.
 *
 * The cookie covers the hello's head only, not what follows the cookie, so that the first fragment of a
 * fragmented ClientHello can be checked before anything is kept for it (a hello with a long extension list, a
 * small MTU). What the cookie proves is unchanged: the peer receives at its address, for this client random.
 */
export class CookieJar {
  private current = randomBytes(32);
  private previous = randomBytes(32);
  private rotatedAt: number;

  constructor(
    private readonly rotateMs: number,
    private readonly now: () => number,
    private readonly crypto: Pick<DtlsCrypto, 'hmacSha256'>,
  ) {
    this.rotatedAt = now();
  }

  private maybeRotate(): void {
    const t = this.now();
    if (t - this.rotatedAt < this.rotateMs) return;
    // After two or more idle periods both secrets are stale.
    this.previous = t - this.rotatedAt >= 2 * this.rotateMs ? randomBytes(32) : this.current;
    this.current = randomBytes(32);
    this.rotatedAt = t;
  }

  /** `peer`: the source address and port, as bytes, so the cookie only works from where it was sent. */
  private mac(secret: Buffer, peer: Buffer, hello: Pick<ClientHelloHead, 'beforeCookie'>): Buffer {
    return this.crypto.hmacSha256(secret, peer, hello.beforeCookie).subarray(0, COOKIE_LENGTH);
  }

  make(peer: Buffer, hello: Pick<ClientHelloHead, 'beforeCookie'>): Buffer {
    this.maybeRotate();
    return this.mac(this.current, peer, hello);
  }

  verify(peer: Buffer, hello: Pick<ClientHelloHead, 'beforeCookie' | 'cookie'>): boolean {
    const { cookie } = hello;
    if (cookie.length !== COOKIE_LENGTH) return false;
    this.maybeRotate();
    return (
      timingSafeEqual(cookie, this.mac(this.current, peer, hello)) ||
      timingSafeEqual(cookie, this.mac(this.previous, peer, hello))
    );
  }
}
