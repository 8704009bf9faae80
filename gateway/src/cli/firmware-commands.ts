import { readFileSync } from 'node:fs';
import { FirmwareError } from '../firmware/index.ts';
import type { Io } from './commands.ts';
import { cliActor, withWritableCore } from './device-commands.ts';
import { EXIT } from './exit-codes.ts';

export function firmwareVendorAddCommand(
  configPath: string | undefined,
  o: { vendor: string; class: string; key: string },
  io: Io,
): number {
  return withWritableCore(configPath, (core) => {
    core.firmware.addVendorKey(o.vendor, o.class, readFileSync(o.key, 'utf8'), cliActor());
    io.out(`vendor key for ${o.vendor}/${o.class} recorded`);
    return EXIT.ok;
  });
}

export function firmwareUploadCommand(
  configPath: string | undefined,
  o: { image: string; manifest: string; signature: string },
  io: Io,
): number {
  return withWritableCore(configPath, (core) => {
    const i = core.firmware.upload(
      readFileSync(o.image),
      readFileSync(o.manifest),
      readFileSync(o.signature),
      cliActor(),
    );
    io.out(`${i.digest}\t${i.vendor}/${i.deviceClass} ${i.version}\t${i.size} bytes\tseverity ${i.severity}`);
    return EXIT.ok;
  });
}

export function firmwareListCommand(configPath: string | undefined, io: Io): number {
  return withWritableCore(configPath, (core) => {
    for (const i of core.firmware.images()) {
      io.out(
        `${i.digest}\t${i.vendor}/${i.deviceClass} ${i.version}\t${i.size} bytes\tseverity ${i.severity}`,
      );
    }
    for (const c of core.firmware.campaigns()) {
      io.out(`campaign ${c.id}\t${c.state}\t${c.image.slice(0, 12)}\t${c.reason ?? ''}`);
    }
    return EXIT.ok;
  });
}

const percent = (v: string | undefined, what: string) => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new FirmwareError('ERR_FIRMWARE_INVALID', `${what} must be a number`);
  return n;
};

/** `1,2,3,4,5:7-19@60` → weekdays 07:00-19:00 at UTC+60 min. */
export function parseWindow(text: string) {
  const m = /^([0-6](?:,[0-6])*):(\d{1,2})-(\d{1,2})(?:@(-?\d{1,3}))?$/.exec(text.trim());
  if (!m) {
    throw new FirmwareError(
      'ERR_FIRMWARE_INVALID',
      '--window is DAYS:FROM-TO[@UTC-OFFSET-MINUTES], e.g. 1,2,3,4,5:7-19@60',
    );
  }
  return {
    days: (m[1] as string).split(',').map(Number),
    fromHour: Number(m[2]),
    toHour: Number(m[3]),
    utcOffsetMinutes: Number(m[4] ?? 0),
  };
}

export function campaignCreateCommand(
  configPath: string | undefined,
  o: {
    image: string;
    segment?: string;
    versions?: string;
    window?: string;
    canary?: string;
    maxFailures?: string;
    minSample?: string;
  },
  io: Io,
): number {
  return withWritableCore(configPath, (core) => {
    const v = core.firmware.createCampaign(
      o.image,
      {
        segment: o.segment,
        versions: o.versions?.split(',').map((v) => v.trim()),
        window: o.window ? parseWindow(o.window) : undefined,
        canaryPercent: percent(o.canary, '--canary'),
        maxFailurePercent: percent(o.maxFailures, '--max-failures'),
        minSample: percent(o.minSample, '--min-sample'),
      },
      cliActor(),
    );
    const canary = v.devices.filter((d) => d.stage === 'canary').length;
    io.out(`campaign ${v.campaign.id}: ${v.devices.length} devices, ${canary} in the canary stage`);
    return EXIT.ok;
  });
}

export function campaignStatusCommand(
  configPath: string | undefined,
  id: string,
  json: boolean,
  io: Io,
): number {
  return withWritableCore(configPath, (core) => {
    const v = core.firmware.view(Number(id));
    if (json) {
      io.out(JSON.stringify(v, null, 2));
      return EXIT.ok;
    }
    const c = v.counts;
    io.out(
      `campaign ${v.campaign.id} ${v.campaign.state}${v.campaign.reason ? ` (${v.campaign.reason})` : ''}: ${v.image.deviceClass} → ${v.image.version}; pending ${c.pending}, notified ${c.notified}, fetching ${c.fetching}, succeeded ${c.succeeded}, failed ${c.failed}`,
    );
    for (const d of v.devices)
      io.out([d.deviceId, d.stage, d.status, d.fromVersion ?? '-', d.error ?? ''].join('\t'));
    return EXIT.ok;
  });
}

export function campaignPauseCommand(
  configPath: string | undefined,
  id: string,
  paused: boolean,
  io: Io,
): number {
  return withWritableCore(configPath, (core) => {
    const v = core.firmware.setPaused(Number(id), paused, cliActor());
    io.out(`campaign ${v.campaign.id} ${v.campaign.state}`);
    return EXIT.ok;
  });
}
