import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { PortcullisError } from '../errors.ts';
import { LATEST_SCHEMA_VERSION, MIGRATIONS } from './migrations.ts';

export type StoreErrorCode =
  | 'ERR_STORE_CORRUPT'
  | 'ERR_STORE_SCHEMA_NEWER'
  | 'ERR_STORE_OPEN'
  | 'ERR_STORE_MIGRATION'
  | 'ERR_STORE_CONFLICT'
  | 'ERR_STORE_NOT_FOUND'
  | 'ERR_STORE_QUEUE_WRITER';

export class StoreError extends PortcullisError {
  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

export type Db = Database.Database;

export interface OpenOptions {
  synchronous?: 'full' | 'normal';
  readonly?: boolean;
  /**
   * A second connection of a process whose first one checked and migrated the file (the queue writer's thread):
   * no integrity check and no migration again.
   */
  checked?: boolean;
}

const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

/** Refuse anything that is not an SQLite file before SQLite gets a chance to "recover" it by rewriting it. */
function assertSqliteHeader(file: string): void {
  if (!existsSync(file) || statSync(file).size === 0) return;
  const header = Buffer.alloc(SQLITE_MAGIC.length);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, header, 0, header.length, 0);
  } finally {
    closeSync(fd);
  }
  if (!header.equals(SQLITE_MAGIC)) {
    throw new StoreError(
      'ERR_STORE_CORRUPT',
      `${file}: not an SQLite database (bad header); refusing to open it`,
    );
  }
}

function isSqliteCorruption(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT_VTAB';
}

/**
 * Repositories call `db.prepare(sql)` per use; better-sqlite3 compiles the SQL every time (sqlite3_prepare), which
 * was 14 % of the gateway's data-path CPU (issue 23: device lookup, queue insert, downlink check per message). The
 * compiled statement is kept per SQL text and reused, unless it is still iterating (a generator over `iterate()`),
 * when a fresh one is made. Nothing here switches a statement's mode (`pluck`, `raw`, `expand`): a shared
 * statement must not be.
 */
function cacheStatements(db: Db): void {
  const prepare = db.prepare.bind(db);
  const cache = new Map<string, Database.Statement>();
  db.prepare = ((sql: string) => {
    const cached = cache.get(sql);
    if (cached && !cached.busy) return cached;
    const fresh = prepare(sql);
    if (!cached && cache.size < 1000) cache.set(sql, fresh);
    return fresh;
  }) as Db['prepare'];
}

export function openDatabase(file: string, options: OpenOptions = {}): Db {
  if (file !== ':memory:') {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    assertSqliteHeader(file);
  }
  let db: Db;
  try {
    db = new Database(file, {
      readonly: options.readonly ?? false,
      fileMustExist: options.readonly ?? false,
    });
  } catch (err) {
    throw new StoreError('ERR_STORE_OPEN', `${file}: cannot open database (${(err as Error).message})`, {
      cause: err,
    });
  }
  try {
    // It holds wrapped secrets and the audit log: owner only (SQLite gives -wal/-shm the same mode).
    if (file !== ':memory:' && !options.readonly) chmodSync(file, 0o600);
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > LATEST_SCHEMA_VERSION) {
      throw new StoreError(
        'ERR_STORE_SCHEMA_NEWER',
        `${file}: schema version ${version} is newer than this release supports (${LATEST_SCHEMA_VERSION}); ` +
          'refusing to open it — run the release that wrote it',
      );
    }
    const check = options.checked ? 'ok' : db.pragma('quick_check', { simple: true });
    if (check !== 'ok') {
      throw new StoreError(
        'ERR_STORE_CORRUPT',
        `${file}: integrity check failed (${String(check)}); refusing to use it`,
      );
    }
    if (!options.readonly) {
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${options.synchronous === 'normal' ? 'NORMAL' : 'FULL'}`);
      if (!options.checked) migrate(db, version, file);
    }
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    cacheStatements(db);
    return db;
  } catch (err) {
    db.close();
    if (err instanceof StoreError) throw err;
    if (isSqliteCorruption(err)) {
      throw new StoreError(
        'ERR_STORE_CORRUPT',
        `${file}: database is corrupt (${(err as Error).message}); refusing to use it`,
        {
          cause: err,
        },
      );
    }
    throw new StoreError('ERR_STORE_OPEN', `${file}: cannot open database (${(err as Error).message})`, {
      cause: err,
    });
  }
}

function migrate(db: Db, from: number, file: string): void {
  for (const m of MIGRATIONS) {
    if (m.version <= from) continue;
    try {
      db.transaction(() => {
        db.exec(m.sql);
        db.pragma(`user_version = ${m.version}`);
      }).immediate();
    } catch (err) {
      throw new StoreError(
        'ERR_STORE_MIGRATION',
        `${file}: migration ${m.version} (${m.name}) failed: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
  }
}
