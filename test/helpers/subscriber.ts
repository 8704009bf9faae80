import { type ChildProcess, spawn } from 'node:child_process';
import type { Broker } from './mosquitto.ts';
import type { TestPki } from './pki.ts';

export interface Received {
  topic: string;
  payload: Buffer;
  /** MQTT 5 user properties as mosquitto_sub prints them ("key:value" …). */
  properties: string;
}

export interface Subscriber {
  messages: Received[];
  waitFor(pred: (m: Received[]) => boolean, what: string, timeoutMs?: number): Promise<void>;
  stop(): void;
}

/** `mosquitto_sub` with its own client certificate, subscribed (SUBACK seen) before this resolves. */
export function startSubscriber(pki: TestPki, broker: Broker, topic: string): Promise<Subscriber> {
  // stdbuf: mosquitto_sub block-buffers its debug output on a pipe, and SUBACK is what we wait for.
  const child: ChildProcess = spawn(
    'stdbuf',
    [
      '-oL',
      'mosquitto_sub',
      '-h',
      '127.0.0.1',
      '-p',
      String(broker.port),
      '--cafile',
      pki.caPath,
      '--cert',
      pki.client.certPath,
      '--key',
      pki.client.keyPath,
      '-V',
      'mqttv5',
      '-q',
      '1',
      '-t',
      topic,
      '-d',
      '-F',
      'MSG|%t|%x|%P',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const messages: Received[] = [];
  let buf = '';
  let subscribed: (() => void) | null = null;
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    for (const line of lines) {
      if (line.includes('received SUBACK')) subscribed?.();
      if (!line.startsWith('MSG|')) continue;
      const [, t, hex, props] = line.split('|');
      messages.push({ topic: t ?? '', payload: Buffer.from(hex ?? '', 'hex'), properties: props ?? '' });
    }
  });
  const sub: Subscriber = {
    messages,
    async waitFor(pred, what, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (!pred(messages)) {
        if (Date.now() > deadline)
          throw new Error(`timed out waiting for ${what}; got ${messages.length} messages`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    stop: () => child.kill('SIGTERM'),
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`mosquitto_sub never subscribed: ${stderr}`)), 10_000);
    subscribed = () => {
      clearTimeout(timer);
      subscribed = null;
      resolve(sub);
    };
    child.once('exit', (code) => reject(new Error(`mosquitto_sub exited ${code}: ${stderr}`)));
  });
}
