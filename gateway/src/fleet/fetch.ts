/**
 * Fetches a file a desired-state document names by URL and SHA-256: a gateway update's bundle, a sensor firmware
 * image. The document's signature covers only the URL and the hash, so what arrives is untrusted until both
 * checks pass: the bytes must hash to the signed value (checked here, streaming, before anything reads them) and
 * the file's own signature must then verify (the update installer with the release key pinned on the gateway;
 * the firmware service with the vendor's key). The operator key alone never installs code its maker did not sign.
 *
 * Bounded: https only (file: only when `fleet.update.allowFileUrls` is set), at most three redirects, each to
 * https; at most `maxBytes` (the download stops at the first byte over); one overall deadline.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { FleetError } from './errors.ts';

export interface FetchLimits {
  allowFileUrls: boolean;
  maxBytes: number;
  timeoutMs: number;
  /** Trust exactly this CA for https (tests; a private mirror); unset: the system's CAs. */
  ca?: string | Buffer;
}

export interface FetchedFile {
  /** The file (in a folder of its own under `workDir`). */
  path: string;
  bytes: number;
  /** Removes the file and its folder. */
  dispose(): void;
}

const MAX_REDIRECTS = 3;

function checkUrl(raw: string, limits: FetchLimits): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new FleetError('ERR_FLEET_FETCH_URL', 'the update URL does not parse');
  }
  if (url.protocol === 'https:') return url;
  if (url.protocol === 'file:' && limits.allowFileUrls) return url;
  throw new FleetError(
    'ERR_FLEET_FETCH_URL',
    `files are fetched over https only${limits.allowFileUrls ? ' or from file: URLs' : ''}, not ${url.protocol}`,
  );
}

/** The response body of an https GET, following at most MAX_REDIRECTS redirects to https URLs. */
function httpsBody(url: URL, limits: FetchLimits, signal: AbortSignal, hops = 0): Promise<Readable> {
  return new Promise((resolve, reject) => {
    const options = {
      signal,
      headers: { accept: 'application/octet-stream' },
      ...(limits.ca ? { ca: limits.ca } : {}),
    };
    const req = httpsGet(url, options, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location) {
        res.resume();
        if (hops >= MAX_REDIRECTS) {
          reject(new FleetError('ERR_FLEET_FETCH', `more than ${MAX_REDIRECTS} redirects`));
          return;
        }
        let next: URL;
        try {
          next = new URL(res.headers.location, url);
        } catch {
          reject(new FleetError('ERR_FLEET_FETCH', 'a redirect to an unparsable location'));
          return;
        }
        if (next.protocol !== 'https:') {
          reject(new FleetError('ERR_FLEET_FETCH_URL', `a redirect to ${next.protocol} refused`));
          return;
        }
        httpsBody(next, limits, signal, hops + 1).then(resolve, reject);
        return;
      }
      if (status !== 200) {
        res.resume();
        reject(new FleetError('ERR_FLEET_FETCH', `the server answered ${status}`));
        return;
      }
      const length = Number(res.headers['content-length']);
      if (Number.isFinite(length) && length > limits.maxBytes) {
        res.destroy();
        reject(
          new FleetError('ERR_FLEET_FETCH_SIZE', `the download is ${length} bytes, over ${limits.maxBytes}`),
        );
        return;
      }
      resolve(res);
    });
    req.on('error', (err) =>
      reject(
        err instanceof FleetError
          ? err
          : new FleetError('ERR_FLEET_FETCH', `fetching the file failed: ${err.message}`),
      ),
    );
  });
}

/**
 * Downloads `rawUrl` into a fresh folder under `workDir`, hashing as it writes; returns the file only if its
 * SHA-256 is `sha256`. Nothing is left behind on failure.
 */
export async function fetchVerified(
  rawUrl: string,
  sha256: string,
  workDir: string,
  limits: FetchLimits,
): Promise<FetchedFile> {
  const url = checkUrl(rawUrl, limits);
  const dir = mkdtempSync(join(workDir, '.fleet-update-'));
  const path = join(dir, 'download');
  const dispose = () => rmSync(dir, { recursive: true, force: true });
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), limits.timeoutMs);
  try {
    const body =
      url.protocol === 'file:'
        ? createReadStream(fileURLToPath(url), { signal: abort.signal })
        : await httpsBody(url, limits, abort.signal);
    const hash = createHash('sha256');
    const out = createWriteStream(path, { mode: 0o600 });
    let bytes = 0;
    await new Promise<void>((resolve, reject) => {
      const fail = (err: Error) => {
        body.destroy();
        out.destroy();
        reject(err);
      };
      body.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        if (bytes > limits.maxBytes) {
          fail(new FleetError('ERR_FLEET_FETCH_SIZE', `the download is over ${limits.maxBytes} bytes`));
          return;
        }
        hash.update(chunk);
        if (!out.write(chunk)) {
          body.pause();
          out.once('drain', () => body.resume());
        }
      });
      body.on('error', (err: Error) =>
        fail(
          err instanceof FleetError
            ? err
            : new FleetError(
                'ERR_FLEET_FETCH',
                abort.signal.aborted
                  ? `the download did not complete within ${Math.round(limits.timeoutMs / 1000)} s`
                  : `reading the download failed: ${err.message}`,
              ),
        ),
      );
      body.on('end', () => out.end());
      out.on('finish', resolve);
      out.on('error', (err) =>
        fail(new FleetError('ERR_FLEET_FETCH', `writing the download: ${err.message}`)),
      );
    });
    const got = hash.digest('hex');
    if (got !== sha256.toLowerCase()) {
      throw new FleetError(
        'ERR_FLEET_FETCH_HASH',
        `the download's SHA-256 is ${got}, not the ${sha256} the document signed`,
      );
    }
    return { path, bytes, dispose };
  } catch (err) {
    dispose();
    if (err instanceof FleetError) throw err;
    throw new FleetError('ERR_FLEET_FETCH', `fetching the file failed: ${(err as Error).message}`);
  } finally {
    clearTimeout(timer);
  }
}
