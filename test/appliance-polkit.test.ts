/**
 * The appliance's polkit rule (systemd/polkit/50-portcullis.rules; issue 25, appliance point 3), judged by the
 * real polkitd (Debian's, JavaScript rules) on a private D-Bus system bus, in a mount namespace of its own that
 * sees only this rule (the host's rules and users untouched): the gateway's user `portcullis` may restart the
 * gateway and the flows, reboot, set the time zone and switch NTP — and nothing else; another user gets none of
 * these. pkcheck asks as root for a process of each user, as systemd, logind and timedated ask for their
 * callers. Exit 0 = allowed; 1 or 2 (refused, or only with an administrator's password, which a service with no
 * agent and an appliance with no password on any account cannot give) = not allowed.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { tempDir } from './helpers/tmp.ts';

const RULE = join(import.meta.dirname, '..', 'systemd', 'polkit', '50-portcullis.rules');
const POLKITD = '/usr/lib/polkit-1/polkitd';
const SERVICE_UID = 4242;
const OTHER_UID = 4243;

type Check = [who: 'portcullis' | 'intruder', action: string, details: Record<string, string>];

const unit = (u: string, verb: string) => ({ unit: u, verb });
const MANAGE = 'org.freedesktop.systemd1.manage-units';

const ALLOWED: Check[] = [
  ['portcullis', MANAGE, unit('portcullis-gateway.service', 'restart')],
  ['portcullis', MANAGE, unit('portcullis-flows.service', 'restart')],
  ['portcullis', 'org.freedesktop.login1.reboot', {}],
  // logind asks for this one instead when another session is open (a technician on the serial console or SSH).
  ['portcullis', 'org.freedesktop.login1.reboot-multiple-sessions', {}],
  ['portcullis', 'org.freedesktop.timedate1.set-timezone', {}],
  ['portcullis', 'org.freedesktop.timedate1.set-ntp', {}],
];

const REFUSED: Check[] = [
  // Other verbs on the gateway's own units (stopping it would take the console away with no way back).
  ['portcullis', MANAGE, unit('portcullis-gateway.service', 'stop')],
  ['portcullis', MANAGE, unit('portcullis-flows.service', 'start')],
  // Other units.
  ['portcullis', MANAGE, unit('ssh.service', 'restart')],
  ['portcullis', MANAGE, unit('systemd-timesyncd.service', 'restart')],
  ['portcullis', MANAGE, unit('portcullis-firewall.service', 'restart')],
  ['portcullis', MANAGE, unit('portcullis-gateway.service.d', 'restart')],
  // Other actions of the same services.
  ['portcullis', 'org.freedesktop.systemd1.manage-unit-files', {}],
  ['portcullis', 'org.freedesktop.systemd1.reload-daemon', {}],
  ['portcullis', 'org.freedesktop.login1.power-off', {}],
  ['portcullis', 'org.freedesktop.login1.reboot-ignore-inhibit', {}],
  ['portcullis', 'org.freedesktop.login1.set-reboot-to-firmware-setup', {}],
  ['portcullis', 'org.freedesktop.timedate1.set-time', {}],
  ['portcullis', 'org.freedesktop.timedate1.set-local-rtc', {}],
  ['portcullis', 'org.freedesktop.hostname1.set-hostname', {}],
  // Another user: none of what the service may do.
  ['intruder', MANAGE, unit('portcullis-gateway.service', 'restart')],
  ['intruder', 'org.freedesktop.login1.reboot', {}],
  ['intruder', 'org.freedesktop.login1.reboot-multiple-sessions', {}],
  ['intruder', 'org.freedesktop.timedate1.set-timezone', {}],
];

const canRun =
  process.getuid?.() === 0 &&
  existsSync(POLKITD) &&
  spawnSync('sh', ['-c', 'command -v pkcheck dbus-daemon unshare setpriv']).status === 0;

/** One namespace, one bus, one polkitd; every check's line is `N <exit code>`. */
function judge(dir: string, checks: Check[]): number[] {
  // polkitd reads its rules as its own user (polkitd): the temporary folder must let it in.
  chmodSync(dir, 0o755);
  const rules = join(dir, 'rules');
  const empty = join(dir, 'empty');
  mkdirSync(rules);
  mkdirSync(empty);
  copyFileSync(RULE, join(rules, '50-portcullis.rules'));
  writeFileSync(
    join(dir, 'passwd'),
    `${readFileSync('/etc/passwd', 'utf8').trimEnd()}\nportcullis:x:${SERVICE_UID}:${SERVICE_UID}::/nonexistent:/usr/sbin/nologin\nintruder:x:${OTHER_UID}:${OTHER_UID}::/nonexistent:/usr/sbin/nologin\n`,
  );
  const sock = join(dir, 'bus.sock');
  writeFileSync(
    join(dir, 'bus.conf'),
    `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path=${sock}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/></policy></busconfig>\n`,
  );
  const lines = checks.map(([who, action, details], i) => {
    const pid = who === 'portcullis' ? '$S' : '$I';
    const d = Object.entries(details)
      .map(([k, v]) => `--detail ${k} ${v}`)
      .join(' ');
    return `pkcheck --process ${pid} --action-id ${action} ${d} >/dev/null 2>&1; echo "${i} $?"`;
  });
  const script = `set -u
mount --bind ${rules} /etc/polkit-1/rules.d
mount --bind ${empty} /usr/share/polkit-1/rules.d
mount --bind ${join(dir, 'passwd')} /etc/passwd
dbus-daemon --config-file=${join(dir, 'bus.conf')} --nofork --nopidfile 2>/dev/null & B=$!
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=${sock}
for i in $(seq 100); do [ -S ${sock} ] && break; sleep 0.1; done
${POLKITD} --no-debug >/dev/null 2>&1 & P=$!
for i in $(seq 100); do busctl --address=unix:path=${sock} status org.freedesktop.PolicyKit1 >/dev/null 2>&1 && break; sleep 0.1; done
setpriv --reuid=${SERVICE_UID} --regid=${SERVICE_UID} --clear-groups sleep 60 & S=$!
setpriv --reuid=${OTHER_UID} --regid=${OTHER_UID} --clear-groups sleep 60 & I=$!
sleep 0.2
${lines.join('\n')}
kill $S $I $P $B
`;
  const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'bash', '-c', script], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  const codes: number[] = [];
  for (const m of r.stdout.matchAll(/^(\d+) (\d+)$/gm)) codes[Number(m[1])] = Number(m[2]);
  assert.equal(codes.length, checks.length, `${r.stdout}\n${r.stderr}`);
  return codes;
}

describe('the appliance polkit rule, judged by polkitd', {
  skip: !canRun && 'needs root, polkitd, pkcheck, dbus-daemon, unshare',
}, () => {
  it('allows the gateway’s user exactly restart of its units, reboot and the clock; nothing else, nobody else', (t) => {
    const checks = [...ALLOWED, ...REFUSED];
    const codes = judge(tempDir(t), checks);
    checks.forEach(([who, action, details], i) => {
      const what = `${who}: ${action} ${JSON.stringify(details)}`;
      if (i < ALLOWED.length) assert.equal(codes[i], 0, `${what} should be allowed`);
      else assert.ok(codes[i] === 1 || codes[i] === 2, `${what} should not be allowed (pkcheck ${codes[i]})`);
    });
  });
});
