// An attacker that opens COUNT TCP connections from LOCAL_ADDRESS to HOST:PORT and never sends a byte, keeping
// every one it gets open until its stdin closes. Plain JavaScript in its own process, so the test can give it a
// descriptor limit of its own (prlimit) without raising the test runner's.
// Usage: node tcp-flood.mjs HOST PORT LOCAL_ADDRESS COUNT [IN_FLIGHT]
// Prints JSON lines: {"progress":…} now and then, {"done":…} once every attempt has connected or failed.
import net from 'node:net';

const [host, portText, localAddress, countText, inFlightText = '1000'] = process.argv.slice(2);
const port = Number(portText);
const count = Number(countText);
const inFlight = Number(inFlightText);
const stats = { attempted: 0, connected: 0, failed: 0, closedByPeer: 0, open: 0 };
const sockets = [];
let pending = 0;
let reported = 0;

function report(kind) {
  process.stdout.write(`${JSON.stringify({ [kind]: { ...stats } })}\n`);
}

function next() {
  while (pending < inFlight && stats.attempted < count) {
    stats.attempted++;
    pending++;
    const s = net.connect({ host, port, localAddress });
    let settled = false;
    let wasConnected = false;
    const settle = (ok) => {
      if (settled) return;
      settled = true;
      pending--;
      if (ok) stats.connected++;
      else stats.failed++;
      if (stats.connected + stats.failed - reported >= 1000) {
        reported = stats.connected + stats.failed;
        report('progress');
      }
      if (stats.connected + stats.failed === count) report('done');
      else setImmediate(next);
    };
    s.once('connect', () => {
      wasConnected = true;
      stats.open++;
      settle(true);
    });
    s.on('error', () => settle(false));
    s.once('close', () => {
      if (wasConnected) {
        stats.open--;
        stats.closedByPeer++;
      }
      settle(false);
    });
    s.resume();
    sockets.push(s);
  }
}

next();
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
