import { z } from 'zod';
import { type ConfigApplier, ConfigApplyError, type ConfigChange } from '../../gateway/src/config/apply.ts';
import {
  type HostTime,
  HostTimeError,
  type HostTimePaths,
  ntpServersSchema,
  setHostTime,
  timedated,
  timeZoneSchema,
} from '../../gateway/src/config/host-time.ts';
import { firstIssue } from '../../gateway/src/errors.ts';
import { HttpError } from '../../gateway/src/http.ts';

/**
 * The configuration page's forms as the service layer takes them. The values are only shaped here (lengths,
 * which part); what they must be is decided by the configuration's own schema (gateway/src/config/apply.ts)
 * and the host-time rules, so the page refuses exactly what the file would.
 */
const reauth = { password: z.string().min(1).max(256), code: z.string().min(1).max(32) };

export const configChangeForm = z.strictObject({
  part: z.enum(['uplink', 'segments']),
  url: z.string().max(500).optional(),
  topicPrefix: z.string().max(200).optional(),
  caPem: z.string().max(32_768).optional(),
  segments: z.string().max(32_768).optional(),
  ...reauth,
});

export function configChangeOf(b: z.output<typeof configChangeForm>): ConfigChange {
  if (b.part === 'uplink') {
    return {
      uplink: {
        url: b.url ?? '',
        topicPrefix: b.topicPrefix ?? '',
        ...(b.caPem?.trim() ? { caPem: b.caPem } : {}),
      },
    };
  }
  return { segmentsYaml: b.segments ?? '' };
}

/**
 * Checks (`dryRun`) or applies a change through the supervisor; a host that refuses the write is a 409 with its
 * reason, not an internal error.
 */
export function applyConfigForUi(
  applier: ConfigApplier,
  change: ConfigChange,
  actor: string,
  dryRun: boolean,
): { changed: string[] } {
  try {
    return dryRun ? { changed: applier.check(change) } : applier.apply(change, actor);
  } catch (err) {
    if (err instanceof ConfigApplyError && err.code === 'ERR_CONFIG_APPLY_READONLY') {
      throw new HttpError(409, err.code, err.message);
    }
    throw err;
  }
}

export const hostTimeForm = z.strictObject({
  timeZone: z.string().max(64),
  ntp: z.string().max(1000),
  ...reauth,
});

/** The requested clock settings, checked before any password is (a bad zone or server is a 400, no login). */
export function hostTimeOf(b: z.output<typeof hostTimeForm>, now: HostTime): HostTime {
  const tz = b.timeZone.trim();
  const zone = tz ? timeZoneSchema.safeParse(tz) : undefined;
  if (zone && !zone.success)
    throw new HttpError(400, 'ERR_HOST_TIME_INVALID', firstIssue(zone.error, 'time zone'));
  const ntp = ntpServersSchema.safeParse(b.ntp);
  if (!ntp.success) throw new HttpError(400, 'ERR_HOST_TIME_INVALID', firstIssue(ntp.error, 'NTP servers'));
  const next = { timeZone: zone?.data ?? now.timeZone, ntp: ntp.data };
  if (next.timeZone === now.timeZone && next.ntp.join(' ') === now.ntp.join(' ')) {
    throw new HttpError(409, 'ERR_HOST_TIME_STATE', 'nothing to change: the values are those in force');
  }
  return next;
}

/** The host-time service, its typed errors as HTTP statuses (a host that refuses is a 409, not a 500). */
export async function setHostTimeForUi(next: HostTime, paths: HostTimePaths): Promise<{ changed: string[] }> {
  try {
    return await setHostTime(next, paths, timedated(paths));
  } catch (err) {
    if (!(err instanceof HostTimeError)) throw err;
    throw new HttpError(err.code === 'ERR_HOST_TIME_INVALID' ? 400 : 409, err.code, err.message);
  }
}
