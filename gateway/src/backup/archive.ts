import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  randomBytes,
  scryptSync,
  timingSafeEqual,
  verify,
  X509Certificate,
} from 'node:crypto';
import { z } from 'zod';
import { BackupError } from './errors.ts';

/**
 * The backup archive (docs/backup.md):
 *
 *     "PORTCULLIS-BACKUP 1\n"
 *     u32 header length · header (JSON: versions, the signer's certificate, KDF parameters, IV, passphrase check)
 *     u32 ciphertext length · AES-256-GCM ciphertext of the payload (AAD: magic + header bytes) · 16-byte tag
 *     u32 signature length · ECDSA P-256/SHA-256 signature by the gateway identity key over
 *         SHA-256("portcullis backup v1\n" · header · ciphertext · tag)
 *
 * Authenticity comes from the passphrase: the key is scrypt(passphrase), and GCM authenticates the header (AAD)
 * and the payload, so nobody without the passphrase can make or change an archive that opens. The identity
 * signature is checked first (a changed byte is refused before the slow KDF runs) and tells the restoring
 * person which gateway made the archive (its certificate's fingerprint), which they can pin with
 * `--expect-identity`; it cannot be the only check, because the replacement gateway does not know the old
 * box's key in advance — the certificate travels inside the archive.
 */
export const MAGIC = Buffer.from('PORTCULLIS-BACKUP 1\n', 'latin1');
export const FORMAT = 1;
const SIGNED_PREFIX = Buffer.from('portcullis backup v1\n', 'latin1');
const CHECK_LABEL = 'portcullis backup passphrase check v1';
const TAG_BYTES = 16;

/** scrypt cost: 2^17 × 8 × 128 B = 128 MiB and a fraction of a second per derivation. */
export const DEFAULT_KDF = { N: 2 ** 17, r: 8, p: 1 };
/** A header can only ask for costs within these bounds (a forged one must not make the restore exhaust memory). */
const KDF_BOUNDS = { minLogN: 14, maxLogN: 18, maxR: 16, maxP: 4 };
export const MIN_PASSPHRASE_CHARS = 12;

const headerSchema = z.strictObject({
  format: z.literal(FORMAT),
  product: z.literal('portcullis'),
  createdAt: z.string().max(40),
  gatewayVersion: z.string().max(40),
  schemaVersion: z.number().int().min(0),
  keystoreBackend: z.enum(['software', 'tpm2']),
  identity: z.strictObject({ certificate: z.string().max(8192), fingerprint: z.string().max(200) }),
  kdf: z.strictObject({
    name: z.literal('scrypt'),
    N: z.number().int(),
    r: z.number().int().min(1).max(KDF_BOUNDS.maxR),
    p: z.number().int().min(1).max(KDF_BOUNDS.maxP),
    salt: z.string().max(64),
  }),
  cipher: z.literal('aes-256-gcm'),
  iv: z.string().max(32),
  check: z.string().max(64),
});
export type ArchiveHeader = z.output<typeof headerSchema>;

/** A secret that was wrapped under the old gateway's data key, carried in the clear inside the encryption. */
export type CarriedSecret =
  | { kind: 'psk'; credentialId: number; lookup: string; value: string }
  | { kind: 'totp'; username: string; value: string };

/**
 * What an archive may hold: the database, the main configuration file, and the console's own configuration
 * file with the uplink CA it names (a gateway with `consoleConfigFile`; docs/backup.md).
 */
export const ARCHIVE_FILES = ['portcullis.db', 'config.yaml', 'console.yaml', 'console-ca.pem'] as const;
export type ArchiveFileName = (typeof ARCHIVE_FILES)[number];

const indexSchema = z.strictObject({
  files: z
    .array(
      z.strictObject({
        name: z.enum(ARCHIVE_FILES),
        size: z.number().int().min(0),
        sha256: z.string().length(64),
      }),
    )
    .max(8),
  secrets: z
    .array(
      z.discriminatedUnion('kind', [
        z.strictObject({
          kind: z.literal('psk'),
          credentialId: z.number().int(),
          lookup: z.string().max(256),
          value: z.string().max(512),
        }),
        z.strictObject({ kind: z.literal('totp'), username: z.string().max(64), value: z.string().max(512) }),
      ]),
    )
    .max(1_000_000),
});
export type ArchiveIndex = z.output<typeof indexSchema>;

export interface ArchiveContents {
  files: Map<ArchiveFileName, Buffer>;
  secrets: CarriedSecret[];
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function deriveKeys(passphrase: string, kdf: ArchiveHeader['kdf']): { enc: Buffer; check: Buffer } {
  const key = scryptSync(passphrase.normalize('NFC'), Buffer.from(kdf.salt, 'base64'), 64, {
    N: kdf.N,
    r: kdf.r,
    p: kdf.p,
    maxmem: 256 * kdf.N * kdf.r + 16 * 1024 * 1024,
  });
  return { enc: key.subarray(0, 32), check: key.subarray(32) };
}

function passphraseCheck(checkKey: Buffer): Buffer {
  return createHmac('sha256', checkKey).update(CHECK_LABEL).digest();
}

function signedDigest(header: Buffer, sealed: Buffer): Buffer {
  return createHash('sha256').update(SIGNED_PREFIX).update(header).update(sealed).digest();
}

export function certificateFingerprint(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

export function assertPassphrase(passphrase: string): void {
  if ([...passphrase].length < MIN_PASSPHRASE_CHARS) {
    throw new BackupError(
      'ERR_BACKUP_WEAK_PASSPHRASE',
      `the passphrase must have at least ${MIN_PASSPHRASE_CHARS} characters`,
    );
  }
}

/** Payload: u32 index length · index JSON · the files' bytes in index order. */
function encodePayload(contents: ArchiveContents): Buffer {
  const files = [...contents.files.entries()];
  const index: ArchiveIndex = {
    files: files.map(([name, data]) => ({
      name,
      size: data.length,
      sha256: createHash('sha256').update(data).digest('hex'),
    })),
    secrets: contents.secrets,
  };
  const json = Buffer.from(JSON.stringify(index), 'utf8');
  return Buffer.concat([u32(json.length), json, ...files.map(([, d]) => d)]);
}

function decodePayload(payload: Buffer): ArchiveContents {
  const tampered = (why: string) => new BackupError('ERR_BACKUP_TAMPERED', `the archive's contents: ${why}`);
  if (payload.length < 4) throw tampered('too short');
  const len = payload.readUInt32BE(0);
  if (4 + len > payload.length) throw tampered('the index is cut off');
  let index: ArchiveIndex;
  try {
    index = indexSchema.parse(JSON.parse(payload.subarray(4, 4 + len).toString('utf8')));
  } catch {
    throw tampered('the index is not valid');
  }
  const files = new Map<ArchiveFileName, Buffer>();
  let at = 4 + len;
  for (const f of index.files) {
    const data = payload.subarray(at, at + f.size);
    if (data.length !== f.size) throw tampered(`${f.name} is cut off`);
    if (createHash('sha256').update(data).digest('hex') !== f.sha256)
      throw tampered(`${f.name} does not match`);
    files.set(f.name, data);
    at += f.size;
  }
  if (at !== payload.length) throw tampered('bytes after the last file');
  return { files, secrets: index.secrets };
}

export interface SealInput {
  passphrase: string;
  header: Omit<ArchiveHeader, 'format' | 'product' | 'kdf' | 'cipher' | 'iv' | 'check' | 'identity'>;
  identityCertificate: string;
  sign: (digest: Buffer) => Buffer;
  contents: ArchiveContents;
  /** Tests use a cheaper scrypt; the header records whatever was used. */
  kdf?: { N: number; r: number; p: number };
}

/** Encrypts, authenticates and signs `contents` into one archive. */
export function sealArchive(input: SealInput): Buffer {
  assertPassphrase(input.passphrase);
  const kdfParams = input.kdf ?? DEFAULT_KDF;
  const kdf = { name: 'scrypt' as const, ...kdfParams, salt: randomBytes(16).toString('base64') };
  const keys = deriveKeys(input.passphrase, kdf);
  const iv = randomBytes(12);
  const header: ArchiveHeader = {
    format: FORMAT,
    product: 'portcullis',
    ...input.header,
    identity: {
      certificate: input.identityCertificate,
      fingerprint: certificateFingerprint(input.identityCertificate),
    },
    kdf,
    cipher: 'aes-256-gcm',
    iv: iv.toString('base64'),
    check: passphraseCheck(keys.check).toString('base64'),
  };
  const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
  const cipher = createCipheriv('aes-256-gcm', keys.enc, iv);
  cipher.setAAD(Buffer.concat([MAGIC, headerBytes]));
  const payload = encodePayload(input.contents);
  const sealed = Buffer.concat([cipher.update(payload), cipher.final(), cipher.getAuthTag()]);
  const signature = input.sign(signedDigest(headerBytes, sealed));
  return Buffer.concat([
    MAGIC,
    u32(headerBytes.length),
    headerBytes,
    u32(sealed.length),
    sealed,
    u32(signature.length),
    signature,
  ]);
}

interface Framed {
  header: ArchiveHeader;
  headerBytes: Buffer;
  sealed: Buffer;
  signature: Buffer;
}

function frame(archive: Buffer): Framed {
  const bad = (why: string) =>
    new BackupError('ERR_BACKUP_FORMAT', `not a Portcullis backup archive: ${why}`);
  if (archive.length < MAGIC.length || !archive.subarray(0, MAGIC.length).equals(MAGIC)) {
    if (archive.subarray(0, 18).toString('latin1') === 'PORTCULLIS-BACKUP ') {
      throw new BackupError(
        'ERR_BACKUP_SCHEMA_NEWER',
        'the archive is in a newer format than this release reads: restore it with a newer release',
      );
    }
    throw bad('no PORTCULLIS-BACKUP header');
  }
  let at = MAGIC.length;
  const take = (what: string): Buffer => {
    if (at + 4 > archive.length) throw bad(`${what} is cut off`);
    const len = archive.readUInt32BE(at);
    at += 4;
    if (at + len > archive.length) throw bad(`${what} is cut off`);
    const out = archive.subarray(at, at + len);
    at += len;
    return out;
  };
  const headerBytes = take('the header');
  const sealed = take('the payload');
  const signature = take('the signature');
  if (at !== archive.length) throw bad('bytes after the signature');
  if (sealed.length < TAG_BYTES) throw bad('the payload is cut off');
  let raw: unknown;
  try {
    raw = JSON.parse(headerBytes.toString('utf8'));
  } catch {
    throw bad('the header is not JSON');
  }
  const format = (raw as { format?: unknown }).format;
  if (typeof format === 'number' && format > FORMAT) {
    throw new BackupError(
      'ERR_BACKUP_SCHEMA_NEWER',
      `archive format ${format} is newer than this release reads (${FORMAT})`,
    );
  }
  const r = headerSchema.safeParse(raw);
  if (!r.success) throw bad(`the header is not valid (${r.error.issues[0]?.path.join('.') ?? ''})`);
  const logN = Math.log2(r.data.kdf.N);
  if (!Number.isInteger(logN) || logN < KDF_BOUNDS.minLogN || logN > KDF_BOUNDS.maxLogN) {
    throw bad('the key derivation parameters are outside what this release accepts');
  }
  return { header: r.data, headerBytes, sealed, signature };
}

/**
 * Reads the header and checks the identity signature, without the passphrase: what the archive says it is and
 * who made it. Throws ERR_BACKUP_FORMAT / ERR_BACKUP_SCHEMA_NEWER / ERR_BACKUP_SIGNATURE.
 */
export function inspectArchive(archive: Buffer, expectIdentity?: string): ArchiveHeader {
  const f = frame(archive);
  let ok = false;
  try {
    const key = new X509Certificate(f.header.identity.certificate).publicKey;
    ok = verify('sha256', signedDigest(f.headerBytes, f.sealed), key, f.signature);
  } catch {
    ok = false;
  }
  if (!ok) {
    throw new BackupError(
      'ERR_BACKUP_SIGNATURE',
      "the archive's identity signature does not verify: it was changed after it was made",
    );
  }
  if (certificateFingerprint(f.header.identity.certificate) !== f.header.identity.fingerprint) {
    throw new BackupError(
      'ERR_BACKUP_SIGNATURE',
      "the archive's signer fingerprint does not match its certificate",
    );
  }
  if (
    expectIdentity &&
    normaliseFingerprint(expectIdentity) !== normaliseFingerprint(f.header.identity.fingerprint)
  ) {
    throw new BackupError(
      'ERR_BACKUP_SIGNATURE',
      `the archive was made by gateway ${f.header.identity.fingerprint}, not the expected ${expectIdentity}`,
    );
  }
  return f.header;
}

function normaliseFingerprint(f: string): string {
  return f.replace(/[^0-9a-f]/gi, '').toUpperCase();
}

/** inspectArchive, then the passphrase and the decryption: the whole archive, or a typed refusal. */
export function openArchive(
  archive: Buffer,
  passphrase: string,
  expectIdentity?: string,
): { header: ArchiveHeader; contents: ArchiveContents } {
  const header = inspectArchive(archive, expectIdentity);
  const f = frame(archive);
  const keys = deriveKeys(passphrase, header.kdf);
  const expected = Buffer.from(header.check, 'base64');
  const actual = passphraseCheck(keys.check);
  if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) {
    throw new BackupError('ERR_BACKUP_PASSPHRASE', 'the passphrase does not open this archive');
  }
  const decipher = createDecipheriv('aes-256-gcm', keys.enc, Buffer.from(header.iv, 'base64'));
  decipher.setAAD(Buffer.concat([MAGIC, f.headerBytes]));
  decipher.setAuthTag(f.sealed.subarray(f.sealed.length - TAG_BYTES));
  let payload: Buffer;
  try {
    payload = Buffer.concat([
      decipher.update(f.sealed.subarray(0, f.sealed.length - TAG_BYTES)),
      decipher.final(),
    ]);
  } catch {
    throw new BackupError(
      'ERR_BACKUP_TAMPERED',
      'the encrypted payload was changed: it does not authenticate',
    );
  }
  return { header, contents: decodePayload(payload) };
}
