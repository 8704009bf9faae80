/**
 * The database file opened directly with better-sqlite3, as someone with access to the file would: for tests
 * that tamper with rows on purpose or read what is really on disk. The Store keeps its connection private, so
 * these tests model the attacker (or the forensic reader) from outside it.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';

export type RawDb = Database.Database;

/** The database file of a data directory (the name the Store gives it). */
export function databaseFileIn(dataDir: string): string {
  return join(dataDir, 'portcullis.db');
}

/** Opens `file` (a WAL database another connection may hold open), runs `fn`, closes it. */
export function withRawDb<T>(file: string, fn: (db: RawDb) => T): T {
  const db = new Database(file);
  try {
    db.pragma('busy_timeout = 5000');
    return fn(db);
  } finally {
    db.close();
  }
}
