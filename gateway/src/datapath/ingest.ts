import type { AnomalyService } from '../anomaly/index.ts';
import type { Core } from '../core.ts';
import type { PolicyDecision } from '../policy/engine.ts';
import type { SessionDevice } from '../store/index.ts';
import type { TelemetryMessage, Uplink } from '../uplink/index.ts';

/**
 * identity → behaviour → policy → durable queue: the one path every reading takes, pushed by a sensor or
 * pulled from it. Every reading of a known device is observed, also one policy refuses (a quarantined device
 * is still watched). The policy service decides on the device's profile (resource, method, time, segment,
 * content format, size, schema, rate, a flow) before anything is queued. Resolves once an allowed reading is
 * committed to the uplink queue (only then may a sensor be acknowledged), or with the refusal.
 *
 * A chain of small callbacks, not an async function: what waits for the queue's commit (milliseconds, an fsync)
 * outlives a few young-generation collections and is promoted into V8's old space, and an async function keeps
 * its whole register file for as long as it waits — at 10,000 sensors the largest share of what each reading
 * left behind there (issue 23, docs/performance.md).
 */
export function ingestTelemetry(
  core: Core,
  uplink: Uplink,
  device: SessionDevice | undefined,
  reading: Omit<TelemetryMessage, 'deviceId'>,
  anomaly?: AnomalyService,
  resource = '/telemetry',
  method: 'POST' | 'PUT' = 'POST',
): Promise<PolicyDecision> {
  if (device) observe(core, anomaly, device, reading, resource);
  const request = { method, resource, contentFormat: reading.contentFormat, payload: reading.payload };
  return core.policy.check(device, request).then((decision) => {
    if (device && core.events.wants('device.message')) announce(core, device, reading, resource, decision);
    if (!decision.allow || !device) return decision;
    return uplink.enqueue(queued(core, device, reading)).then(() => decision);
  });
}

function observe(
  core: Core,
  anomaly: AnomalyService | undefined,
  device: SessionDevice,
  reading: Omit<TelemetryMessage, 'deviceId'>,
  resource: string,
): void {
  anomaly?.observe({
    ts: core.clock.now(),
    device: device.id,
    kind: 'message',
    bytes: reading.payload.length,
    resource,
    // The format is part of what kind of message this is (a reading, a status report, a bulk upload).
    ...(reading.contentFormat !== null ? { contentFormat: reading.contentFormat } : {}),
  });
}

function announce(
  core: Core,
  device: SessionDevice,
  reading: Omit<TelemetryMessage, 'deviceId'>,
  resource: string,
  decision: PolicyDecision,
): void {
  core.events.emit({
    type: 'device.message',
    ts: new Date(core.clock.now()).toISOString(),
    deviceId: device.id,
    resource,
    contentFormat: reading.contentFormat,
    payload: reading.payload.toString('base64'),
    size: reading.payload.length,
    allowed: decision.allow,
    ...(decision.allow ? {} : { rule: decision.rule }),
  });
}

/** The queued message; last_seen (written at most every 30 s per device) rides in the queue's transaction. */
function queued(
  core: Core,
  device: SessionDevice,
  reading: Omit<TelemetryMessage, 'deviceId'>,
): TelemetryMessage {
  const seenAt = core.identity.seenDue(device.id) ?? reading.seenAt;
  const m: TelemetryMessage = {
    deviceId: device.id,
    payload: reading.payload,
    contentFormat: reading.contentFormat,
    credentialKind: reading.credentialKind,
  };
  if (reading.topicSuffix !== undefined) m.topicSuffix = reading.topicSuffix;
  if (seenAt !== undefined) m.seenAt = seenAt;
  return m;
}
