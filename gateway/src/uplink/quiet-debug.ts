/**
 * Gives mqtt.js and mqtt-packet a `debug` that does nothing, where nobody asked for their debug output (`DEBUG`
 * unset). Imported by connection.ts before mqtt, so the uplink's thread and its TPM child process load it first.
 *
 * Why: `debug` 4's logger takes `(...args)`, so each call builds its argument array before it checks whether its
 * namespace is enabled, and mqtt-packet calls it for every field it writes (about ten a PUBLISH). In the uplink
 * thread under load that was ~40 % of everything allocated (V8's sampling heap profiler: 1,034 MB in six seconds
 * before, 609 MB after, at ~11,000 publishes a second): more scavenges, more of the in-flight publishes promoted,
 * more major collections on the thread every reading passes through (issue 23).
 *
 * With `DEBUG` set, to whatever namespaces, the real `debug` loads as before: a technician tracing mqtt.js gets
 * its output. What is replaced is the `debug` mqtt and mqtt-packet resolve — npm's hoisted copy, which any other
 * package in the same process would share — in the CommonJS cache of the process or thread that imports this
 * module: in the uplink's thread and its TPM child only mqtt's packages load it.
 */
import Module, { createRequire } from 'node:module';

type Quiet = (() => void) & { enabled: false; namespace: string; log: () => void; extend: typeof quietDebug };

function quietDebug(namespace: string): Quiet {
  return Object.assign(() => {}, { enabled: false as const, namespace, log: () => {}, extend: quietDebug });
}
// What packages call on the factory itself: enabling at run time has nothing to enable.
Object.assign(quietDebug, {
  enable: () => {},
  disable: () => '',
  enabled: () => false,
  names: [],
  skips: [],
});

/** The `debug` module paths mqtt and mqtt-packet load (one when npm deduplicates them). */
function debugPaths(): string[] {
  const here = createRequire(import.meta.url);
  const mqtt = here.resolve('mqtt');
  const packet = createRequire(mqtt).resolve('mqtt-packet');
  return [...new Set([createRequire(mqtt).resolve('debug'), createRequire(packet).resolve('debug')])];
}

/** Installs the quiet `debug` for mqtt's packages unless `DEBUG` asks for output. */
function quietMqttDebug(): void {
  if (process.env.DEBUG) return;
  const cache = createRequire(import.meta.url).cache;
  const paths = debugPaths();
  // Already loaded (by a module imported before this one): mqtt may hold it too, so it stays as it is.
  if (paths.some((path) => cache[path])) return;
  for (const path of paths) {
    const m = new Module(path);
    m.filename = path;
    m.loaded = true;
    m.exports = quietDebug;
    cache[path] = m;
  }
}

quietMqttDebug();
