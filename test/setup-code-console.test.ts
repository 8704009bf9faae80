/**
 * The setup code for the appliance's console (issue 29): the real gateway and `portcullis ui setup-code` write
 * it to ui.setupCodeFile (0600, written whole, with the UI's port), and systemd/portcullis-console turns that
 * into the login prompt's text (here into a file of the test's, with systemd absent: the gateway counts as not
 * running). The code never reaches /healthz; off the appliance /healthz reports no flows unit.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { publishSetupCode } from '../gateway/src/setup-code-file.ts';
import { runCli, spawnCli, waitForLine } from './helpers/cli.ts';
import { tempDir } from './helpers/tmp.ts';

const CONSOLE_SCRIPT = join(import.meta.dirname, '..', 'systemd', 'portcullis-console');

describe('the setup code for the console', () => {
  it('is written whole, 0600, with the port; removed with null; a failure names the file, never the code', (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'setup-code');
    assert.equal(publishSetupCode(file, 'ABCDE-FGHIJ', 8443), undefined);
    assert.equal(readFileSync(file, 'utf8'), 'code=ABCDE-FGHIJ\nport=8443\n');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(publishSetupCode(file, null, 8443), undefined);
    assert.ok(!existsSync(file));
    assert.equal(publishSetupCode(undefined, 'ABCDE-FGHIJ', 8443), undefined, 'unset: nothing to do');
    const missing = publishSetupCode(join(dir, 'no', 'such', 'dir', 'code'), 'ABCDE-FGHIJ', 8443);
    assert.match(missing ?? '', /cannot write the setup code file .*: ENOENT/);
    assert.ok(!missing?.includes('ABCDE'), 'the code is not in the message');
  });

  it('the gateway writes the code it prints, the CLI replaces it, and /healthz shows neither it nor a flows unit', async (t) => {
    const dir = tempDir(t);
    mkdirSync(join(dir, 'console'), { mode: 0o700 });
    const file = join(dir, 'console', 'setup-code');
    const config = join(dir, 'config.yaml');
    writeFileSync(
      config,
      `dataDir: ${join(dir, 'var')}\ndtls: {port: 0}\nui: {port: 0, setupCodeFile: ${file}}\n`,
    );
    const gw = spawnCli(['--config', config, 'start'], {
      env: { ...process.env, PORTCULLIS_FLOWS_UNIT: undefined },
    });
    t.after(() => gw.kill('SIGKILL'));
    let stderr = '';
    gw.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const port = await waitForLine(gw, (l) =>
      l.includes('"gateway started"') ? Number(/"ui":"https:\/\/[^"]+:(\d+)"/.exec(l)?.[1]) : undefined,
    );
    // The code the gateway prints for the journal (stderr) is the one in the file.
    const printed = /setup code (\S+)\n/.exec(stderr)?.[1] as string;
    assert.ok(printed, stderr);
    assert.equal(readFileSync(file, 'utf8'), `code=${printed}\nport=${port}\n`);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const health = await new Promise<string>((resolve, reject) => {
      httpsRequest(`https://127.0.0.1:${port}/healthz`, { rejectUnauthorized: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => {
          body += d.toString();
        });
        res.on('end', () => resolve(body));
      })
        .on('error', reject)
        .end();
    });
    assert.ok(!health.includes(printed), 'the code is not in /healthz');
    assert.equal((JSON.parse(health) as { components: Record<string, string> }).components.flows, undefined);
    gw.kill('SIGTERM');
    await new Promise((r) => gw.once('exit', r));

    // At the console: a fresh code, which replaces the file's (the old one stops working).
    const fresh = await runCli(['--config', config, 'ui', 'setup-code']);
    assert.equal(fresh.code, 0, fresh.stderr);
    const code = fresh.stdout.trim();
    assert.notEqual(code, printed);
    // With the configured port (0 here: the test's gateway took a free one; the appliance's is 8443).
    assert.equal(readFileSync(file, 'utf8'), `code=${code}\nport=0\n`);
  });

  it('portcullis-console writes a local 0600 text with the code only for a running gateway', (t) => {
    const dir = tempDir(t);
    const codeFile = join(dir, 'setup-code');
    writeFileSync(codeFile, 'code=ABCDE-FGHIJ\nport=9443\n', { mode: 0o600 });
    const issue = join(dir, 'issue');
    // No gateway unit running here (no systemd at all, or no such unit): the console says it is not running
    // or not started yet, and shows no code (a code file left by a gateway that stopped is not advertised).
    const r = spawnSync('sh', [CONSOLE_SCRIPT], {
      env: { PATH: process.env.PATH, PORTCULLIS_ISSUE_FILE: issue, PORTCULLIS_SETUP_CODE_FILE: codeFile },
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    const text = readFileSync(issue, 'utf8');
    assert.match(text, /^Portcullis edge security gateway \\n \(\\l\)$/m, 'agetty escapes kept for agetty');
    assert.match(text, /THE GATEWAY IS NOT RUNNING|The gateway is starting/);
    assert.ok(!text.includes('ABCDE-FGHIJ'));
    assert.equal(statSync(issue).mode & 0o777, 0o600, 'only root (agetty) reads it');
  });
});
