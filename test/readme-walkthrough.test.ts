/**
 * The README's "Provision a sensor and see its data reach the cloud" section, run as written (issue 28), so the
 * README cannot drift from the product: its YAML block becomes the config and every shell line of its `sh`
 * blocks runs through bash, against a real mosquitto (TLS, client certificates required) with libcoap's
 * coap-client-openssl as the sensor.
 *
 * What the test changes, and only this (`substitute` below):
 * - paths: `/etc/portcullis/` is a fresh temporary folder (also the working directory of every command), and
 *   the config is found through `PORTCULLIS_CONFIG` instead of at /etc/portcullis/config.yaml;
 * - hosts and ports: `broker.example.net` is 127.0.0.1 and `8883` the test broker's free port; the DTLS port
 *   5684 becomes 0 (a free one, read from the gateway's start line) and `coaps://gateway-17/` points at it;
 *   the UI (not named in the section: default 8443) gets a free port too, so a gateway running beside the test
 *   is no obstacle;
 * - `keystore: { backend: tpm2 }` takes the README's own alternative, `software`: CI has no TPM;
 * - the cloud operator's files (`cloud-ca.pem`, `ops.pem`, `ops.key`) come from a test CA, and the cloud
 *   operator's step (signing `uplink.csr` into uplink.certFile) is done by the test right after `uplink csr`.
 *
 * How the blocks are read: a `\` at the end of a line continues it; `portcullis start` and `mosquitto_sub` run
 * in the background (until the test ends); every other line runs to completion and must exit 0. A comment line
 * `#   TEXT` (three spaces) is output the command before it must print; after `# NAME prints:` it is output the
 * background command NAME must print. Output is compared with runs of spaces and tabs as one space, and `…`
 * stands for any text. Other comments are for the reader.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { PORTCULLIS_BIN, runCli } from './helpers/cli.ts';
import { type Broker, startBroker } from './helpers/mosquitto.ts';
import { runPeer } from './helpers/peers.ts';
import { makePki, type TestPki } from './helpers/pki.ts';
import { tempDir } from './helpers/tmp.ts';

const REPO = dirname(dirname(fileURLToPath(import.meta.url)));
const SECTION = '## Provision a sensor and see its data reach the cloud';

interface Block {
  lang: string;
  lines: string[];
}

/** The fenced code blocks of one `##` section of the README. */
export function sectionBlocks(readme: string, heading: string): Block[] {
  const start = readme.indexOf(`\n${heading}\n`);
  assert.ok(start >= 0, `README has no section "${heading}"`);
  const next = readme.indexOf('\n## ', start + heading.length + 2);
  const text = readme.slice(start, next < 0 ? undefined : next);
  const blocks: Block[] = [];
  const fence = /^```(\w*)\n([\s\S]*?)^```$/gm;
  for (let m = fence.exec(text); m; m = fence.exec(text)) {
    blocks.push({ lang: m[1] ?? '', lines: (m[2] ?? '').replace(/\n$/, '').split('\n') });
  }
  return blocks;
}

type Step =
  | { kind: 'run'; command: string }
  | { kind: 'expect'; text: string; from: string | null }
  | { kind: 'note'; text: string };

/** Shell lines as steps: continuations joined, expected output attached to its command. */
export function steps(lines: string[]): Step[] {
  const out: Step[] = [];
  let from: string | null = null;
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i] as string;
    while (line.endsWith('\\') && i + 1 < lines.length)
      line = `${line.slice(0, -1)}${lines[++i]?.trimStart()}`;
    if (line.trim() === '') continue;
    const expected = /^# {3}(.*)$/.exec(line);
    if (expected) {
      out.push({ kind: 'expect', text: expected[1] as string, from });
      continue;
    }
    const prints = /^# (\S+) prints:$/.exec(line);
    if (prints) {
      from = prints[1] as string;
      continue;
    }
    if (line.startsWith('#')) {
      out.push({ kind: 'note', text: line });
      continue;
    }
    from = null;
    out.push({ kind: 'run', command: line });
  }
  return out;
}

/** `…` is any text; runs of blanks are one space. */
function outputPattern(text: string): RegExp {
  const esc = text
    .trim()
    .split('…')
    .map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/[ \t]+/g, ' '))
    .join('.*');
  return new RegExp(`^${esc}$`);
}

function printed(output: string, text: string): boolean {
  const re = outputPattern(text);
  return output.split('\n').some((l) => re.test(l.replace(/[ \t]+/g, ' ').trim()));
}

describe('README walkthrough: provision a sensor and see its data reach the cloud', () => {
  let pki: TestPki;
  let broker: Broker;
  before(async () => {
    pki = makePki();
    broker = await startBroker({ caPath: pki.caPath, server: pki.broker });
  });
  after(async () => {
    await broker?.dispose();
    pki?.dispose();
  });

  it('the section parses into a config and commands the test knows how to run', () => {
    const blocks = sectionBlocks(readFileSync(join(REPO, 'README.md'), 'utf8'), SECTION);
    assert.deepEqual(
      blocks.map((b) => b.lang),
      ['yaml', 'sh', 'sh', 'sh'],
    );
    assert.equal(blocks[0]?.lines[0], '# /etc/portcullis/config.yaml');
    const commands = blocks
      .slice(1)
      .flatMap((b) => steps(b.lines))
      .filter((s) => s.kind === 'run');
    for (const c of commands) {
      assert.match(
        c.command,
        /^(portcullis|openssl|mosquitto_sub|coap-client-openssl) /,
        `a command the walkthrough test does not know: ${c.command}`,
      );
    }
  });

  it("`device add --help` shows the README's path: the same key command, the key as text from stdin", async () => {
    const help = (await runCli(['device', 'add', '--help'])).stdout;
    const commands = sectionBlocks(readFileSync(join(REPO, 'README.md'), 'utf8'), SECTION)
      .slice(1)
      .flatMap((b) => steps(b.lines))
      .flatMap((s) => (s.kind === 'run' ? [s.command.replace(/\s+#.*$/, '')] : []));
    const keyCommand = commands.find((c) => c.startsWith('openssl rand'));
    assert.ok(keyCommand && help.includes(keyCommand), `${keyCommand}\n${help}`);
    assert.ok(
      commands.some((c) =>
        /^portcullis device add boiler-3 --psk-identity boiler-3 --psk-text - .*< boiler-3\.key$/.test(c),
      ),
    );
    assert.match(help, /portcullis device add boiler-3 --psk-identity boiler-3 --psk-text - < boiler-3\.key/);
  });

  it('compares output strictly enough to catch drift (the old README lines would fail)', () => {
    const out =
      'added boiler-3 (psk identity boiler-3), state active\nid\tstate\nboiler-3\tactive\tpsk\t-\t-\tnever\n';
    assert.ok(printed(out, 'added boiler-3 (psk identity boiler-3), state active'));
    assert.ok(printed(out, 'id  state'));
    assert.equal(printed(out, 'psk: 6f1c…(32 hex digits)'), false, 'the old --generate-psk output');
    assert.equal(printed(out, 'boiler-3  active  psk  -  -  2026-…'), false, 'never seen is not seen');
    assert.equal(printed('x deviceId:a receivedAt:1 credentialKind:psk', 'x receivedAt:… deviceId:a'), false);
    const parsed = steps([
      'cmd one \\',
      '  --more',
      '#   out',
      '# sub prints:',
      '#   later',
      '# a note',
      'cmd two',
    ]);
    assert.deepEqual(parsed, [
      { kind: 'run', command: 'cmd one --more' },
      { kind: 'expect', text: 'out', from: null },
      { kind: 'expect', text: 'later', from: 'sub' },
      { kind: 'note', text: '# a note' },
      { kind: 'run', command: 'cmd two' },
    ]);
  });

  it('runs as written against mosquitto and a libcoap sensor', async (t) => {
    const dir = tempDir(t);
    const bin = join(dir, '.bin');
    mkdirSync(bin);
    // `portcullis` on the PATH, as on the appliance: the checkout's command.
    writeFileSync(
      join(bin, 'portcullis'),
      `#!/bin/sh\nexec "${process.execPath}" "${PORTCULLIS_BIN}" "$@"\n`,
    );
    chmodSync(join(bin, 'portcullis'), 0o755);
    // The cloud operator's files.
    copyFileSync(pki.caPath, join(dir, 'cloud-ca.pem'));
    copyFileSync(pki.client.certPath, join(dir, 'ops.pem'));
    copyFileSync(pki.client.keyPath, join(dir, 'ops.key'));

    let dtlsPort = 0;
    const substitute = (s: string) =>
      s
        .replaceAll('/etc/portcullis/', `${dir}/`)
        .replaceAll('broker.example.net', '127.0.0.1')
        .replaceAll('8883', String(broker.port))
        .replace(/port: 5684\b/g, 'port: 0')
        .replace(/backend: tpm2\b/g, 'backend: software')
        .replaceAll('coaps://gateway-17/', `coaps://127.0.0.1:${dtlsPort}/`);

    const blocks = sectionBlocks(readFileSync(join(REPO, 'README.md'), 'utf8'), SECTION);
    const [yaml, ...shell] = blocks;
    const config = join(dir, 'config.yaml');
    writeFileSync(config, `${substitute((yaml as Block).lines.join('\n'))}\nui: { port: 0 }\n`);
    const certFile = /certFile: (\S+)/.exec(readFileSync(config, 'utf8'))?.[1] as string;
    const env = {
      ...process.env,
      PATH: `${bin}:${process.env.PATH}`,
      PORTCULLIS_CONFIG: config,
    };

    const background = new Map<string, { child: ChildProcess; output: () => string }>();
    t.after(async () => {
      for (const { child } of [...background.values()].reverse()) {
        if (child.exitCode !== null || child.signalCode !== null) continue;
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        await exited;
      }
    });
    const spawnBackground = (name: string, command: string) => {
      const child = spawn('bash', ['-c', `exec ${command}`], {
        cwd: dir,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout?.on('data', (d: Buffer) => {
        output += d.toString();
      });
      child.stderr?.on('data', (d: Buffer) => {
        output += d.toString();
      });
      background.set(name, { child, output: () => output });
      return () => output;
    };
    const waitFor = async (what: string, ok: () => boolean, timeoutMs = 20_000) => {
      const deadline = Date.now() + timeoutMs;
      while (!ok()) {
        if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };

    let lastOutput = '';
    let lastCommand = '';
    const pending: { from: string; text: string }[] = [];
    for (const step of shell.flatMap((b) => steps(b.lines))) {
      if (step.kind === 'note') continue;
      if (step.kind === 'expect') {
        if (step.from) pending.push({ from: step.from, text: step.text });
        else
          assert.ok(
            printed(lastOutput, step.text),
            `${lastCommand}\nshould print: ${step.text}\nprinted:\n${lastOutput}`,
          );
        continue;
      }
      const command = substitute(step.command);
      lastCommand = command;
      if (/^portcullis start\b/.test(command)) {
        const output = spawnBackground('portcullis', command);
        await waitFor('the gateway to start', () => /"msg":"gateway started"/.test(output()));
        const started = output()
          .split('\n')
          .find((l) => l.includes('"gateway started"')) as string;
        dtlsPort = Number(/"dtls":"[^"]*:(\d+)"/.exec(started)?.[1]);
        assert.ok(dtlsPort > 0, started);
        continue;
      }
      if (/^mosquitto_sub\b/.test(command)) {
        const output = spawnBackground('mosquitto_sub', command);
        // Subscribed once a probe published to the same topic filter comes back.
        const topic = /-t '([^']+)'/.exec(command)?.[1]?.replace('+', 'walkthrough-probe') as string;
        const deadline = Date.now() + 20_000;
        while (!output().includes('walkthrough-probe')) {
          assert.ok(Date.now() < deadline, `mosquitto_sub did not subscribe: ${output()}`);
          await runPeer('mosquitto_pub', [
            ...['-h', '127.0.0.1', '-p', String(broker.port), '--cafile', pki.caPath],
            ...['--cert', pki.client.certPath, '--key', pki.client.keyPath, '-V', 'mqttv5'],
            ...['-t', topic, '-m', 'probe'],
          ]);
          await new Promise((r) => setTimeout(r, 200));
        }
        continue;
      }
      const r = await runPeer(
        'bash',
        ['-c', `cd '${dir}' && PATH='${bin}':"$PATH" PORTCULLIS_CONFIG='${config}' ${command}`],
        {
          timeoutMs: 30_000,
        },
      );
      lastOutput = r.stdout.toString() + r.stderr;
      assert.equal(r.code, 0, `${command}\n${lastOutput}`);
      // libcoap exits 0 whatever happened; its log lines (on stdout) say when something failed.
      if (/^coap-client/.test(command)) assert.doesNotMatch(lastOutput, /WARN|ERR|^4\.\d\d/m, lastOutput);
      if (/\buplink csr\b/.test(command)) {
        // The cloud operator's step: sign the request, and the certificate goes to uplink.certFile.
        assert.equal(existsSync(certFile), false, 'the certificate does not exist before the CSR is signed');
        copyFileSync(pki.signCsr(readFileSync(join(dir, 'uplink.csr'), 'utf8'), 'walkthrough'), certFile);
      }
    }
    for (const { from, text } of pending) {
      const proc = background.get(from);
      assert.ok(proc, `# ${from} prints: names no command that ran in the background`);
      await waitFor(`${from} to print ${text}`, () => printed(proc.output(), text)).catch(() => {
        assert.fail(`${from} should print: ${text}\nprinted:\n${proc.output()}`);
      });
    }
    assert.ok(pending.length > 0, 'the section shows what the cloud side receives');
  });
});
