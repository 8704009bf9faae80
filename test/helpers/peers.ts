import { spawn } from 'node:child_process';

export interface PeerResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
  /** True when the peer was stopped by us once `until` held or the time ran out. */
  stopped: boolean;
}

/**
 * Runs an independent peer (openssl, libcoap) to completion, or until its stdout satisfies `until`,
 * or `timeoutMs` passes. Never rejects: the caller asserts on the result.
 */
export function runPeer(
  cmd: string,
  args: string[],
  opts: { stdin?: Buffer; until?: (stdout: Buffer) => boolean; timeoutMs?: number } = {},
): Promise<PeerResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    let stopped = false;
    const stop = () => {
      stopped = true;
      child.kill('SIGKILL');
    };
    const timer = setTimeout(stop, opts.timeoutMs ?? 15_000);
    child.stdout.on('data', (d: Buffer) => {
      out.push(d);
      if (opts.until?.(Buffer.concat(out))) stop();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.stdin.on('error', () => {});
    if (opts.stdin) child.stdin.write(opts.stdin);
    // openssl s_client must keep stdin open or it closes the session before the answer arrives.
    if (!opts.until) child.stdin.end();
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr, stopped });
    });
  });
}

/**
 * `openssl s_client` arguments for DTLS 1.2 to `port` on loopback with one cipher forced; `credentials` follow
 * (see opensslPsk, or -cert/-key/-CAfile).
 */
export function opensslDtlsArgs(port: number, cipher: string, ...credentials: string[]): string[] {
  return [
    's_client',
    '-dtls1_2',
    '-connect',
    `127.0.0.1:${port}`,
    '-quiet',
    '-cipher',
    cipher,
    ...credentials,
  ];
}

/**
 * `openssl s_client`'s options for a client certificate, verifying the server against `caPath`
 * (`-verify_return_error` unless `verifyServer` is false: then a bad server certificate is only logged).
 */
export function opensslCertificate(
  party: { certPath: string; keyPath: string },
  caPath: string,
  verifyServer = true,
): string[] {
  return [
    '-cert',
    party.certPath,
    '-key',
    party.keyPath,
    '-CAfile',
    caPath,
    ...(verifyServer ? ['-verify_return_error'] : []),
  ];
}

/** `openssl s_client`'s PSK options: the key as hex of its UTF-8 bytes. */
export function opensslPsk(identity: string, key: string): string[] {
  return ['-psk', Buffer.from(key).toString('hex'), '-psk_identity', identity];
}

/**
 * One CoAP POST of `body` to `/telemetry` with libcoap's `coap-client-openssl` over DTLS with a PSK. `extra`
 * options go before the URI (e.g. `-B 3`: give up after three seconds, as a refused handshake needs).
 */
export function coapClientPost(
  port: number,
  psk: { identity: string; key: string },
  body: string,
  extra: string[] = [],
): Promise<PeerResult> {
  return runPeer('coap-client-openssl', [
    ...['-u', psk.identity, '-k', psk.key, '-m', 'post', '-e', body, ...extra],
    `coaps://127.0.0.1:${port}/telemetry`,
  ]);
}
