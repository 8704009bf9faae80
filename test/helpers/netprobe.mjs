// Real-packet probes for the segmentation tests, run inside a network namespace with `ip netns exec`.
// Plain JavaScript so each probe starts fast (no TypeScript loader).
//   serve tcp:PORT,... udp:PORT,...        echo servers; prints "ready" when listening
//   connect HOST PORT TIMEOUT_MS           exit 0 if a TCP connection opens (the SYN got through), 1 otherwise
//   session HOST PORT                      one TCP connection; each stdin line is sent, "pong" or "timeout" printed
//   udpflood HOST PORT COUNT               sends COUNT datagrams as fast as it can
import { createSocket } from 'node:dgram';
import { connect, createServer } from 'node:net';
import { createInterface } from 'node:readline';

const [mode, ...args] = process.argv.slice(2);

function echoOnce(sock, timeoutMs) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    sock.once('data', () => {
      clearTimeout(timer);
      resolve(true);
    });
    sock.write('ping\n');
  });
}

if (mode === 'serve') {
  let pending = 0;
  for (const spec of args) {
    const [proto, port] = spec.split(':');
    pending++;
    if (proto === 'tcp') {
      createServer((s) => {
        s.on('data', (d) => s.write(d));
        s.on('error', () => {});
      }).listen(Number(port), '0.0.0.0', done);
    } else {
      const u = createSocket('udp4');
      u.on('message', (m, r) => u.send(m, r.port, r.address));
      u.bind(Number(port), '0.0.0.0', done);
    }
  }
  function done() {
    if (--pending === 0) console.log('ready');
  }
} else if (mode === 'connect') {
  const [host, port, timeout] = args;
  const s = connect({ host, port: Number(port) });
  const timer = setTimeout(() => process.exit(1), Number(timeout));
  s.on('error', () => process.exit(1));
  s.on('connect', () => {
    clearTimeout(timer);
    process.exit(0);
  });
} else if (mode === 'session') {
  const [host, port] = args;
  const s = connect({ host, port: Number(port) });
  s.on('error', () => console.log('error'));
  s.on('connect', () => {
    console.log('connected');
    createInterface({ input: process.stdin }).on('line', async () => {
      console.log((await echoOnce(s, 400)) ? 'pong' : 'timeout');
    });
  });
} else if (mode === 'udpflood') {
  const [host, port, count] = args;
  const u = createSocket('udp4');
  const payload = Buffer.alloc(32);
  let sent = 0;
  const next = () => {
    if (sent >= Number(count)) return u.close();
    sent++;
    u.send(payload, Number(port), host, next);
  };
  next();
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
