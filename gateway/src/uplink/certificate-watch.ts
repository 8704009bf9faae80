import { X509Certificate } from 'node:crypto';
import { type FSWatcher, readFileSync, watch } from 'node:fs';
import { basename, dirname } from 'node:path';

/** How often the file is looked at besides the folder watch (which some file systems do not support). */
const POLL_MS = 10_000;

/**
 * Reads `uplink.certFile` if it is there and holds a whole certificate, else null. A certificate copied in
 * while the gateway reads it (half a PEM) counts as not there yet: the watch tries again when the copy ends.
 */
export function readCertificate(file: string): Buffer | null {
  let pem: Buffer;
  try {
    pem = readFileSync(file);
  } catch {
    return null;
  }
  try {
    new X509Certificate(pem);
  } catch {
    return null;
  }
  return pem;
}

/**
 * Waits for the uplink certificate to appear at `file` — the walkthrough's order is config, `uplink csr`,
 * then the signed certificate, so a gateway may be started before it exists. Until then the uplink sends
 * nothing (fail closed: there is no connection without the client certificate) and queues every message.
 * Calls `found` once with the certificate; `close()` stops waiting.
 */
export function watchCertificate(
  file: string,
  found: (pem: Buffer) => void,
  pollMs = POLL_MS,
): { close(): void } {
  let watcher: FSWatcher | undefined;
  let done = false;
  const close = () => {
    done = true;
    watcher?.close();
    clearInterval(timer);
  };
  const check = () => {
    if (done) return;
    const pem = readCertificate(file);
    if (!pem) return;
    close();
    found(pem);
  };
  const timer = setInterval(check, pollMs);
  timer.unref();
  try {
    // The folder, not the file: the file does not exist yet, and a copy or rename replaces it anyway.
    watcher = watch(dirname(file), { persistent: false }, (_event, name) => {
      if (name === null || name === basename(file)) check();
    });
    watcher.on('error', () => watcher?.close());
  } catch {
    // No watch on this file system (or the folder is missing): the poll still finds it.
  }
  check();
  return { close };
}
