/**
 * The gateway's side of the fleet plane, hung on the uplink's connection (uplink/uplink.ts FleetHooks):
 * presence (birth on connect, an MQTT 5 Will for the rest), the retained reported state (at connect, on change
 * debounced, and every `stateIntervalSeconds`), desired-state documents in, their results out, and the alert
 * stream through the durable queue.
 */
import { readFileSync } from 'node:fs';
import type { AuditCheckpoint } from '../audit/index.ts';
import type { Clock } from '../clock.ts';
import type { Core } from '../core.ts';
import type { Logger } from '../log.ts';
import { LogThrottle } from '../log-throttle.ts';
import type { FleetHooks, Uplink, WillMessage } from '../uplink/index.ts';
import { queueFull } from '../uplink/queue-full.ts';
import { DesiredStateApplier } from './apply.ts';
import { ed25519PublicKey, keyIdOf } from './document.ts';
import { gatewayHpkeKey, hpkeBindingMessage } from './hpke.ts';
import { buildState, type ComplianceSummary, complianceSummary, presence } from './state.ts';
import { fleetTopics, groupTopic, STREAM_SUFFIX } from './topics.ts';
import type { FleetRuntimeStatus } from './view.ts';

/** Checkpoints made for the state at most this often (each advances the keystore's counter: TPM NV wear). */
const CHECKPOINT_MIN_INTERVAL_MS = 60_000;
/**
 * The compliance summary is recomputed at most this often: it verifies the whole audit chain, which must not
 * run at every debounced state change of a site with a long log.
 */
const COMPLIANCE_MAX_AGE_MS = 10 * 60_000;
/** Audit entries per stream message, and how often new entries are looked for. */
export const AUDIT_BATCH_ENTRIES = 100;
const AUDIT_POLL_MS = 2000;
/** At most this many batches are queued per poll: a long backlog drains without flooding the queue at once. */
const AUDIT_BATCHES_PER_POLL = 20;

export class FleetAgent implements FleetHooks {
  private readonly topics: ReturnType<typeof fleetTopics>;
  private readonly groupScopes = new Map<string, string>();
  private stateTimer: NodeJS.Timeout | null = null;
  private intervalTimer: NodeJS.Timeout | null = null;
  private lastStateAt = 0;
  private lastCheckpointAt = 0;
  private connectedAt = 0;
  private unsubscribe: (() => void) | null = null;
  /** Documents are handled one at a time, in arrival order. */
  private chain: Promise<void> = Promise.resolve();
  private stopped = false;
  /** The last audit entry put into the durable queue (from the last acknowledged one after a restart). */
  private auditQueuedThrough: number;
  private auditTimer: NodeJS.Timeout | null = null;
  private compliance: { at: number; summary: ComplianceSummary } | null = null;
  /** What got out, for the fleet page (FleetRuntimeStatus). */
  private published: Pick<FleetRuntimeStatus, 'presence' | 'state' | 'lastError'> = {
    presence: null,
    state: null,
    lastError: null,
  };
  /** Stream messages the uplink refused (queue at its bound), by stream; logged once a minute per stream. */
  private readonly refused = { alerts: 0, audit: 0 };
  private readonly refusalLog = new LogThrottle(60_000, () => Date.now());

  private constructor(
    private readonly core: Core,
    private readonly uplink: Uplink,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly applier: DesiredStateApplier,
    private readonly hpke: { publicKey: string; keyId: string; signature: string },
  ) {
    this.topics = fleetTopics(uplink.topicPrefix);
    const f = core.config.fleet;
    for (const g of f.groups) this.groupScopes.set(groupTopic(f.groupTopic, g), `group:${g}`);
    this.auditQueuedThrough = core.store.fleet.streamAcked('audit');
  }

  static async create(core: Core, uplink: Uplink, clock: Clock, logger: Logger): Promise<FleetAgent> {
    const keystore = core.keystore;
    if (!keystore) throw new Error('the fleet agent needs the keystore');
    const hpke = await gatewayHpkeKey(keystore);
    const publicKey = hpke.publicKey.toString('base64');
    const signature = keystore
      .signWithIdentity(hpkeBindingMessage(uplink.topicPrefix, publicKey))
      .toString('base64');
    const file = core.config.fleet.operatorKeyFile;
    const configKey = file ? ed25519PublicKey(readFileSync(file, 'utf8')) : null;
    const applier = new DesiredStateApplier(core, hpke, configKey, uplink.topicPrefix, logger);
    return new FleetAgent(core, uplink, clock, logger, applier, { publicKey, keyId: hpke.keyId, signature });
  }

  start(): void {
    this.uplink.setFleetHooks(this);
    this.unsubscribe = this.core.events.on(
      (e) => {
        if (e.type === 'alert') {
          this.streamAlert(e);
          this.scheduleState();
        } else if (e.type === 'device.new' || e.type === 'device.state') {
          if (e.type === 'device.state' && (e.to === 'quarantined' || e.to === 'decommissioned')) {
            this.uplink.deviceGone(e.deviceId); // Sparkplug's DDEATH (nothing in raw format)
          }
          this.scheduleState();
        }
      },
      ['alert', 'device.new', 'device.state'],
    );
    this.intervalTimer = setInterval(
      () => this.publishState(),
      this.core.config.fleet.stateIntervalSeconds * 1000,
    );
    this.intervalTimer.unref();
    this.auditTimer = setInterval(() => this.pumpAudit(), AUDIT_POLL_MS);
    this.auditTimer.unref();
  }

  will(): WillMessage {
    this.connectedAt = this.clock.now();
    return {
      topic: this.topics.status,
      payload: Buffer.from(JSON.stringify(presence(false, this.connectedAt, 'will'))),
      retain: true,
    };
  }

  subscriptions(): string[] {
    return [this.topics.desired, this.topics.auditAck, ...this.groupScopes.keys()];
  }

  onConnect(): void {
    this.publish(this.topics.status, presence(true, this.clock.now(), 'birth'));
    this.publishState();
  }

  onMessage(topic: string, payload: Buffer): boolean {
    if (topic === this.topics.auditAck) {
      this.auditAcknowledged(payload);
      return true;
    }
    const scope = topic === this.topics.desired ? 'gateway' : this.groupScopes.get(topic);
    if (!scope) return false;
    this.chain = this.chain.then(async () => {
      if (this.stopped) return;
      const result = await this.applier.handle(scope, payload);
      if (!result) return;
      this.publish(this.topics.result, result);
      this.scheduleState(0);
    });
    return true;
  }

  private publish(topic: string, doc: unknown): void {
    const payload = Buffer.from(JSON.stringify(doc));
    this.uplink
      .publishDirect(topic, payload, { retain: true })
      .then(() => {
        const at = new Date(this.clock.now()).toISOString();
        if (topic === this.topics.status) {
          this.published.presence = { online: (doc as { online: boolean }).online, at };
        } else if (topic === this.topics.state) this.published.state = { at, bytes: payload.length };
      })
      .catch((err: Error) => {
        // Retained documents are sent again at the next connect: a loss while offline costs nothing.
        this.published.lastError = {
          topic,
          message: err.message,
          at: new Date(this.clock.now()).toISOString(),
        };
        this.logger.debug({ topic, err: err.message }, 'fleet publish not sent');
      });
  }

  /** For the fleet page: the connection, the topics followed, and what got out. */
  status(): FleetRuntimeStatus {
    return {
      prefix: this.uplink.topicPrefix,
      connected: this.uplink.status().state === 'connected',
      subscriptions: this.subscriptions(),
      ...this.published,
    };
  }

  /** Trailing debounce: at most one state per `stateDebounceSeconds`, the last change always included. */
  private scheduleState(delayMs?: number): void {
    if (this.stateTimer || this.stopped) return;
    const debounce = this.core.config.fleet.stateDebounceSeconds * 1000;
    const wait = delayMs ?? Math.max(0, this.lastStateAt + debounce - this.clock.now());
    this.stateTimer = setTimeout(
      () => {
        this.stateTimer = null;
        this.publishState();
      },
      Math.max(wait, 50),
    );
    this.stateTimer.unref();
  }

  private auditHead(): AuditCheckpoint | null {
    const last = this.core.audit.lastCheckpoint() ?? null;
    const now = this.clock.now();
    // At connect (a new session of the outside party's view) or at most once a minute: sign the current head.
    const fresh = this.lastCheckpointAt === 0 || now - this.lastCheckpointAt >= CHECKPOINT_MIN_INTERVAL_MS;
    if (!fresh) return last;
    try {
      const cp = this.core.audit.checkpoint();
      this.lastCheckpointAt = now;
      return cp ?? last;
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'fleet: no audit checkpoint for the state');
      return last;
    }
  }

  private complianceNow(): ComplianceSummary {
    const now = this.clock.now();
    if (!this.compliance || now - this.compliance.at >= COMPLIANCE_MAX_AGE_MS) {
      this.compliance = { at: now, summary: complianceSummary(this.core) };
    }
    return this.compliance.summary;
  }

  publishState(): void {
    if (this.stopped || this.uplink.status().state !== 'connected') return;
    this.lastStateAt = this.clock.now();
    try {
      const labels: Record<string, string> = {};
      for (const a of this.core.store.fleet.allApplied()) Object.assign(labels, a.labels);
      const key = this.applier.operatorKey();
      const doc = buildState({
        core: this.core,
        prefix: this.uplink.topicPrefix,
        uplink: this.uplink.status(),
        audit: this.auditHead(),
        hpke: this.hpke,
        operatorKeyId: key ? keyIdOf(key) : null,
        labels,
        compliance: this.complianceNow(),
      });
      this.publish(this.topics.state, doc);
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'fleet: reported state not built');
    }
  }

  private streamAlert(
    e: Extract<Parameters<Parameters<Core['events']['on']>[0]>[0], { type: 'alert' }>,
  ): void {
    // Durable, like telemetry: an alert raised while the broker is away is delivered when it is back.
    this.uplink
      .enqueue({
        deviceId: e.deviceId ?? '',
        payload: Buffer.from(JSON.stringify(e)),
        contentFormat: 50,
        credentialKind: 'gateway',
        topicSuffix: STREAM_SUFFIX.alerts,
      })
      .catch((err: Error) => this.notQueued('alerts', err));
  }

  /**
   * A stream message the uplink did not store. A full queue refuses by the thousand under load, so it is counted
   * and said once a minute per stream; anything else is an error each time. An alert not streamed stays in the
   * gateway's store (alerts list); an audit batch is queued again from the next poll.
   */
  private notQueued(stream: 'alerts' | 'audit', err: Error): void {
    if (!queueFull(err)) {
      this.logger.error({ err: err.message }, `fleet: ${stream} stream message not queued`);
      return;
    }
    this.refused[stream]++;
    if (this.refusalLog.admit(stream) !== null)
      this.logger.warn(
        { stream, refused: this.refused[stream] },
        'fleet: stream message not queued: the uplink queue is full',
      );
  }

  /**
   * The audit stream: entries after the last one queued, in batches through the uplink's durable queue (at
   * least once: after a restart the stream resumes after the last acknowledged entry, so a batch may repeat).
   */
  pumpAudit(): void {
    if (this.stopped) return;
    try {
      for (let n = 0; n < AUDIT_BATCHES_PER_POLL; n++) {
        const entries = [];
        for (const e of this.core.audit.entries(this.auditQueuedThrough + 1)) {
          entries.push(e);
          if (entries.length >= AUDIT_BATCH_ENTRIES) break;
        }
        if (entries.length === 0) return;
        const first = entries[0]?.seq as number;
        const last = entries[entries.length - 1]?.seq as number;
        const batch = {
          format: 'portcullis-audit-batch/1',
          prefix: this.uplink.topicPrefix,
          from: first,
          to: last,
          entries,
        };
        this.auditQueuedThrough = last;
        this.uplink
          .enqueue({
            deviceId: '',
            payload: Buffer.from(JSON.stringify(batch)),
            contentFormat: 50,
            credentialKind: 'gateway',
            topicSuffix: STREAM_SUFFIX.audit,
          })
          .catch((err: Error) => {
            // Not stored: the next poll starts again from this batch.
            this.auditQueuedThrough = Math.min(this.auditQueuedThrough, first - 1);
            this.notQueued('audit', err);
          });
      }
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'fleet: audit stream');
    }
  }

  /** `{"seq": N}` from the collector: entries through N are kept outside; a restart resumes after N. */
  private auditAcknowledged(payload: Buffer): void {
    let seq: unknown;
    try {
      seq = (JSON.parse(payload.toString('utf8')) as { seq?: unknown }).seq;
    } catch {
      return;
    }
    // Only what was sent can be acknowledged: an acknowledgement beyond it would skip entries never delivered.
    if (!Number.isSafeInteger(seq) || (seq as number) < 1 || (seq as number) > this.auditQueuedThrough)
      return;
    try {
      this.core.store.fleet.raiseStreamAcked('audit', seq as number);
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'fleet: audit acknowledgement not stored');
    }
  }

  /** A clean stop says so (retained), instead of leaving the Will to the broker. */
  async stop(): Promise<void> {
    if (this.stateTimer) clearTimeout(this.stateTimer);
    if (this.intervalTimer) clearInterval(this.intervalTimer);
    if (this.auditTimer) clearInterval(this.auditTimer);
    // What was appended since the last poll (the stop's own entry comes after: the next start sends it).
    this.pumpAudit();
    this.unsubscribe?.();
    await this.chain.catch(() => {});
    this.stopped = true;
    await Promise.race([
      this.uplink
        .publishDirect(
          this.topics.status,
          Buffer.from(JSON.stringify(presence(false, this.clock.now(), 'stopped'))),
          {
            retain: true,
          },
        )
        .catch(() => {}),
      new Promise((r) => setTimeout(r, 1000).unref()),
    ]);
  }
}
