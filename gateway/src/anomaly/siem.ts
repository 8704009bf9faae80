import { appendFileSync, readFileSync } from 'node:fs';
import { type Socket, connect as tcpConnect } from 'node:net';
import { hostname } from 'node:os';
import { connect as tlsConnect } from 'node:tls';
import { headerToken, sdValue } from '../audit/export.ts';
import type { Logger } from '../log.ts';
import type { Finding, Severity } from './detector.ts';

/** What a SIEM receives for each alert (JSON lines, and the message of each syslog record). Schema: docs/anomaly.md. */
export interface AlertRecord {
  type: 'portcullis.alert';
  version: 1;
  alertId: number | null;
  ts: string;
  device: string;
  severity: Severity;
  score: number;
  kinds: string[];
  reasons: { feature: string; observed: string; expected: string; text: string; score: number }[];
  response: string;
}

export function alertRecord(f: Finding, alertId: number | null, response: string): AlertRecord {
  return {
    type: 'portcullis.alert',
    version: 1,
    alertId,
    ts: new Date(f.ts).toISOString(),
    device: f.device,
    severity: f.severity,
    score: f.score,
    kinds: f.reasons.map((r) => r.feature),
    reasons: f.reasons.map(({ feature, observed, expected, text, score }) => ({
      feature,
      observed,
      expected,
      text,
      score: Math.round(score * 100) / 100,
    })),
    response,
  };
}

/** Facility 14 (log alert); severity: high = 2 critical, medium = 4 warning, low = 5 notice. */
const SYSLOG_SEVERITY: Record<Severity, number> = { high: 2, medium: 4, low: 5 };
const SD_ID = 'portcullis-alert@32473';

/** One RFC 5424 record: structured data for the fields SIEMs index, the whole record as JSON in MSG. */
export function toSyslogRecord(r: AlertRecord, host = hostname()): string {
  const pri = 14 * 8 + SYSLOG_SEVERITY[r.severity];
  const sd = `[${SD_ID} alertId="${r.alertId ?? '-'}" device="${sdValue(r.device)}" severity="${r.severity}" score="${r.score}" kinds="${sdValue(r.kinds.join(','))}" response="${sdValue(r.response)}"]`;
  return `<${pri}>1 ${r.ts} ${headerToken(host, 255)} portcullis - ALERT ${sd} \uFEFF${JSON.stringify(r)}`;
}

export interface AlertSink {
  send(r: AlertRecord): void;
  close(): Promise<void>;
}

export class JsonlSink implements AlertSink {
  constructor(private readonly file: string) {}
  send(r: AlertRecord): void {
    appendFileSync(this.file, `${JSON.stringify(r)}\n`, { mode: 0o600 });
  }
  async close(): Promise<void> {}
}

/** Records waiting while the collector is away; beyond this the oldest are dropped (and counted). */
const MAX_BUFFERED = 10_000;

/**
 * RFC 5424 over TCP with octet-counting framing (RFC 6587), TLS per RFC 5425 when a CA is given. Keeps one
 * connection, buffers while it is down and reconnects with back-off; alerts stay in the store regardless.
 */
export class SyslogSink implements AlertSink {
  private socket: Socket | undefined;
  private connecting = false;
  private readonly buffer: string[] = [];
  private dropped = 0;
  private backoffMs = 500;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly opts: {
      host: string;
      port: number;
      tls?: { caFile: string; serverName?: string | undefined } | undefined;
    },
    private readonly logger: Logger,
  ) {}

  send(r: AlertRecord): void {
    const msg = Buffer.from(toSyslogRecord(r));
    const frame = `${msg.length} ${msg.toString()}`;
    if (this.buffer.length >= MAX_BUFFERED) {
      this.buffer.shift();
      this.dropped++;
    }
    this.buffer.push(frame);
    this.pump();
  }

  private pump(): void {
    if (this.closed) return;
    if (!this.socket) {
      this.connect();
      return;
    }
    while (this.buffer.length > 0) {
      const frame = this.buffer.shift() as string;
      this.socket.write(frame);
    }
  }

  private connect(): void {
    if (this.connecting || this.timer) return;
    this.connecting = true;
    const { host, port, tls } = this.opts;
    const s = tls
      ? tlsConnect({ host, port, ca: readFileSync(tls.caFile), servername: tls.serverName ?? host })
      : tcpConnect({ host, port });
    const ready = () => {
      this.connecting = false;
      this.socket = s;
      this.backoffMs = 500;
      if (this.dropped > 0) {
        this.logger.warn(
          { dropped: this.dropped },
          'SIEM syslog: alerts dropped while the collector was away',
        );
        this.dropped = 0;
      }
      this.pump();
    };
    s.once(tls ? 'secureConnect' : 'connect', ready);
    s.on('error', (err) =>
      this.logger.warn({ err: err.message, host, port }, 'SIEM syslog connection failed'),
    );
    s.on('close', () => {
      this.connecting = false;
      if (this.socket === s) this.socket = undefined;
      if (this.closed) return;
      this.timer = setTimeout(() => {
        this.timer = undefined;
        if (this.buffer.length > 0) this.connect();
      }, this.backoffMs);
      this.timer.unref();
      this.backoffMs = Math.min(this.backoffMs * 2, 30_000);
    });
  }

  /** Sends what is buffered if connected, then closes. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    const s = this.socket;
    if (!s) return;
    await new Promise<void>((resolve) => s.end(resolve));
  }
}
