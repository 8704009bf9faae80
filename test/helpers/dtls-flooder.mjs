// A DTLS handshake-slot flood (issue 19) in its own process, so the server under attack and the flood do not
// share an event loop: from each source address, ClientHellos at a fixed rate, each from a new source port,
// each answered with its cookie and then never continued. Plain JavaScript (no TypeScript loader), so it starts
// in a few tens of milliseconds.
//
// argv[2]: JSON { port, host?, sources: string[], ratePerSource, maxPerSource, holdMs? }.
// stdout: one JSON line at start ({"ready":true}), progress every 200 ms and a last line with "done": true.
// It stops when every source sent maxPerSource hellos, or when its stdin closes.
import { createSocket } from 'node:dgram';

const o = JSON.parse(process.argv[2] ?? '{}');
const host = o.host ?? '127.0.0.1';
/** How long each port stays open (to see the server's flight), then it is closed: the client never goes on. */
const holdMs = o.holdMs ?? 1000;
const counts = { sent: 0, cookies: 0, started: 0, errors: 0 };
let open = 0;
let stopping = false;

const HELLO_VERIFY_REQUEST = 3;
const SERVER_HELLO = 2;

/** A ClientHello offering TLS_PSK_WITH_AES_128_CCM_8, in one epoch-0 record: what a PSK sensor sends. */
function hello(cookie, random, messageSeq) {
  const body = Buffer.concat([
    Buffer.from([0xfe, 0xfd]),
    random,
    Buffer.from([0]), // session id
    Buffer.from([cookie.length]),
    cookie,
    Buffer.from([0, 2, 0xc0, 0xa8]), // cipher suites
    Buffer.from([1, 0]), // compression: null
  ]);
  const hs = Buffer.alloc(12 + body.length);
  hs[0] = 1; // client_hello
  hs.writeUIntBE(body.length, 1, 3);
  hs.writeUInt16BE(messageSeq, 4);
  hs.writeUIntBE(0, 6, 3);
  hs.writeUIntBE(body.length, 9, 3);
  body.copy(hs, 12);
  const rec = Buffer.alloc(13 + hs.length);
  rec[0] = 22; // handshake
  rec.writeUInt16BE(0xfefd, 1);
  rec.writeUIntBE(messageSeq, 5, 6); // epoch 0, record seq = message seq
  rec.writeUInt16BE(hs.length, 11);
  hs.copy(rec, 13);
  return rec;
}

function attempt(source) {
  const s = createSocket('udp4');
  open++;
  const random = Buffer.alloc(32);
  for (let i = 0; i < 32; i++) random[i] = (Math.random() * 256) | 0;
  let answered = false;
  s.on('error', () => {
    counts.errors++;
  });
  s.on('message', (m) => {
    if (m.length < 26 || m[0] !== 22) return;
    if (m[13] === HELLO_VERIFY_REQUEST && !answered) {
      answered = true;
      counts.cookies++;
      const cookie = m.subarray(28, 28 + m[27]);
      s.send(hello(cookie, random, 1), o.port, host);
    } else if (m[13] === SERVER_HELLO && m[4] === 0) {
      // The first record of the server's flight: a handshake slot is taken. Retransmissions are not counted.
      if (m.readUIntBE(5, 6) <= 2) counts.started++;
    }
  });
  s.bind(0, source, () => {
    counts.sent++;
    s.send(hello(Buffer.alloc(0), random, 0), o.port, host);
  });
  setTimeout(() => {
    s.close();
    open--;
    if (stopping && open === 0) finish();
  }, holdMs);
}

const report = (extra = {}) => process.stdout.write(`${JSON.stringify({ ...counts, ...extra })}\n`);
let finished = false;
function finish() {
  if (finished) return;
  finished = true;
  clearInterval(progress);
  report({ done: true });
  process.exit(0);
}
function stop() {
  if (stopping) return;
  stopping = true;
  for (const t of timers) clearInterval(t);
  if (open === 0) finish();
}

const timers = [];
let remaining = o.sources.length;
const interval = 1000 / o.ratePerSource;
o.sources.forEach((source, i) => {
  let n = 0;
  // Sources start spread over one interval, so the flood is even rather than in bursts of every source at once.
  setTimeout(
    () => {
      if (stopping) return;
      const t = setInterval(() => {
        if (stopping) return;
        attempt(source);
        if (++n >= o.maxPerSource) {
          clearInterval(t);
          if (--remaining === 0) stop();
        }
      }, interval);
      timers.push(t);
    },
    (interval * i) / o.sources.length,
  );
});
const progress = setInterval(() => report(), 200);
process.stdin.on('end', stop);
process.stdin.resume();
report({ ready: true });
