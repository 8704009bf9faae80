import { raiseAlert } from '../alerts.ts';
import type { AuditLog } from '../audit/index.ts';
import type { Clock } from '../clock.ts';
import type { Config } from '../config/index.ts';
import type { GatewayEvents } from '../events.ts';
import type { FirmwareService } from '../firmware/index.ts';
import type { IdentityService } from '../identity/index.ts';
import type { Logger } from '../log.ts';
import type { SegmentationService } from '../segmentation/index.ts';
import type { Device, Store } from '../store/index.ts';
import { ActivityRecorder } from './activity.ts';
import { type AuthFailureEvent, AuthWatch, type AuthWatchOptions, type BruteForce } from './auth-watch.ts';
import { BaselineSaver } from './baseline-saver.ts';
import { ConntrackFeed } from './conntrack.ts';
import { type BehaviourStatus, Detector, type Finding, type Severity } from './detector.ts';
import type { DetectorEvent } from './events.ts';
import { type AlertSink, alertRecord, JsonlSink, SyslogSink } from './siem.ts';

type Response = Config['anomaly']['responses'][number];

const RANK: Record<Severity, number> = { low: 0, medium: 1, high: 2 };
/** Baselines are written to the store this often (and at stop), so a restart does not start learning over. */
const SAVE_INTERVAL_MS = 10 * 60_000;

export interface AnomalyServiceDeps {
  config: Config;
  store: Store;
  audit: AuditLog;
  identity: IdentityService;
  segmentation: SegmentationService;
  clock: Clock;
  logger: Logger;
  events?: GatewayEvents;
  /** The fixed credential-guessing rule (auth-watch.ts); tests lower it. */
  authWatch?: AuthWatchOptions;
  /** Firmware campaigns: a device told to update re-learns instead of alerting on its new behaviour. */
  firmware?: FirmwareService;
}

/** The response rule for a device: the first whose segment and type match, if the finding is severe enough. */
export function responseFor(
  rules: readonly Response[],
  device: Device | undefined,
  severity: Severity,
): Response | undefined {
  const rule = rules.find(
    (r) =>
      (r.segment === undefined || r.segment === device?.segment) &&
      (r.type === undefined || r.type === device?.type),
  );
  return rule && RANK[severity] >= RANK[rule.minSeverity] ? rule : undefined;
}

/**
 * The live side of behaviour monitoring: events from the data path into the detector, findings into stored
 * alerts (de-duplicated until a person acknowledges them), SIEM sinks, and the configured automatic response.
 */
export class AnomalyService {
  readonly detector: Detector;
  private readonly sinks: AlertSink[] = [];
  private timers: NodeJS.Timeout[] = [];
  private conntrack: ConntrackFeed | undefined;
  /** Device by address, for attributing connections; rebuilt when identity changes. */
  private byAddress = new Map<string, string>();
  private addressStamp = '';
  /** Responses run one after another, in finding order. */
  private responding: Promise<void> = Promise.resolve();
  private readonly activity: ActivityRecorder;
  private readonly authWatch: AuthWatch;
  private readonly saver: BaselineSaver;
  /** Segment by device, the peer group for site context; rebuilt when identity changes. */
  private segments = new Map<string, string>();
  private segmentStamp = '';
  private unsubscribe: (() => void)[] = [];

  constructor(private readonly deps: AnomalyServiceDeps) {
    const a = deps.config.anomaly;
    this.detector = new Detector({
      learningMs: a.learningHours * 3_600_000,
      windowMs: a.windowSeconds * 1000,
      cooldownMs: a.cooldownMinutes * 60_000,
      utcOffsetMinutes: a.utcOffsetMinutes,
      ...(a.timeZone ? { timeZone: a.timeZone } : {}),
      relearnMs: a.relearnHours * 3_600_000,
      // Site-wide silences and shared changes are judged per segment (devices of a segment share a network).
      groupOf: (device) => this.segmentOf(device),
    });
    this.activity = new ActivityRecorder(deps.store);
    this.authWatch = new AuthWatch(deps.authWatch);
    this.saver = new BaselineSaver(deps.store, this.detector, deps.logger);
    this.detector.onWindow = (w) => this.activity.add(w);
    let restored = 0;
    let relearn = 0;
    for (const [id, state] of deps.store.baselines.all())
      if (this.detector.importState(id, state)) restored++;
      else relearn++;
    if (restored > 0) deps.logger.info({ devices: restored }, 'behaviour baselines restored');
    // An older layout (another version of the models) is relearned from scratch, not misread.
    if (relearn > 0)
      deps.logger.warn({ devices: relearn }, 'behaviour baselines of an older layout: relearning');
    if (a.siem.jsonlFile) this.sinks.push(new JsonlSink(a.siem.jsonlFile));
    if (a.siem.syslog) this.sinks.push(new SyslogSink(a.siem.syslog, deps.logger));
  }

  start(): void {
    const windowMs = this.deps.config.anomaly.windowSeconds * 1000;
    // Windows of devices that went quiet close on the clock, not only when their next event comes.
    const flush = setInterval(
      () => this.handle(this.detector.flush(this.deps.clock.now())),
      Math.min(windowMs, 5000),
    );
    const save = setInterval(() => void this.save(), SAVE_INTERVAL_MS);
    // Charts lag by at most a few windows (a minute at the default window), at one transaction per flush.
    const activity = setInterval(() => this.saveActivity(), Math.min(60_000, windowMs * 5));
    flush.unref();
    save.unref();
    activity.unref();
    this.timers = [flush, save, activity];
    // Expected changes: a firmware campaign tells a device to update (and it reports back), or a device is
    // (re-)admitted: it re-learns for anomaly.relearnHours instead of alerting on its new behaviour.
    const firmware = this.deps.firmware?.onDeviceChange((c) => {
      this.detector.expectChange(c.deviceId, this.deps.clock.now(), 'firmware', c.campaign);
    });
    if (firmware) this.unsubscribe.push(firmware);
    const identity = this.deps.events?.on(
      (e) => {
        const readmitted =
          (e.type === 'device.state' && e.from === 'pending' && e.to === 'active') ||
          (e.type === 'device.new' && e.state === 'active');
        if (readmitted) this.detector.expectChange(e.deviceId, this.deps.clock.now(), 'onboarding');
      },
      ['device.state', 'device.new'],
    );
    if (identity) this.unsubscribe.push(identity);
    if (this.deps.config.anomaly.conntrack) {
      this.conntrack = new ConntrackFeed((c) => {
        const device = this.deviceAt(c.src);
        if (device)
          this.observe({
            ts: this.deps.clock.now(),
            device,
            kind: 'connection',
            dst: c.dst,
            dport: c.dport,
            proto: c.proto,
          });
      }, this.deps.logger);
      this.conntrack.start();
    }
  }

  /** The device's segment (its peer group); devices without one share the site's group. */
  private segmentOf(device: string): string {
    // Known devices answer from the map (this runs per event); the map is rebuilt for a device it lacks
    // when identity changed, and at every save (a device moved to another segment).
    const known = this.segments.get(device);
    if (known !== undefined) return known;
    const stamp = this.deps.identity.changeStamp;
    if (stamp !== this.segmentStamp) {
      this.segmentStamp = stamp;
      this.segments = this.deps.store.devices.segments();
    }
    return this.segments.get(device) ?? '';
  }

  /** What the device page shows of the device's behaviour model (learning, re-learning and why, monitored). */
  behaviour(deviceId: string): BehaviourStatus {
    return this.detector.behaviour(deviceId, this.deps.clock.now());
  }

  private deviceAt(address: string): string | undefined {
    const stamp = this.deps.identity.changeStamp;
    if (stamp !== this.addressStamp) {
      this.addressStamp = stamp;
      this.byAddress = new Map(
        this.deps.store.devices
          .list()
          .flatMap((d) => (d.address ? [[d.address, d.id] as [string, string]] : [])),
      );
    }
    return this.byAddress.get(address);
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.saver.cancel(); // what a save in steps has not written yet, the whole save below does
    for (const u of this.unsubscribe) u();
    this.unsubscribe = [];
    this.conntrack?.stop();
    await this.responding;
    this.saveActivity();
    this.saver.saveNow(new Date(this.deps.clock.now()).toISOString());
    await Promise.all(this.sinks.map((s) => s.close()));
  }

  /** One event from the data path. Never throws into it. */
  observe(e: DetectorEvent): void {
    try {
      this.handle(this.detector.observe(e));
    } catch (err) {
      this.deps.logger.error({ err }, 'behaviour monitoring failed on an event');
    }
  }

  /**
   * One failed sensor authentication, known device or not, for the fixed brute-force rule (per source and per
   * identity). A known device's failures reach the detector too, as `auth_failure` events through `observe`
   * (scored against its baseline). The rule alerts, never quarantines: the failures are the attacker's, and
   * cutting off the device whose identity is guessed would hand the attacker a way to do it.
   */
  observeAuthFailure(e: AuthFailureEvent): void {
    try {
      for (const b of this.authWatch.observe(e)) this.raiseBruteForce(b);
    } catch (err) {
      this.deps.logger.error({ err }, 'behaviour monitoring failed on an authentication failure');
    }
  }

  private raiseBruteForce(b: BruteForce): void {
    const secs = Math.round((this.deps.clock.now() - b.windowStart) / 1000);
    const others =
      b.by === 'source'
        ? `${b.distinct} identit${b.distinct === 1 ? 'y' : 'ies'} tried${b.examples.length ? `, e.g. ${b.examples.join(', ')}` : ''}`
        : `from ${b.distinct} source${b.distinct === 1 ? '' : 's'}, e.g. ${b.examples.join(', ')}`;
    const explanation =
      b.by === 'source'
        ? `credential guessing: ${b.failures} failed DTLS authentications from ${b.key} in ${secs} s (${others})`
        : `credential guessing: ${b.failures} failed DTLS authentications as ${b.key} in ${secs} s (${others})`;
    const alert = raiseAlert(
      this.deps,
      {
        deviceId: b.deviceId,
        severity: 'high',
        kind: 'anomaly.auth',
        explanation,
        evidence: {
          by: b.by,
          [b.by]: b.key,
          failures: b.failures,
          windowStart: new Date(b.windowStart).toISOString(),
          examples: b.examples,
          response: this.blocks(b) ? 'block' : 'alert',
        },
        dedupeKey: `anomaly:auth:${b.by}:${b.key}`,
      },
      b.failures,
    );
    this.deps.logger.warn(
      { alertId: alert.id, by: b.by, key: b.key, failures: b.failures, deviceId: b.deviceId ?? undefined },
      'credential guessing alert',
    );
    if (this.blocks(b)) this.block(b, alert.id);
  }

  /** Whether the response policy blocks this brute force's source (policy.response.blockSource). */
  private blocks(b: BruteForce): boolean {
    return (
      b.by === 'source' && this.deps.config.policy.response.blockSource && this.deps.config.firewall.enforce
    );
  }

  /** Blocks a brute-forcing source address in the firewall, after the alert (responses run in order). */
  private block(b: BruteForce, alertId: number): void {
    const seconds = this.deps.config.policy.response.blockSeconds;
    this.responding = this.responding.then(async () => {
      try {
        const r = await this.deps.segmentation.blockSource(
          b.key,
          seconds,
          'anomaly-engine',
          `credential guessing (alert ${alertId})`,
        );
        this.deps.logger.warn({ source: b.key, seconds, result: r }, 'brute-forcing source blocked');
      } catch (err) {
        this.deps.logger.error({ err: (err as Error).message, source: b.key }, 'blocking a source failed');
      }
    });
  }

  /** Settles once every response started so far has run (tests, shutdown). */
  idle(): Promise<void> {
    return this.responding;
  }

  private saveActivity(): void {
    try {
      this.activity.flush(this.deps.clock.now());
    } catch (err) {
      this.deps.logger.error({ err }, 'saving device activity failed');
    }
  }

  /**
   * The periodic save: activity, then every baseline in steps (baseline-saver.ts), so the data path keeps being
   * served. The segment map is rebuilt at the next event (a device may have moved to another segment).
   */
  private save(): Promise<void> {
    this.saveActivity();
    this.segmentStamp = '';
    this.segments = new Map();
    return this.saver.saveInSteps(new Date(this.deps.clock.now()).toISOString());
  }

  private handle(findings: Finding[]): void {
    for (const f of findings) {
      const device = this.deps.store.devices.get(f.device);
      const rule = responseFor(this.deps.config.anomaly.responses, device, f.severity);
      const action = rule?.action ?? 'alert';
      const kinds = [...new Set(f.reasons.map((r) => r.feature))].sort();
      const alert = raiseAlert(
        this.deps,
        {
          deviceId: f.device,
          severity: f.severity,
          kind: `anomaly.${kinds.join('+')}`,
          explanation: f.reasons.map((r) => r.text).join('; '),
          evidence: {
            score: f.score,
            windowStart: new Date(f.windowStart).toISOString(),
            ts: new Date(f.ts).toISOString(),
            reasons: f.reasons,
            response: action,
          },
          dedupeKey: `anomaly:${f.device}:${kinds.join('+')}`,
        },
        f.score,
      );
      this.deps.logger.warn(
        { deviceId: f.device, alertId: alert.id, severity: f.severity, kinds, response: action },
        'behaviour alert',
      );
      const record = alertRecord(f, alert.id, action);
      for (const s of this.sinks) {
        try {
          s.send(record);
        } catch (err) {
          this.deps.logger.error({ err: (err as Error).message }, 'SIEM export failed');
        }
      }
      if (rule && device && rule.action !== 'alert') {
        this.responding = this.responding.then(() => this.respond(rule, device, f, alert.id));
      }
    }
  }

  /** The automatic response: audited (by the services it calls, or here), and reversible by a person. */
  private async respond(rule: Response, device: Device, f: Finding, alertId: number): Promise<void> {
    const reason = `anomaly alert ${alertId}: ${f.reasons[0]?.text ?? 'behaviour changed'}`.slice(0, 500);
    try {
      const current = this.deps.store.devices.get(device.id);
      if (rule.action === 'quarantine' || rule.action === 'revoke') {
        if (current?.state !== 'active') return; // already quarantined, pending or gone
        // revoke = isolate: the credential is refused and the network is cut, yet nothing is erased, so a person
        // can release it; erasing is decommission, a person's decision.
        const r = await this.deps.segmentation.quarantine(
          device.id,
          { reason, mode: rule.action === 'revoke' ? 'isolate' : 'observe' },
          'anomaly',
        );
        if (r.firewall === 'failed')
          this.deps.logger.error(
            { deviceId: device.id, error: r.error },
            'quarantine not enforced in the firewall',
          );
      } else if (rule.action === 'rate-limit') {
        const until = new Date(this.deps.clock.now() + rule.durationMinutes * 60_000).toISOString();
        this.deps.identity.transact(() => {
          this.deps.store.rateLimits.put(
            { deviceId: device.id, perSecond: rule.perSecond, until, reason },
            new Date(this.deps.clock.now()).toISOString(),
          );
          this.deps.audit.append({
            actor: 'anomaly',
            action: 'device.rate-limit',
            target: device.id,
            details: { perSecond: rule.perSecond, until, alertId },
          });
        });
      }
      this.deps.logger.warn(
        { deviceId: device.id, action: rule.action, alertId },
        'automatic response applied',
      );
    } catch (err) {
      this.deps.logger.error(
        { err: (err as Error).message, deviceId: device.id, action: rule.action },
        'automatic response failed',
      );
    }
  }
}
