import { createReadStream } from 'node:fs';
import { replay } from '../anomaly/index.ts';
import { resolveConfig } from '../config/index.ts';
import type { Io } from './commands.ts';
import { cliActor, withWritableCore } from './device-commands.ts';
import { EXIT } from './exit-codes.ts';

/** `portcullis detect --replay FILE|-`: the live detector over recorded events, findings as JSON lines. */
export async function detectReplayCommand(
  configPath: string | undefined,
  file: string,
  o: { learningHours?: number; windowSeconds?: number },
  io: Io,
): Promise<number> {
  // The configured detector settings (learning period, window, site time zone), overridable for tuning.
  const a = resolveConfig(configPath).config.anomaly;
  const input = file === '-' ? process.stdin : createReadStream(file);
  const opened = new Promise<void>((resolve, reject) => {
    if (file === '-') resolve();
    else input.once('open', () => resolve()).once('error', reject);
  });
  await opened;
  const summary = await replay(
    input,
    {
      learningMs: (o.learningHours ?? a.learningHours) * 3_600_000,
      windowMs: (o.windowSeconds ?? a.windowSeconds) * 1000,
      cooldownMs: a.cooldownMinutes * 60_000,
      utcOffsetMinutes: a.utcOffsetMinutes,
      ...(a.timeZone ? { timeZone: a.timeZone } : {}),
      relearnMs: a.relearnHours * 3_600_000,
    },
    io.out,
    io.err,
  );
  io.err(
    `${summary.events} events from ${summary.devices} devices, ${summary.findings} findings, ${summary.malformed} malformed lines skipped`,
  );
  return EXIT.ok;
}

export function alertsListCommand(
  configPath: string | undefined,
  o: { all?: boolean; json?: boolean; device?: string },
  io: Io,
): number {
  return withWritableCore(configPath, (core) => {
    const alerts = core.alerts({ open: o.all ? undefined : true, deviceId: o.device });
    if (o.json) {
      io.out(JSON.stringify(alerts, null, 2));
      return EXIT.ok;
    }
    io.out(
      ['id', 'severity', 'device', 'kind', 'count', 'last seen', 'acknowledged', 'explanation'].join('\t'),
    );
    for (const a of alerts) {
      io.out(
        [
          a.id,
          a.severity,
          a.deviceId ?? '-',
          a.kind,
          a.count,
          a.lastSeenAt,
          a.acknowledgedBy ?? '-',
          a.explanation,
        ].join('\t'),
      );
    }
    return EXIT.ok;
  });
}

export function alertsAckCommand(configPath: string | undefined, id: number, io: Io): number {
  return withWritableCore(configPath, (core) => {
    const a = core.acknowledgeAlert(id, cliActor());
    io.out(`alert ${a.id} acknowledged by ${a.acknowledgedBy}`);
    return EXIT.ok;
  });
}

export function deviceUnlimitCommand(configPath: string | undefined, id: string, io: Io): number {
  return withWritableCore(configPath, (core) => {
    const lifted = core.policy.liftRateLimit(id, cliActor());
    io.out(lifted ? `${id}: rate limit lifted` : `${id} has no rate limit`);
    return EXIT.ok;
  });
}
