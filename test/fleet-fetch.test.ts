/**
 * Fetching a document's update bundle over real HTTPS (a local node:https server with a test CA): the bytes
 * must hash to the signed SHA-256, redirects stay on https, the size cap holds with and without a
 * Content-Length, a stalled server hits the deadline, and nothing is left on disk after any refusal.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { type FetchLimits, fetchVerified } from '../gateway/src/fleet/fetch.ts';
import { makePki, type TestPki } from './helpers/pki.ts';
import { tempDir } from './helpers/tmp.ts';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const BUNDLE = randomBytes(64 * 1024);

describe('fleet update bundle fetch', () => {
  let pki: TestPki;
  let server: Server;
  let base: string;
  let limits: FetchLimits;

  before(async () => {
    pki = makePki();
    server = createServer(
      { cert: readFileSync(pki.broker.certPath), key: readFileSync(pki.broker.keyPath) },
      (req, res) => {
        const path = req.url ?? '/';
        if (path === '/bundle.tar') res.end(BUNDLE);
        else if (path === '/hop') res.writeHead(302, { location: '/bundle.tar' }).end();
        else if (path === '/to-http') res.writeHead(302, { location: 'http://127.0.0.1:1/bundle.tar' }).end();
        else if (path === '/loop') res.writeHead(302, { location: '/loop' }).end();
        else if (path === '/big-declared') {
          res.writeHead(200, { 'content-length': String(2 * 1024 * 1024) });
          res.end(Buffer.alloc(1024));
        } else if (path === '/big-chunked') {
          // No Content-Length: the cap must hold while the bytes arrive.
          res.writeHead(200);
          for (let i = 0; i < 40; i++) res.write(Buffer.alloc(64 * 1024));
          res.end();
        } else if (path === '/stall') {
          res.writeHead(200);
          res.write(Buffer.alloc(10));
        } else res.writeHead(404).end();
      },
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    limits = { allowFileUrls: false, maxBytes: 1024 * 1024, timeoutMs: 5000, ca: readFileSync(pki.caPath) };
  });

  after(() => {
    server?.closeAllConnections();
    server?.close();
    pki?.dispose();
  });

  it('fetches a bundle whose bytes hash to the signed value, also through a redirect', async (t) => {
    const dir = tempDir(t);
    for (const path of ['/bundle.tar', '/hop']) {
      const got = await fetchVerified(`${base}${path}`, sha(BUNDLE), dir, limits);
      assert.deepEqual(readFileSync(got.path), BUNDLE);
      assert.equal(got.bytes, BUNDLE.length);
      got.dispose();
    }
    assert.deepEqual(readdirSync(dir), []);
  });

  it('refuses, leaving nothing behind: another hash, plain http, a redirect off https, a loop, too big, a 404, a stall, file: unless allowed, an untrusted certificate', async (t) => {
    const dir = tempDir(t);
    const refused = async (url: string, code: string, l: FetchLimits = limits, hash = sha(BUNDLE)) => {
      await assert.rejects(fetchVerified(url, hash, dir, l), { code }, url);
      assert.deepEqual(readdirSync(dir), [], `${url}: nothing left`);
    };
    await refused(`${base}/bundle.tar`, 'ERR_FLEET_FETCH_HASH', limits, sha(Buffer.from('another')));
    await refused(`http://127.0.0.1:1/bundle.tar`, 'ERR_FLEET_FETCH_URL');
    await refused(`${base}/to-http`, 'ERR_FLEET_FETCH_URL');
    await refused(`${base}/loop`, 'ERR_FLEET_FETCH');
    await refused(`${base}/big-declared`, 'ERR_FLEET_FETCH_SIZE');
    await refused(`${base}/big-chunked`, 'ERR_FLEET_FETCH_SIZE');
    await refused(`${base}/missing`, 'ERR_FLEET_FETCH');
    await refused(`${base}/stall`, 'ERR_FLEET_FETCH', { ...limits, timeoutMs: 300 });
    await refused('not a url', 'ERR_FLEET_FETCH_URL');
    const file = join(tempDir(t), 'bundle.tar');
    writeFileSync(file, BUNDLE);
    await refused(pathToFileURL(file).href, 'ERR_FLEET_FETCH_URL');
    const { ca: _ca, ...systemCas } = limits;
    await refused(`${base}/bundle.tar`, 'ERR_FLEET_FETCH', systemCas);
    const ok = await fetchVerified(pathToFileURL(file).href, sha(BUNDLE), dir, {
      ...limits,
      allowFileUrls: true,
    });
    ok.dispose();
  });
});
