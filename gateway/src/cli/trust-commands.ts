import { readFileSync } from 'node:fs';
import { fetchCrl, IdentityError } from '../identity/index.ts';
import { cliActor, withWritableCore } from './device-commands.ts';
import { EXIT } from './exit-codes.ts';
import type { Io } from './io.ts';

/**
 * Input the operator can fix (no such anchor, not a CRL, signed by someone else, a bad URL): usage, exit 2,
 * nothing changed. A CRL that is valid but out of date or older than the one held, or a URL that did not
 * answer, is a finding at run time: exit 1.
 */
const USAGE_CODES = new Set([
  'ERR_IDENTITY_NOT_FOUND',
  'ERR_IDENTITY_INVALID',
  'ERR_IDENTITY_CRL_INVALID',
  'ERR_IDENTITY_CRL_SIGNATURE',
]);

export interface TrustCrlAddOptions {
  name: string;
  crl?: string;
  url?: string;
  refresh?: number;
}

/**
 * `identity trust crl add`: a CRL the anchor signed, from a file (PEM or DER) and/or its distribution URL
 * (fetched now, then by the running gateway every `refresh` seconds). The gateway closes the live sessions of
 * newly revoked certificates within a second.
 */
export async function trustCrlAddCommand(
  configPath: string | undefined,
  o: TrustCrlAddOptions,
  io: Io,
): Promise<number> {
  if (o.crl === undefined && o.url === undefined) {
    io.err('error: give --crl <file> and/or --url <http(s) URL>');
    return EXIT.usage;
  }
  if (o.refresh !== undefined && o.url === undefined) {
    io.err('error: --refresh needs --url');
    return EXIT.usage;
  }
  let fileBytes: Buffer | undefined;
  if (o.crl !== undefined) {
    try {
      fileBytes = readFileSync(o.crl);
    } catch (err) {
      io.err(`error [ERR_IDENTITY_CRL_FILE]: cannot read ${o.crl} (${(err as NodeJS.ErrnoException).code})`);
      return EXIT.usage;
    }
  }
  try {
    return await withWritableCore(configPath, async (core) => {
      const actor = cliActor();
      if (fileBytes) {
        const { crl, changed } = await core.revocation.addCrl(o.name, fileBytes, actor, 'file');
        io.out(
          changed
            ? `CRL for ${o.name} added: ${crl.revoked} revoked, next update ${crl.nextUpdate ?? 'not given'}`
            : `CRL for ${o.name} is the one already held`,
        );
      }
      if (o.url !== undefined) {
        // Validated and stored first: a URL that does not answer now is still where the gateway looks later.
        const d = core.revocation.setDistribution(o.name, o.url, o.refresh ?? null, actor);
        io.out(
          `CRL of ${o.name} is fetched from ${d.url} every ${d.refreshSeconds} s by the running gateway`,
        );
        if (!fileBytes) {
          const { crl } = await core.revocation.addCrl(o.name, await fetchCrl(d.url as string), actor, 'url');
          io.out(
            `CRL for ${o.name} fetched: ${crl.revoked} revoked, next update ${crl.nextUpdate ?? 'not given'}`,
          );
        }
      }
      return EXIT.ok;
    });
  } catch (err) {
    if (err instanceof IdentityError && USAGE_CODES.has(err.code)) {
      io.err(`error [${err.code}]: ${err.message}`);
      return EXIT.usage;
    }
    throw err;
  }
}

export function trustCrlListCommand(configPath: string | undefined, json: boolean, io: Io): number {
  return withWritableCore(configPath, (core) => {
    const list = core.revocation.list();
    if (json) io.out(JSON.stringify(list, null, 2));
    else
      for (const c of list) {
        io.out(
          [
            c.anchor,
            c.state,
            c.thisUpdate ?? '-',
            c.nextUpdate ?? '-',
            `${c.revoked} revoked`,
            c.url ?? '-',
          ].join('\t'),
        );
      }
    return EXIT.ok;
  });
}
