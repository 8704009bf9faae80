import {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { isIP } from 'node:net';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { z } from 'zod';
import { PortcullisError } from '../errors.ts';
import { writeAtomically } from './apply.ts';
import { isKnownTimeZone } from './time-zone.ts';

/**
 * The appliance's clock settings: its time zone (the `/etc/localtime` link into the zoneinfo database, and
 * `/etc/timezone` for Debian's tools) and its NTP servers (a systemd-timesyncd drop-in,
 * `/etc/systemd/timesyncd.conf.d/60-portcullis-ui.conf`, read after the image's `50-portcullis.conf`).
 *
 * On the host itself (root `/`) the gateway runs unprivileged with `/etc` read-only (ProtectSystem=strict), so it
 * asks systemd-timedated over D-Bus (`timedatectl set-timezone`; the appliance's polkit rule allows the gateway's
 * user exactly that and `set-ntp`), and writes the drop-in through the image's link to a file the service owns
 * (`/var/lib/portcullis-time/60-portcullis-ui.conf`), after which NTP is switched off and on so timesyncd reads
 * it. Under any other root (`PORTCULLIS_HOST_ROOT`; tests) the files are written directly. Where the host does
 * not allow it — no timedated or no polkit rule (a development machine), a drop-in that is not writable — the
 * change fails with `ERR_HOST_TIME_READONLY`, naming how to set it as root instead, and nothing is half-written.
 */

export class HostTimeError extends PortcullisError {
  constructor(
    code: 'ERR_HOST_TIME_READONLY' | 'ERR_HOST_TIME_INVALID' | 'ERR_HOST_TIME_RELOAD',
    message: string,
  ) {
    super(code, message);
  }
}

export interface HostTimePaths {
  root: string;
  /** The drop-in's path under /etc; on the appliance a link to the service's own file (written through). */
  timesyncdDropIn: string;
  localtime: string;
  timezoneFile: string;
  zoneinfo: string;
}

export function hostTimePaths(root = process.env.PORTCULLIS_HOST_ROOT ?? '/'): HostTimePaths {
  const at = (p: string) => join(root, p);
  return {
    root,
    timesyncdDropIn: at('etc/systemd/timesyncd.conf.d/60-portcullis-ui.conf'),
    localtime: at('etc/localtime'),
    timezoneFile: at('etc/timezone'),
    zoneinfo: at('usr/share/zoneinfo'),
  };
}

const LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
const NTP_SERVER = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`);

export const ntpServersSchema = z
  .string()
  .max(1000)
  .transform((s) => s.split(/[\s,]+/).filter(Boolean))
  .pipe(
    z
      .array(
        z.string().refine((h) => isIP(h) !== 0 || NTP_SERVER.test(h), {
          error: 'each NTP server must be a host name or an IP address',
        }),
      )
      .max(8, { error: 'at most 8 NTP servers' }),
  );

export const timeZoneSchema = z
  .string()
  .trim()
  .min(1)
  .max(64)
  .regex(/^(?:UTC|[A-Za-z][A-Za-z0-9_+-]*(?:\/[A-Za-z0-9_+-]+){0,2})$/, {
    error: 'must be an IANA time zone such as Europe/Berlin',
  })
  .refine(isKnownTimeZone, { error: 'not a known IANA time zone' });

export interface HostTime {
  timeZone: string | null;
  ntp: string[];
}

/** Runs one host command (argv, no shell); injected by tests. */
export type HostCommand = (argv: readonly string[]) => Promise<void>;

const runHostCommand: HostCommand = async (argv) => {
  const { execa } = await import('execa');
  const [cmd, ...args] = argv as [string, ...string[]];
  // Above timedatectl's own D-Bus timeout (25 s): a slow timedated or polkitd is reported in its words.
  await execa(cmd, args, { timeout: 30_000, stdin: 'ignore' });
};

/** What the host's own daemons do for an unprivileged gateway: timedated, through D-Bus and polkit. */
export interface HostTimeSystem {
  setTimeZone(zone: string): Promise<void>;
  /** timesyncd reads its drop-ins only when it starts: NTP off and on again through timedated. */
  restartNtp(): Promise<void>;
}

/** timedated on the real host (root `/`); under a test root nothing (the files are written directly). */
export function timedated(
  paths: HostTimePaths,
  run: HostCommand = runHostCommand,
): HostTimeSystem | undefined {
  if (resolve(paths.root) !== '/') return undefined;
  // --no-ask-password: the polkit rule decides; nobody is there to type a password.
  const ctl = (...args: string[]) => run(['timedatectl', '--no-ask-password', ...args]);
  return {
    setTimeZone: (zone) => ctl('set-timezone', zone),
    restartNtp: async () => {
      await ctl('set-ntp', 'false');
      await ctl('set-ntp', 'true');
    },
  };
}

/** The first line a failed command printed (execa's `stderr`), else its message. */
function firstLine(err: unknown): string {
  const e = err as { stderr?: unknown; message?: string; code?: string };
  const text = typeof e.stderr === 'string' && e.stderr.trim() ? e.stderr : (e.message ?? String(err));
  return (e.code === 'ENOENT' ? 'timedatectl is not installed' : (text.trim().split('\n')[0] ?? '')).slice(
    0,
    200,
  );
}

/** The zone /etc/localtime links to (what timedated sets and the C library reads), else /etc/timezone's. */
function currentZone(paths: HostTimePaths): string | null {
  try {
    const target = readlinkSync(paths.localtime);
    const rel = relative(paths.zoneinfo, resolve(dirname(paths.localtime), target));
    if (!rel.startsWith('..')) return rel.split(sep).join('/');
  } catch {
    // not a link: /etc/timezone below
  }
  try {
    return readFileSync(paths.timezoneFile, 'utf8').trim() || null;
  } catch {
    return null;
  }
}

/** What the host is set to now (the UI shows it beside the form). */
export function readHostTime(paths: HostTimePaths = hostTimePaths()): HostTime {
  const timeZone = currentZone(paths);
  let ntp: string[] = [];
  try {
    const m = /^NTP=(.*)$/m.exec(readFileSync(paths.timesyncdDropIn, 'utf8'));
    ntp = m?.[1]?.trim().split(/\s+/).filter(Boolean) ?? [];
  } catch {
    ntp = [];
  }
  return { timeZone, ntp };
}

/** A write the host refused, as the technician needs to read it. */
export function hostRefusal(path: string, err: NodeJS.ErrnoException): HostTimeError {
  const refused = ['EACCES', 'EPERM', 'EROFS', 'ENOTDIR'].includes(err.code ?? '');
  return new HostTimeError(
    refused ? 'ERR_HOST_TIME_READONLY' : 'ERR_HOST_TIME_INVALID',
    refused
      ? `the host does not let the gateway change ${path} (${err.code}): the gateway's unit keeps /etc read-only to it (ProtectSystem=strict) and the appliance links this file to one the service owns; here, set it as root (timedatectl set-timezone, or NTP= in /etc/systemd/timesyncd.conf.d/)`
      : `${path}: cannot be written (${err.code ?? 'error'})`,
  );
}

/** Where a link points (the file to write through it), else the path itself. */
function linkTarget(path: string): string {
  try {
    if (lstatSync(path).isSymbolicLink()) return resolve(dirname(path), readlinkSync(path));
  } catch {
    // absent: written as a file of its own
  }
  return path;
}

/** The zone as files under a root that is not the running host's: the link through a rename, atomically. */
function writeZoneFiles(paths: HostTimePaths, target: string, zone: string): void {
  const tmp = `${paths.localtime}.portcullis-tmp`;
  try {
    rmSync(tmp, { force: true });
    symlinkSync(target, tmp);
    renameSync(tmp, paths.localtime);
    writeAtomically(paths.timezoneFile, `${zone}\n`, 0o644);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw hostRefusal(paths.localtime, err as NodeJS.ErrnoException);
  }
}

/**
 * Sets the time zone and the NTP servers. The zone must exist in the host's zoneinfo database. With `system`
 * (the real host) timedated sets the zone and restarts timesyncd for the servers; without it the files are
 * written directly and timesyncd is left to its next start.
 */
export async function setHostTime(
  next: HostTime,
  paths: HostTimePaths = hostTimePaths(),
  system?: HostTimeSystem,
): Promise<{ changed: string[] }> {
  const before = readHostTime(paths);
  const changed: string[] = [];
  if (next.timeZone && next.timeZone !== before.timeZone) {
    const parsed = timeZoneSchema.safeParse(next.timeZone);
    if (!parsed.success) {
      throw new HostTimeError(
        'ERR_HOST_TIME_INVALID',
        `${next.timeZone}: ${parsed.error.issues[0]?.message}`,
      );
    }
    const zone = parsed.data;
    const target = join(paths.zoneinfo, ...zone.split('/'));
    if (!existsSync(target) || !lstatSync(target).isFile()) {
      // No database at all (Debian trixie's minimal systems come without tzdata): every zone would be refused,
      // and timedated checks the same folder — the host needs the package, not another zone.
      if (!existsSync(join(paths.zoneinfo, 'Etc', 'UTC'))) {
        throw new HostTimeError(
          'ERR_HOST_TIME_READONLY',
          `this host has no time zone database (${paths.zoneinfo}; Debian package tzdata): it cannot change zones`,
        );
      }
      throw new HostTimeError('ERR_HOST_TIME_INVALID', `${zone}: not in this host's zoneinfo database`);
    }
    if (system) {
      try {
        await system.setTimeZone(zone);
      } catch (err) {
        throw new HostTimeError(
          'ERR_HOST_TIME_READONLY',
          `the host did not let the gateway set the time zone (${firstLine(err)}): on the appliance the polkit rule 50-portcullis.rules allows it through systemd-timedated; elsewhere set it as root (timedatectl set-timezone ${zone})`,
        );
      }
    } else {
      writeZoneFiles(paths, target, zone);
    }
    changed.push('timeZone');
  }
  if (next.ntp.join(' ') !== before.ntp.join(' ')) {
    const servers = next.ntp;
    const text = `# Written by the Portcullis console; read after 50-portcullis.conf.\n[Time]\nNTP=${servers.join(' ')}\n`;
    // The appliance links the drop-in to the service's own file: written there, the link (root's) stays.
    const file = linkTarget(paths.timesyncdDropIn);
    try {
      mkdirSync(dirname(file), { recursive: true });
      writeAtomically(file, text, 0o644);
    } catch (err) {
      throw hostRefusal(paths.timesyncdDropIn, err as NodeJS.ErrnoException);
    }
    changed.push('ntp');
    if (system) {
      try {
        await system.restartNtp();
      } catch (err) {
        throw new HostTimeError(
          'ERR_HOST_TIME_RELOAD',
          `the NTP servers were written but systemd-timesyncd did not restart (${firstLine(err)})`,
        );
      }
    }
  }
  return { changed };
}
