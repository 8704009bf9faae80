import type { Db } from '../database.ts';

/** Which addresses serve a MUD controller class (or a MUD URL's my-controller) on this site. */
export class MudControllerRepository {
  constructor(private readonly db: Db) {}

  add(uri: string, address: string): boolean {
    return (
      this.db.prepare('INSERT OR IGNORE INTO mud_controllers (uri, address) VALUES (?, ?)').run(uri, address)
        .changes > 0
    );
  }

  remove(uri: string, address: string): boolean {
    return (
      this.db.prepare('DELETE FROM mud_controllers WHERE uri = ? AND address = ?').run(uri, address).changes >
      0
    );
  }

  list(): { uri: string; address: string }[] {
    return this.db.prepare('SELECT uri, address FROM mud_controllers ORDER BY uri, address').all() as {
      uri: string;
      address: string;
    }[];
  }
}
