import {
  closeSync,
  cpSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { create, extract, list, type ReadEntry } from 'tar';
import { sha256Hex } from '../digest.ts';
import { UpdateError } from './errors.ts';
import { type Manifest, manifestSchema, parseManifest, signManifest } from './manifest.ts';

/**
 * An update bundle is one tar file: `manifest.json`, `manifest.sig` (Ed25519, base64, over the manifest's exact
 * bytes) and the release under `files/`. Nothing is unpacked before the signature and the manifest check out.
 */
export const MANIFEST = 'manifest.json';
export const SIGNATURE = 'manifest.sig';
const FILES = 'files/';
const MAX_HEADER_BYTES = 4 * 1024 * 1024;

export interface BundleHeader {
  manifestBytes: Buffer;
  signature: Buffer | undefined;
}

function tarError(err: unknown): UpdateError {
  const e = err as { code?: string; message?: string };
  return new UpdateError(
    'ERR_UPDATE_TRUNCATED',
    `the bundle is not a complete tar file (${e.code ?? e.message ?? 'unreadable'})`,
    { cause: err },
  );
}

/**
 * A whole tar file is a sequence of 512-byte blocks ending in two zero blocks; a bundle cut short in transfer
 * (the common failure) does not, and is refused before anything is read from it.
 */
function assertComplete(file: string): void {
  let size: number;
  let tail: Buffer;
  try {
    size = statSync(file).size;
    const fd = openSync(file, 'r');
    try {
      tail = Buffer.alloc(1024);
      readSync(fd, tail, 0, 1024, Math.max(0, size - 1024));
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    throw new UpdateError(
      'ERR_UPDATE_INVALID',
      `cannot read the bundle (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  if (size < 1024 || size % 512 !== 0 || tail.some((b) => b !== 0)) {
    throw new UpdateError(
      'ERR_UPDATE_TRUNCATED',
      'the bundle is not a complete tar file (no end-of-archive marker)',
    );
  }
}

/** Reads the manifest and its signature out of the bundle (the whole file is walked: a cut file fails here). */
export async function readHeader(file: string): Promise<BundleHeader> {
  assertComplete(file);
  const found: Record<string, Buffer> = {};
  const reads: Promise<void>[] = [];
  try {
    await list({
      file,
      strict: true,
      onReadEntry: (entry: ReadEntry) => {
        if (entry.path !== MANIFEST && entry.path !== SIGNATURE) return entry.resume();
        if (entry.size > MAX_HEADER_BYTES)
          throw new UpdateError('ERR_UPDATE_INVALID', `${entry.path} is too large`);
        reads.push(
          new Promise<void>((resolve, reject) => {
            const chunks: Buffer[] = [];
            entry.on('data', (c: Buffer) => chunks.push(c));
            entry.on('end', () => {
              found[entry.path] = Buffer.concat(chunks);
              resolve();
            });
            entry.on('error', reject);
          }),
        );
      },
    });
    await Promise.all(reads);
  } catch (err) {
    if (err instanceof UpdateError) throw err;
    throw tarError(err);
  }
  const manifestBytes = found[MANIFEST];
  if (!manifestBytes) throw new UpdateError('ERR_UPDATE_INVALID', 'the bundle has no manifest.json');
  return { manifestBytes, signature: found[SIGNATURE] };
}

/** Every regular file under `dir`, by forward-slash path relative to it. */
export function walkFiles(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const visit = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) visit(p);
      else if (e.isFile()) out.set(relative(dir, p).split(sep).join('/'), p);
      else throw new UpdateError('ERR_UPDATE_TAMPERED', `${relative(dir, p)} is not a regular file`);
    }
  };
  visit(dir);
  return out;
}

/**
 * Unpacks the release into `staging` — only entries the (already verified) manifest lists, only regular files
 * and directories — then checks every file's SHA-256 and that nothing else arrived.
 */
export async function extractRelease(file: string, manifest: Manifest, staging: string): Promise<void> {
  const listed = new Set(Object.keys(manifest.files).map((p) => `${FILES}${p}`));
  const refused: string[] = [];
  try {
    await extract({
      file,
      cwd: staging,
      strict: true,
      preservePaths: false,
      filter: (path, entry) => {
        if (path === MANIFEST || path === SIGNATURE) return false;
        const type = (entry as ReadEntry).type;
        const ok = (type === 'Directory' && path.startsWith(FILES)) || (type === 'File' && listed.has(path));
        if (!ok) refused.push(path);
        return ok;
      },
    });
  } catch (err) {
    throw tarError(err);
  }
  if (refused.length > 0) {
    throw new UpdateError(
      'ERR_UPDATE_TAMPERED',
      `the bundle holds entries its manifest does not list: ${refused.slice(0, 3).join(', ')}`,
    );
  }
  const root = join(staging, 'files');
  const present = statSync(root, { throwIfNoEntry: false }) ? walkFiles(root) : new Map<string, string>();
  for (const [path, digest] of Object.entries(manifest.files)) {
    const on = present.get(path);
    if (!on) throw new UpdateError('ERR_UPDATE_TAMPERED', `${path} is listed in the manifest but missing`);
    if (sha256Hex(readFileSync(on)) !== digest) {
      throw new UpdateError('ERR_UPDATE_TAMPERED', `${path} does not match its SHA-256 in the manifest`);
    }
  }
  for (const path of present.keys()) {
    if (!(path in manifest.files))
      throw new UpdateError('ERR_UPDATE_TAMPERED', `${path} is not in the manifest`);
  }
}

export interface BuildRequest {
  source: string;
  version: string;
  minVersion: string;
  hardware: Manifest['hardware'];
  notes: string;
  privateKeyPem: string;
  out: string;
  now?: Date;
}

/** For the release manager: hash every file of a release folder, sign the manifest, write the bundle. */
export async function buildBundle(req: BuildRequest): Promise<Manifest> {
  const files: Record<string, string> = {};
  for (const [path, abs] of walkFiles(req.source)) files[path] = sha256Hex(readFileSync(abs));
  const manifest = manifestSchema.parse({
    format: 1,
    product: 'portcullis',
    version: req.version,
    minVersion: req.minVersion,
    hardware: req.hardware,
    notes: req.notes,
    createdAt: (req.now ?? new Date()).toISOString(),
    files,
  });
  const bytes = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
  parseManifest(bytes);
  const work = mkdtempSync(join(tmpdir(), 'portcullis-bundle-'));
  try {
    writeFileSync(join(work, MANIFEST), bytes);
    writeFileSync(join(work, SIGNATURE), `${signManifest(bytes, req.privateKeyPem)}\n`);
    cpSync(req.source, join(work, 'files'), { recursive: true });
    await create({ file: req.out, cwd: work, portable: true }, [MANIFEST, SIGNATURE, 'files']);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return manifest;
}
