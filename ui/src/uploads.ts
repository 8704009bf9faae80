import { randomUUID } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, statfsSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Context } from 'hono';
import { HttpError } from '../../gateway/src/http.ts';

/** Files older than this in the uploads folder are leftovers of an interrupted upload. */
const STALE_MS = 60 * 60_000;
/**
 * Uploads under way, per folder: one at a time, so two uploads cannot each pass the free-space check and
 * together fill the disk.
 */
const busy = new Set<string>();

/** Free space kept beyond the upload itself, so an upload never fills the disk the database lives on. */
const RESERVE_BYTES = 64 * 1024 * 1024;

function sweep(dir: string): void {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    try {
      if (Date.now() - statSync(p).mtimeMs > STALE_MS) rmSync(p, { force: true });
    } catch {
      // gone already
    }
  }
}

/**
 * Streams a request body (application/octet-stream) into a new file under `dir`, never holding it in memory:
 * refused at once when Content-Length says it is over `maxBytes` or the disk lacks room for it plus a reserve,
 * and cut off (the partial file deleted) the moment the bytes read pass `maxBytes`, whatever the headers said.
 */
export async function receiveUpload(
  c: Context,
  dir: string,
  prefix: string,
  maxBytes: number,
): Promise<{ file: string; bytes: number }> {
  if (!(c.req.header('content-type') ?? '').startsWith('application/octet-stream')) {
    throw new HttpError(415, 'ERR_UI_CONTENT_TYPE', 'send the file as application/octet-stream');
  }
  const tooLarge = () =>
    new HttpError(413, 'ERR_UI_TOO_LARGE', `uploads here are limited to ${maxBytes} bytes`);
  const declared = Number(c.req.header('content-length') ?? Number.NaN);
  if (Number.isFinite(declared) && declared > maxBytes) throw tooLarge();
  if (busy.has(dir)) throw new HttpError(409, 'ERR_UI_BUSY', 'another upload is under way; wait for it');
  busy.add(dir);
  try {
    return await receive(c, dir, prefix, maxBytes, declared, tooLarge);
  } finally {
    busy.delete(dir);
  }
}

async function receive(
  c: Context,
  dir: string,
  prefix: string,
  maxBytes: number,
  declared: number,
  tooLarge: () => HttpError,
): Promise<{ file: string; bytes: number }> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  sweep(dir);
  const fs = statfsSync(dir);
  const need = (Number.isFinite(declared) ? declared : maxBytes) + RESERVE_BYTES;
  if (fs.bavail * fs.bsize < need) {
    throw new HttpError(507, 'ERR_UI_NO_SPACE', 'not enough free space on the data disk for this upload');
  }
  const body = c.req.raw.body;
  if (!body) throw new HttpError(400, 'ERR_UI_INVALID', 'the upload is empty');
  const file = join(dir, `${prefix}-${randomUUID()}.part`);
  const out = await open(file, 'wx', 0o600);
  const reader = body.getReader();
  let bytes = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.byteLength;
      if (bytes > maxBytes) {
        await reader.cancel();
        throw tooLarge();
      }
      await out.write(value);
    }
    await out.sync();
  } catch (err) {
    await out.close();
    rmSync(file, { force: true });
    if (err instanceof HttpError) throw err;
    throw new HttpError(400, 'ERR_UI_UPLOAD', 'the upload was interrupted');
  }
  await out.close();
  if (bytes === 0) {
    rmSync(file, { force: true });
    throw new HttpError(400, 'ERR_UI_INVALID', 'the upload is empty');
  }
  return { file, bytes };
}
