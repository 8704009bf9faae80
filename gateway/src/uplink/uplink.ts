import { createPrivateKey, X509Certificate } from 'node:crypto';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import { LogThrottle } from '../log-throttle.ts';
import type { QueuedMessage, Store } from '../store/index.ts';
import {
  openQueueWriter,
  type QueueBatchResult,
  type QueueRow,
  type QueueWriter,
} from '../store/queue-writer.ts';
import { watchCertificate } from './certificate-watch.ts';
import type {
  BrokerConnection,
  ConnectionEvents,
  ConnectParams,
  UplinkKey,
  WillMessage,
} from './connection.ts';
import { QueueFullError } from './queue-full.ts';
import { type SparkplugOptions, SparkplugSession } from './sparkplug.ts';

/**
 * What the fleet plane (gateway/src/fleet) hangs on the connection: a Will set at every connect, its own
 * subscriptions, a hook when the connection comes up (the birth message, the reported state) and the messages
 * on its topics. The uplink stays the one owner of the broker connection.
 */
export interface FleetHooks {
  will(): WillMessage;
  subscriptions(): string[];
  onConnect(): void;
  /** True when the message was the fleet's (a desired-state document). */
  onMessage(topic: string, payload: Buffer): boolean;
}

export interface UplinkTls {
  ca: Buffer;
  /** PEM chain of the gateway's client certificate; without it the uplink waits and messages queue. */
  cert: Buffer | null;
  key: UplinkKey;
}

export interface UplinkOptions {
  url: string;
  clientId: string;
  topicPrefix: string;
  tls: UplinkTls;
  /** Where the client certificate will be (uplink.certFile) when `tls.cert` is not there yet: it is awaited. */
  certFile?: string;
  /** Unacknowledged publishes at once. */
  window?: number;
  /**
   * At this many queued messages a new one is refused (QueueFullError), never stored and then dropped: the
   * sender is told to retry after `retryAfterSeconds`. Older than `maxAgeMs` is dropped and counted (retention).
   */
  maxMessages?: number;
  retryAfterSeconds?: number;
  maxAgeMs?: number;
  reconnect?: { minMs?: number; maxMs?: number };
  /** `uplink.format: sparkplug-b`: device telemetry as Sparkplug B (uplink/sparkplug.ts); otherwise raw. */
  sparkplug?: SparkplugOptions;
}

/** A command from the cloud for one device (topic `{prefix}/devices/{id}/commands`). */
export interface DownlinkMessage {
  deviceId: string;
  payload: Buffer;
  contentFormat: number | null;
}

export interface TelemetryMessage {
  /** Empty for a flow's message about no device in particular. */
  deviceId: string;
  payload: Buffer;
  contentFormat: number | null;
  credentialKind: string;
  /** Under the topic prefix instead of the device's telemetry topic (messages published by policy flows). */
  topicSuffix?: string;
  /**
   * The device's last_seen to write with the reading (ISO time; identity.seenDue says when one is due): inside the
   * queue's transaction, so it shares its one fsync instead of paying its own (issue 23). Its failure is logged;
   * the reading still commits.
   */
  seenAt?: string;
}

export interface UplinkStatus {
  state: 'unset' | 'awaiting-certificate' | 'connecting' | 'connected' | 'disconnected';
  queueDepth: number;
  published: number;
  /** Expired (older than the queue's maxAge) and deleted unsent. */
  dropped: number;
  /** Refused because the queue was at its bound (not stored, not acknowledged to the sender). */
  refused: number;
  lastError: string | null;
  /** When the current state began (ISO time): connected since, or trying to connect since. */
  since: string;
}

/**
 * Store-and-forward to the cloud broker: a message is durable in SQLite before the sensor is answered, is
 * published with QoS 1 in queue order, and is deleted only on PUBACK. After a reconnect or a restart the
 * queue is replayed from its head, so delivery is at least once (a lost PUBACK means one duplicate).
 */
/**
 * Unacknowledged publishes at once. The connection runs in another thread (remote-connection.ts), so a PUBACK takes
 * longer to come back to the pump than in-process; 64 in flight then bounded the rate (issue 23).
 */
const DEFAULT_WINDOW = 256;
/** How long PUBACKed rows wait for a group commit to ride in before they are deleted on their own. */
const ACK_FLUSH_MS = 100;
/** The first retry after a failed queue commit, and the longest pause the doubling reaches. */
const COMMIT_RETRY_MS = 100;
const COMMIT_RETRY_MAX_MS = 30_000;
/** Messages the pump holds in memory ahead of the broker; beyond it (the broker is slow or away) it reads the queue. */
const TAIL_MAX = 4096;
const DEFAULT_MAX_AGE_MS = 7 * 24 * 3600_000;

interface Pending {
  m: TelemetryMessage;
  resolve(): void;
  reject(err: unknown): void;
}

let connector: Promise<(p: ConnectParams, ev: ConnectionEvents) => BrokerConnection> | undefined;

/** Why the certificate cannot be used with the uplink's key, or null when it can. */
function certificateMismatch(certPem: Buffer, keyPem: string): string | null {
  try {
    return new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem))
      ? null
      : "the uplink certificate is not for this gateway's uplink key (was it signed from this gateway's CSR?)";
  } catch (err) {
    return `the uplink certificate cannot be read: ${(err as Error).message}`;
  }
}

export class Uplink {
  private client: BrokerConnection | null = null;
  private connected = false;
  private readonly inflight = new Set<number>();
  private lastSentId = 0;
  private depth: number;
  private published = 0;
  private dropped = 0;
  private refused = 0;
  private refusedLogged = 0;
  private readonly refusalLog: LogThrottle;
  private attempt = 0;
  private lastError: string | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private expiryTimer: NodeJS.Timeout | null = null;
  private pumpScheduled = false;
  private certWatch: { close(): void } | null = null;
  private stopped = false;
  /** After stop(): the store may be closed; nothing touches it any more. */
  private closed = false;
  private batch: Pending[] = [];
  private acked: number[] = [];
  private ackTimer: NodeJS.Timeout | null = null;
  /** Commits the queue's writes in a thread of its own (store/queue-writer.ts); made with the first batch. */
  private writer: QueueWriter | null = null;
  /** The batch the writer has now (one at a time: what comes meanwhile goes next, together), settled or not. */
  private committing: Promise<void> | null = null;
  private commitScheduled = false;
  /** Commits failed in a row: the retry of what they carried waits longer each time. */
  private commitFailures = 0;
  private commitRetry: NodeJS.Timeout | null = null;
  /** Retention: what was enqueued before this goes with the next commit. */
  private expireBefore: string | null = null;
  /** Committed messages not yet sent, in id order, while the pump is in step with the queue; null: read the queue. */
  private tail: QueuedMessage[] | null = null;
  /** clock.now() when the connection last came up or went down (or the uplink was made). */
  private stateChangedAt: number;
  private fleet: FleetHooks | null = null;
  private readonly sparkplug: SparkplugSession | null;

  constructor(
    private readonly store: Store,
    private readonly opts: UplinkOptions | null,
    private readonly clock: Clock,
    private readonly logger: Logger,
    /** Decides about and stores a downlink command; the uplink only parses the topic. */
    private readonly onCommand: (c: DownlinkMessage) => void = () => {},
  ) {
    this.depth = store.queue.depth();
    this.sparkplug = opts?.sparkplug ? new SparkplugSession(opts.sparkplug, clock) : null;
    this.stateChangedAt = clock.now();
    this.refusalLog = new LogThrottle(60_000, () => clock.now());
  }

  /** `{topicPrefix}/devices/`: telemetry goes under it, commands come from under it. */
  private get devicesTopic(): string {
    return `${this.opts?.topicPrefix ?? 'portcullis'}/devices/`;
  }

  private commandsTopic(): string {
    return `${this.devicesTopic}+/commands`;
  }

  /** Set before start(): the Will and subscriptions go with every connect from then on. */
  setFleetHooks(hooks: FleetHooks): void {
    this.fleet = hooks;
  }

  get topicPrefix(): string {
    return this.opts?.topicPrefix ?? 'portcullis';
  }

  /**
   * Publishes now, outside the durable queue: for retained documents (presence, state, results) that are
   * published again at every connect, so a loss while offline costs nothing. Rejects when not connected.
   */
  publishDirect(topic: string, payload: Buffer, options: { retain?: boolean } = {}): Promise<void> {
    const client = this.client;
    if (!client || !this.connected) return Promise.reject(new Error('uplink not connected'));
    return new Promise<void>((resolve, reject) =>
      client.publish(topic, payload, {}, (err) => (err ? reject(new Error(err)) : resolve()), options),
    );
  }

  private onBrokerMessage(topic: string, payload: Buffer, props: Record<string, string>): void {
    if (this.sparkplug?.isRebirth(topic, payload)) {
      this.logger.info('sparkplug: rebirth requested (NCMD)');
      this.publishBirth();
      return;
    }
    try {
      if (this.fleet?.onMessage(topic, payload)) return;
    } catch (err) {
      this.logger.error({ err: (err as Error).message, topic }, 'fleet message not handled');
      return;
    }
    const prefix = this.devicesTopic;
    if (!topic.startsWith(prefix) || !topic.endsWith('/commands')) return;
    const deviceId = topic.slice(prefix.length, -'/commands'.length);
    const cf = props.contentFormat !== undefined ? Number(props.contentFormat) : null;
    const contentFormat = cf !== null && Number.isInteger(cf) && cf >= 0 && cf <= 0xffff ? cf : null;
    try {
      this.onCommand({ deviceId, payload, contentFormat });
    } catch (err) {
      this.logger.error({ err: (err as Error).message, deviceId }, 'downlink command not stored');
    }
  }

  topicFor(deviceId: string): string {
    return `${this.devicesTopic}${deviceId}/telemetry`;
  }

  /**
   * Resolves once the message is committed (group commit: every message that arrives while the writer commits the
   * batch before shares the next transaction, so one fsync). Only then may the sensor be acknowledged. Rejects with
   * QueueFullError (ERR_UPLINK_QUEUE_FULL) when the queue is at its bound: nothing is stored.
   */
  enqueue(m: TelemetryMessage): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.batch.push({ m, resolve, reject });
      this.scheduleCommit();
    });
  }

  private scheduleCommit(): void {
    if (this.commitScheduled || this.committing) return;
    this.commitScheduled = true;
    setImmediate(() => {
      this.commitScheduled = false;
      this.commitBatch();
    });
  }

  /**
   * Hands the writer one transaction: the new readings that fit under the bound, their devices' last_seen, the
   * PUBACKed rows to delete and the retention cut. The writer commits it on its own connection in its own thread,
   * so the fsync blocks that thread, not this one (issue 23); the senders are answered when it says committed.
   */
  private commitBatch(): void {
    if (this.committing || this.closed) return;
    // While a failed commit's retry waits, only new readings go (their senders hear at once).
    if (this.commitRetry && this.batch.length === 0) return;
    const batch = this.batch;
    this.batch = [];
    const max = this.opts?.maxMessages ?? 100_000;
    // Backpressure: what does not fit is refused before it is stored, in arrival order, so no message is
    // acknowledged that the bound would later drop (issue 23).
    const room = Math.max(0, max - this.depth);
    const refused = batch.slice(room);
    batch.length = Math.min(batch.length, room);
    if (refused.length > 0) this.refuse(refused, max);
    // PUBACKed rows waiting for their delete go in the same transaction: one fsync for both (issue 23).
    const acked = this.takeAcked();
    const expireBefore = this.expireBefore;
    this.expireBefore = null;
    if (batch.length === 0 && acked.length === 0 && expireBefore === null) return;
    const receivedAt = new Date(this.clock.now()).toISOString();
    const rows: QueueRow[] = [];
    const props: Array<Record<string, string>> = [];
    const seen: Array<[string, string]> = [];
    for (const { m } of batch) {
      const properties: Record<string, string> = { receivedAt, credentialKind: m.credentialKind };
      if (m.deviceId) properties.deviceId = m.deviceId;
      if (m.contentFormat !== null) properties.contentFormat = String(m.contentFormat);
      const topic = m.topicSuffix
        ? `${this.opts?.topicPrefix ?? 'portcullis'}/${m.topicSuffix}`
        : this.topicFor(m.deviceId);
      rows.push({ deviceId: m.deviceId, topic, payload: m.payload, properties: JSON.stringify(properties) });
      props.push(properties);
      if (m.seenAt && m.deviceId) seen.push([m.deviceId, m.seenAt]);
    }
    this.writer ??= openQueueWriter(this.store);
    let failed = false;
    this.committing = this.writer
      .commit({ enqueuedAt: receivedAt, rows, seen, acked, expireBefore })
      .then(
        (r) => this.committed(batch, rows, props, r, receivedAt),
        (err: unknown) => {
          failed = true;
          // No sensor is acknowledged, so each will retransmit.
          for (const b of batch) b.reject(err);
          this.acked.push(...acked);
          this.expireBefore ??= expireBefore;
          this.commitFailed(err);
        },
      )
      .finally(() => {
        this.committing = null;
        if (failed) this.armCommitRetry();
        else if (this.batch.length > 0 || this.expireBefore !== null) this.commitBatch();
        else if (this.acked.length > 0) this.armAckFlush();
      });
  }

  /**
   * A writer that died may have committed the batch before it could say so: what the queue holds is read again
   * rather than assumed (its depth for the bound, its rows for the pump — a row the pump never heard of would
   * otherwise wait for the next reconnect). Logged once a minute with the count, not once per attempt.
   */
  private commitFailed(err: unknown): void {
    this.commitFailures++;
    if (!this.closed) {
      this.tail = null;
      try {
        this.depth = this.store.queue.depth();
      } catch {
        // the depth stays as counted; the next commit's answer moves it again
      }
    }
    const suppressed = this.refusalLog.admit('commit-failed');
    if (suppressed !== null)
      this.logger.error(
        { err: (err as Error).message, failures: this.commitFailures, suppressed },
        'uplink queue: commit failed',
      );
  }

  /**
   * What a failed commit carried (PUBACK deletes, the retention cut) is tried again after a pause that doubles
   * up to 30 s: a store that keeps refusing (a file system remounted read-only, a full disk) must not turn the
   * retry into a busy loop. New readings still go at once (each sender hears of a failure and retransmits).
   */
  private armCommitRetry(): void {
    if (this.commitRetry || this.closed) return;
    const delay = Math.min(COMMIT_RETRY_MAX_MS, COMMIT_RETRY_MS * 2 ** Math.min(this.commitFailures - 1, 16));
    this.commitRetry = setTimeout(() => {
      this.commitRetry = null;
      this.scheduleCommit();
    }, delay);
    this.commitRetry.unref();
  }

  private committed(
    batch: Pending[],
    rows: QueueRow[],
    props: Array<Record<string, string>>,
    r: QueueBatchResult,
    receivedAt: string,
  ): void {
    this.commitFailures = 0;
    for (const e of r.errors) this.logger.error({ err: e }, 'uplink: a write beside the readings failed');
    this.depth += rows.length - r.deleted;
    if (r.expired > 0) {
      this.tail = null; // what the pump holds may include them
      const maxAgeMs = this.opts?.maxAgeMs ?? DEFAULT_MAX_AGE_MS;
      this.countDropped(r.expired, { maxAgeMs }, 'uplink queue: dropped expired messages');
    }
    // The pump sends these from memory while it is in step with the queue (no read back of what was just written).
    // It may have read some of them already (they were committed before this answer came): ids tell.
    if (this.tail) {
      const fresh: QueuedMessage[] = [];
      rows.forEach((row, i) => {
        const id = r.ids[i] as number;
        if (id > this.lastSentId) {
          const { deviceId, topic, payload } = row;
          fresh.push({ id, deviceId, topic, payload, properties: props[i] ?? {}, enqueuedAt: receivedAt });
        }
      });
      this.tail = this.tail.length + fresh.length <= TAIL_MAX ? this.tail.concat(fresh) : null;
    }
    for (const b of batch) b.resolve();
    this.schedulePump();
  }

  private refuse(refused: Array<{ reject(err: unknown): void }>, max: number): void {
    const retryAfter = this.opts?.retryAfterSeconds ?? 10;
    this.refused += refused.length;
    for (const b of refused) b.reject(new QueueFullError(retryAfter, max));
    // Once a minute at most, with how many since the last line: a full queue under load refuses thousands a second.
    if (this.refusalLog.admit('queue-full') !== null) {
      const since = this.refused - this.refusedLogged;
      this.refusedLogged = this.refused;
      this.logger.warn(
        {
          refused: since,
          total: this.refused,
          max,
          retryAfterSeconds: retryAfter,
          state: this.status().state,
        },
        'uplink queue full: refusing new messages until it drains',
      );
    }
  }

  /**
   * PUBACKed rows are deleted with the next group commit of new messages, or on their own after ACK_FLUSH_MS when
   * none comes: a delete lost in a crash only means a duplicate, so it need not cost an fsync of its own.
   */
  private acknowledged(id: number): void {
    if (this.closed) return; // the row stays queued: at worst one duplicate after the restart
    this.acked.push(id);
    this.armAckFlush();
  }

  private armAckFlush(): void {
    if (this.ackTimer) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = null;
      this.scheduleCommit();
    }, ACK_FLUSH_MS);
  }

  private takeAcked(): number[] {
    const ids = this.acked;
    this.acked = [];
    if (this.ackTimer) clearTimeout(this.ackTimer);
    this.ackTimer = null;
    return ids;
  }

  start(): void {
    const maxAge = this.opts?.maxAgeMs ?? DEFAULT_MAX_AGE_MS;
    this.expiryTimer = setInterval(() => this.expire(maxAge), Math.min(maxAge, 60_000));
    this.expiryTimer.unref();
    const certFile = this.opts?.certFile;
    if (certFile && !this.opts?.tls.cert) {
      this.logger.warn(
        { certFile },
        'uplink: waiting for certificate (uplink.certFile); nothing is sent and messages queue until it is there',
      );
      this.certWatch = watchCertificate(certFile, (pem) => this.setCertificate(pem));
    }
    this.connect();
  }

  /**
   * Retention rides with the next commit (the writer's thread deletes; committed() counts and says it). An empty
   * queue has nothing to cut: a sweep then would start the writer's thread every minute and keep it ~20 s, ~7–10
   * MiB for a third of an idle gateway's life (issue 20's footprint). The count is asked of the store before it is
   * believed: after a writer died and the depth could not be read again, it may be short, and rows must still age.
   */
  private expire(maxAgeMs: number): void {
    if (this.depth <= 0 && this.queueEmpty()) return;
    this.expireBefore = new Date(this.clock.now() - maxAgeMs).toISOString();
    this.scheduleCommit();
  }

  private queueEmpty(): boolean {
    try {
      return this.store.queue.depth() === 0;
    } catch {
      return false; // unknown: swept, and the commit says what it found
    }
  }

  /** Every drop is counted and said: the bound is a policy, never a silent loss. */
  private countDropped(n: number, fields: Record<string, unknown>, msg: string): void {
    if (n === 0) return;
    this.depth -= n;
    this.dropped += n;
    this.logger.warn({ dropped: n, ...fields }, msg);
  }

  private connect(): void {
    const o = this.opts;
    if (!o?.tls.cert || this.stopped) return;
    // mqtt.js and the worker plumbing load with the first connection: a gateway without an uplink (and every CLI
    // command) never pays for them.
    connector ??= import('./remote-connection.ts').then((m) => m.connectBroker);
    connector.then(
      (connectBroker) => this.open(connectBroker, o),
      (err: unknown) => {
        this.lastError = `uplink module: ${(err as Error).message}`;
        this.logger.error({ err: this.lastError }, 'uplink cannot start');
      },
    );
  }

  private open(
    connectBroker: (p: ConnectParams, ev: ConnectionEvents) => BrokerConnection,
    o: UplinkOptions,
  ): void {
    if (this.stopped || !o.tls.cert) return;
    // A certificate that was not signed for this gateway's key (the wrong CSR, another gateway's file) makes
    // mqtt.js throw from inside its connect, out of reach of any handler; say so and try again later instead.
    const mismatch = o.tls.key.kind === 'pem' ? certificateMismatch(o.tls.cert, o.tls.key.pem) : null;
    if (mismatch) {
      if (this.lastError !== mismatch) this.logger.error({ err: mismatch }, 'uplink cannot connect');
      this.lastError = mismatch;
      this.scheduleReconnect();
      return;
    }
    const client: BrokerConnection = connectBroker(
      {
        url: o.url,
        clientId: o.clientId,
        ca: o.tls.ca,
        cert: o.tls.cert,
        key: o.tls.key,
        // Sparkplug's NDEATH must be the Will; the fleet's presence then has none (docs/fleet.md).
        will: this.sparkplug ? { ...this.sparkplug.will(), retain: false } : this.fleet?.will(),
      },
      {
        onConnect: () => {
          this.connected = true;
          this.stateChangedAt = this.clock.now();
          this.attempt = 0;
          this.lastError = null;
          this.inflight.clear();
          this.lastSentId = 0;
          this.tail = null; // a new connection replays the queue from its head
          this.logger.info({ url: o.url }, 'uplink connected');
          client.subscribe(this.commandsTopic());
          if (this.sparkplug) {
            client.subscribe(this.sparkplug.topic('NCMD'));
            this.publishBirth();
          }
          for (const t of this.fleet?.subscriptions() ?? []) client.subscribe(t);
          this.fleet?.onConnect();
          this.schedulePump();
        },
        onMessage: (topic, payload, props) => this.onBrokerMessage(topic, payload, props),
        onError: (message) => {
          this.lastError = message;
          this.logger.warn({ err: message }, 'uplink error');
        },
        onClose: () => {
          if (this.client !== client) return;
          const was = this.connected;
          this.connected = false;
          this.client = null;
          if (was) this.stateChangedAt = this.clock.now();
          if (was) this.logger.warn('uplink disconnected; messages queue until it is back');
          this.scheduleReconnect();
        },
      },
    );
    this.client = client;
  }

  /** NBIRTH (a new Sparkplug session: devices are born again before their next data). */
  private publishBirth(): void {
    if (!this.sparkplug || !this.client) return;
    const b = this.sparkplug.birth();
    this.client.publish(b.topic, b.payload, {}, () => {});
  }

  /** A device quarantined or decommissioned: DDEATH, if it was born in this Sparkplug session. */
  deviceGone(deviceId: string): void {
    if (!this.sparkplug || !this.client || !this.connected) return;
    const d = this.sparkplug.death(deviceId);
    if (d) this.client.publish(d.topic, d.payload, {}, () => {});
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return;
    const min = this.opts?.reconnect?.minMs ?? 1000;
    const max = this.opts?.reconnect?.maxMs ?? 60_000;
    // Full jitter: a site of gateways that lost the same broker does not come back in lockstep.
    const ceiling = Math.min(max, min * 2 ** this.attempt);
    const delay = Math.round(min / 2 + Math.random() * (ceiling - min / 2));
    this.attempt++;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delay);
  }

  private schedulePump(): void {
    if (this.pumpScheduled || !this.connected || this.stopped) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    if (this.stopped) return;
    const client = this.client;
    const window = this.opts?.window ?? DEFAULT_WINDOW;
    while (client && this.connected && this.inflight.size < window) {
      const want = window - this.inflight.size;
      let batch: QueuedMessage[];
      if (this.tail) batch = this.tail.splice(0, want);
      else {
        batch = this.store.queue.peek(want, this.lastSentId);
        // Fewer than asked: every queued row after lastSentId is in hand, and every new one is committed by this
        // uplink's writer, whose answers append it (committed(); rows read here already are skipped by id), so
        // from here the pump follows the commits in memory.
        if (batch.length < want) this.tail = [];
      }
      if (batch.length === 0) return;
      for (const m of batch) {
        this.inflight.add(m.id);
        this.lastSentId = m.id;
        let topic = m.topic;
        let payload = m.payload;
        const deviceId = m.properties.deviceId;
        if (this.sparkplug && deviceId && topic === this.topicFor(deviceId)) {
          // Numbered now, in publish order: a DBIRTH goes first when the device is new to this session.
          const cf = m.properties.contentFormat !== undefined ? Number(m.properties.contentFormat) : null;
          const out = this.sparkplug.data(deviceId, m.payload, cf);
          for (const extra of out.slice(0, -1)) client.publish(extra.topic, extra.payload, {}, () => {});
          const last = out[out.length - 1] as { topic: string; payload: Buffer };
          topic = last.topic;
          payload = last.payload;
        }
        client.publish(topic, payload, m.properties, (err) => {
          if (this.client !== client) return; // a new connection replays from the queue
          this.inflight.delete(m.id);
          if (err) {
            this.lastError = err;
            return;
          }
          this.acknowledged(m.id);
          this.published++;
          this.schedulePump();
        });
      }
    }
  }

  /** The client certificate arrived after start (see certificate-watch.ts): connect with it now. */
  setCertificate(pem: Buffer): void {
    if (!this.opts || this.opts.tls.cert || this.stopped) return;
    this.opts.tls.cert = pem;
    this.logger.info('uplink certificate found; connecting');
    this.connect();
  }

  status(): UplinkStatus {
    let state: UplinkStatus['state'];
    if (!this.opts) state = 'unset';
    else if (!this.opts.tls.cert) state = 'awaiting-certificate';
    else if (this.connected) state = 'connected';
    else state = this.attempt === 0 ? 'connecting' : 'disconnected';
    return {
      state,
      queueDepth: this.depth,
      published: this.published,
      dropped: this.dropped,
      refused: this.refused,
      lastError: this.lastError,
      since: new Date(this.stateChangedAt).toISOString(),
    };
  }

  /** Stops publishing; what is not acknowledged stays queued for the next start. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.certWatch?.close();
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.expiryTimer) clearInterval(this.expiryTimer);
    if (this.commitRetry) clearTimeout(this.commitRetry);
    this.commitRetry = null;
    // Give in-flight publishes a moment to be acknowledged (their rows are still deleted); what is not
    // acknowledged stays queued for the next start.
    await this.client?.end(1000);
    this.client = null;
    this.connected = false;
    // What is still to commit (readings, deletes) is committed before the writer's connection closes.
    // Bounded: a writer that keeps failing leaves the rest queued or unsent (the senders were not acknowledged).
    for (
      let round = 0;
      round < 5 && (this.committing || this.batch.length + this.acked.length > 0);
      round++
    ) {
      if (!this.committing) this.commitBatch();
      if (!this.committing) break;
      await this.committing;
    }
    this.closed = true;
    if (this.ackTimer) clearTimeout(this.ackTimer);
    await this.writer?.close();
  }
}
