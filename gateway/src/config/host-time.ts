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
 * The appliance's clock settings: its time zone (what `timedatectl set-timezone` writes: the `/etc/localtime`
 * link into the zoneinfo database, and `/etc/timezone` for Debian's tools) and its NTP servers (a
 * systemd-timesyncd drop-in, `/etc/systemd/timesyncd.conf.d/60-portcullis-ui.conf`, read after the image's
 * `50-portcullis.conf`). Every path hangs under one root (`PORTCULLIS_HOST_ROOT`, default `/`) so a test uses a
 * temporary directory. Where the host does not let the gateway write them — the shipped unit runs it as an
 * unprivileged user with `ProtectSystem=strict`, so `/etc` is read-only to it — the change fails with
 * `ERR_HOST_TIME_READONLY`, naming the file and how to set it as root instead, and nothing is half-written.
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

/**
 * timesyncd reads its drop-ins when it starts: on the real host (root `/`) it is restarted through systemctl
 * (which needs the right to manage that unit); under a test root there is nothing to restart.
 */
export function timesyncdReload(paths: HostTimePaths): (() => Promise<void>) | undefined {
  if (resolve(paths.root) !== '/') return undefined;
  return async () => {
    const { execa } = await import('execa');
    await execa('systemctl', ['try-restart', 'systemd-timesyncd.service'], {
      timeout: 10_000,
      stdin: 'ignore',
    });
  };
}

/** What the host is set to now (the UI shows it beside the form). */
export function readHostTime(paths: HostTimePaths = hostTimePaths()): HostTime {
  let timeZone: string | null = null;
  try {
    timeZone = readFileSync(paths.timezoneFile, 'utf8').trim() || null;
  } catch {
    try {
      const target = readlinkSync(paths.localtime);
      const rel = relative(paths.zoneinfo, resolve(dirname(paths.localtime), target));
      timeZone = rel.startsWith('..') ? null : rel.split(sep).join('/');
    } catch {
      timeZone = null;
    }
  }
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
      ? `the host does not let the gateway change ${path} (${err.code}): on the appliance the gateway's unit keeps /etc read-only to it (ProtectSystem=strict); set it as root (timedatectl set-timezone, or NTP= in /etc/systemd/timesyncd.conf.d/)`
      : `${path}: cannot be written (${err.code ?? 'error'})`,
  );
}

/**
 * Sets the time zone and the NTP servers. The zone must exist in the host's zoneinfo database. Files are
 * replaced atomically (the link through a rename too); timesyncd picks the servers up when it restarts, which
 * `reload` does (absent: the caller says it is needed).
 */
export async function setHostTime(
  next: HostTime,
  paths: HostTimePaths = hostTimePaths(),
  reload?: () => Promise<void>,
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
      throw new HostTimeError('ERR_HOST_TIME_INVALID', `${zone}: not in this host's zoneinfo database`);
    }
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
    changed.push('timeZone');
  }
  if (next.ntp.join(' ') !== before.ntp.join(' ')) {
    const servers = next.ntp;
    const text = `# Written by the Portcullis console; read after 50-portcullis.conf.\n[Time]\nNTP=${servers.join(' ')}\n`;
    try {
      mkdirSync(dirname(paths.timesyncdDropIn), { recursive: true });
      writeAtomically(paths.timesyncdDropIn, text, 0o644);
    } catch (err) {
      throw hostRefusal(paths.timesyncdDropIn, err as NodeJS.ErrnoException);
    }
    changed.push('ntp');
    if (reload) {
      try {
        await reload();
      } catch (err) {
        throw new HostTimeError(
          'ERR_HOST_TIME_RELOAD',
          `the NTP servers were written but systemd-timesyncd did not restart: ${(err as Error).message.split('\n')[0]}`,
        );
      }
    }
  }
  return { changed };
}
