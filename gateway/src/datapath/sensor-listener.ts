import { createPrivateKey, X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { z } from 'zod';
import type { AnomalyService } from '../anomaly/index.ts';
import {
  type CoapHandler,
  type CoapRequest,
  type CoapResponse,
  CoapRouter,
  createCoapsServer,
} from '../coap/index.ts';
import type { Core } from '../core.ts';
import {
  type DtlsServer,
  type DtlsServerOptions,
  type DtlsSession,
  dtlsCryptoStatus,
  type HandshakeFailure,
  type PeerAddress,
  sourcePrefix,
} from '../dtls/index.ts';
import { ListenError } from '../errors.ts';
import { operationalCertificate } from '../identity/gateway-certificate.ts';
import type { Logger } from '../log.ts';
import { LogThrottle } from '../log-throttle.ts';
import type { PolicyDecision } from '../policy/engine.ts';
import { mayHoldSession } from '../policy/index.ts';
import { RateLimiter } from '../policy/rate-limit.ts';
import type { SessionDevice } from '../store/index.ts';
import type { Uplink } from '../uplink/index.ts';
import { queueFull } from '../uplink/queue-full.ts';
import { handshakeFailureRecorder, identityLabel } from './auth-failures.ts';
import { CapacityReporter } from './capacity-alerts.ts';
import { withNextCommand } from './downlink.ts';
import type { HandshakeLog } from './handshake-log.ts';
import { ingestTelemetry } from './ingest.ts';

const firmwareReport = z.strictObject({
  version: z.string().min(1).max(32).optional(),
  result: z.enum(['ok', 'failed']).optional(),
  error: z.string().max(300).optional(),
});

function safeJson(b: Buffer): unknown {
  try {
    return JSON.parse(b.toString('utf8'));
  } catch {
    return undefined;
  }
}

/**
 * How often sessions of devices that lost their standing (decommissioned, quarantined, certificate revoked) are
 * closed. Each tick costs one read of identity's change counter unless something changed; 500 ms keeps "within a
 * second" of the CLI's commit with room for the review itself (a CRL load verifies signatures).
 */
const SESSION_REVIEW_MS = 500;
const policyRequest = (req: CoapRequest) => ({
  method: req.method,
  resource: req.path,
  contentFormat: req.contentFormat,
  payload: req.payload,
});

/** A policy refusal as CoAP says it: the rule's code, and Max-Age with 4.29 (RFC 8516 §4). */
function refusal(d: Extract<PolicyDecision, { allow: false }>): { code: string; maxAge?: number } {
  return d.maxAge !== undefined ? { code: d.code, maxAge: d.maxAge } : { code: d.code };
}

export interface SensorListener {
  address: PeerAddress;
  server: DtlsServer;
  close(): Promise<void>;
}

/** What the listener's parts share: the services, the live sessions, the rate limiter, the throttled log. */
interface ListenerContext {
  core: Core;
  uplink: Uplink;
  logger: Logger;
  anomaly: AnomalyService | undefined;
  handshakes: HandshakeLog | undefined;
  limiter: RateLimiter;
  sessions: Set<DtlsSession>;
  warnOnce: (key: string, fields: Record<string, unknown>, msg: string) => void;
}

/**
 * POST /telemetry: rate limit → behaviour → policy → durable queue; 2.04 only once the reading is stored. Not an
 * async function: what waits for the commit is kept small (ingest.ts says why).
 */
function telemetryHandler(ctx: ListenerContext): CoapHandler {
  const { core, uplink, anomaly, limiter, warnOnce } = ctx;
  const identity = core.identity;
  return (req) => {
    const device = identity.deviceFor(req.session.credential);
    if (device && !limiter.admit(device.id)) {
      anomaly?.observe({
        ts: core.clock.now(),
        device: device.id,
        kind: 'message',
        bytes: req.payload.length,
        resource: '/telemetry',
      });
      warnOnce(`limited:${device.id}`, { deviceId: device.id }, 'telemetry over the device rate limit');
      return { code: '4.29' };
    }
    const reading = {
      payload: req.payload,
      contentFormat: req.contentFormat,
      credentialKind: req.session.credential.kind,
    };
    return ingestTelemetry(core, uplink, device, reading, anomaly).then(
      (decision) => telemetryAnswer(ctx, device, decision),
      backpressure,
    );
  };
}

/**
 * Backpressure: the uplink queue is at its bound, so the reading is not stored and not acknowledged; the sensor
 * keeps it and retries after Max-Age (RFC 7252 §5.9.3.4). The uplink counts and logs refusals.
 */
function backpressure(err: unknown): CoapResponse {
  const full = queueFull(err);
  if (full) return { code: '5.03', maxAge: full.retryAfterSeconds };
  throw err;
}

function telemetryAnswer(
  ctx: ListenerContext,
  device: SessionDevice | undefined,
  decision: PolicyDecision,
): CoapResponse {
  if (!decision.allow) {
    ctx.warnOnce(
      `refused:${device?.id ?? '?'}:${decision.rule}`,
      { deviceId: device?.id, rule: decision.rule, reason: decision.reason },
      'telemetry refused',
    );
    return refusal(decision);
  }
  if (!device) return { code: '4.01' };
  return withNextCommand(ctx.core, device.id, '2.04');
}

/** Commands and firmware: each resource decided by the device's profile, as telemetry is. */
function otherRoutes(ctx: ListenerContext, router: CoapRouter): void {
  const { core, anomaly, warnOnce } = ctx;
  const identity = core.identity;
  // A sensor that sends nothing can still ask for its commands.
  router.on('GET', '/commands', async (req) => {
    const device = identity.deviceFor(req.session.credential);
    if (device)
      anomaly?.observe({
        ts: core.clock.now(),
        device: device.id,
        kind: 'message',
        bytes: 0,
        resource: '/commands',
      });
    // Zero trust on every resource: the device's profile decides here as on /telemetry.
    const decision = await core.policy.check(device, policyRequest(req));
    if (!decision.allow) return refusal(decision);
    if (!device) return { code: '4.01' };
    // Asking for commands is being seen, like a reading: `device list` must not say "never" for this sensor.
    identity.touch(device.id);
    return withNextCommand(core, device.id, '2.05');
  });
  // Firmware: a device told by a campaign fetches its image block-wise, then reports what it runs.
  router.on('GET', '/fw/*', async (req) => {
    const device = identity.deviceFor(req.session.credential);
    const decision = await core.policy.check(device, policyRequest(req));
    if (!decision.allow) return refusal(decision);
    if (!device) return { code: '4.01' };
    const digest = req.path.slice('/fw/'.length);
    if (!/^[0-9a-f]{64}$/.test(digest)) return { code: '4.04' };
    try {
      return { code: '2.05', payload: core.firmware.fetch(device.id, digest), contentFormat: 42 };
    } catch (err) {
      warnOnce(
        `fw:${device.id}`,
        { deviceId: device.id, err: (err as Error).message },
        'firmware fetch refused',
      );
      return { code: '4.03' };
    }
  });
  router.on('POST', '/fw/report', async (req) => {
    const device = identity.deviceFor(req.session.credential);
    const decision = await core.policy.check(device, policyRequest(req));
    if (!decision.allow) return refusal(decision);
    if (!device) return { code: '4.01' };
    const body = firmwareReport.safeParse(safeJson(req.payload));
    if (!body.success) return { code: '4.00' };
    try {
      core.firmware.report(device.id, body.data);
      return { code: '2.04' };
    } catch {
      return { code: '4.09' };
    }
  });
}

/**
 * The trust anchors and their revocation lists for certificate sensors, refreshed in place (anchors added with
 * the CLI apply to the next handshake); `closeRevoked` ends live sessions whose chain is no longer good.
 */
async function clientTrust(ctx: ListenerContext) {
  const { core, logger, sessions } = ctx;
  const identity = core.identity;
  // Refreshed in place: trust anchors added with the CLI apply to the next handshake.
  const trustAnchors: X509Certificate[] = [];
  const refreshAnchors = () => {
    const fresh = identity.listTrustAnchors().map((a) => new X509Certificate(a.certificatePem));
    trustAnchors.splice(0, trustAnchors.length, ...fresh);
  };
  refreshAnchors();
  // Revocation lists per anchor, verified off the handshake path (signatures are async) and swapped in whole;
  // loaded before the listener opens so a revoked sensor is never let in at start.
  const revocation = await core.revocation.loadIndex();
  /** Closes live sessions whose chain is revoked now, or whose anchor's CRL went out of date (fail closed). */
  const closeRevoked = () => {
    const now = new Date();
    for (const s of sessions) {
      if (s.credential.kind !== 'x509') continue;
      if (revocation.chainStatus(s.credential.chain, trustAnchors, now) !== 'good') s.close();
    }
  };
  let revocationLoads = 0;
  const refreshRevocation = () => {
    const n = ++revocationLoads;
    core.revocation.loadIndex().then(
      (next) => {
        if (n !== revocationLoads) return; // a newer load is under way
        revocation.replace(next);
        closeRevoked();
      },
      (err: Error) => logger.error({ err: err.message }, 'loading the trust anchors’ CRLs failed'),
    );
  };
  return { trustAnchors, revocation, refreshAnchors, refreshRevocation, closeRevoked };
}

/** The DTLS server's limits and protocol settings, from `dtls:` in the configuration. */
function serverSettings(dtls: Core['config']['dtls']) {
  return {
    limits: {
      maxSessions: dtls.limits.maxSessions,
      maxHandshakes: dtls.limits.maxHandshakes,
      handshakesPerSecondPerSource: dtls.limits.handshakesPerSecondPerSource,
      idleTimeoutMs: dtls.limits.idleTimeoutSeconds * 1000,
      maxHandshakesPerSource: dtls.limits.maxHandshakesPerSource,
      maxHandshakesPerPrefix: dtls.limits.maxHandshakesPerPrefix,
      handshakeTimeoutMs: dtls.limits.handshakeTimeoutSeconds * 1000,
      maxSessionsPerIdentity: dtls.limits.maxSessionsPerIdentity,
      maxSessionsPerSource: dtls.limits.maxSessionsPerSource,
    },
    // A sensor that restarts comes back from its address on a new port: its old session goes.
    replaceSessionsOfIdentity: true,
    // On by default: a sensor behind a NAT whose mapping changes keeps its session (RFC 9146).
    connectionIds: dtls.connectionId.enabled ? { length: dtls.connectionId.length } : false,
    mtu: dtls.mtu,
    // Every resumption asks lookupPsk / verifyPeer again, so a device decommissioned, isolated or revoked
    // since its full handshake cannot resume.
    sessionResumption: dtls.resumption.enabled
      ? {
          maxEntries: dtls.resumption.maxSessions,
          lifetimeMs: dtls.resumption.lifetimeSeconds * 1000,
        }
      : false,
    ...(dtls.cipherSuites ? { cipherSuites: dtls.cipherSuites } : {}),
  };
}

/**
 * Who may hold a session: a PSK the identity service unwraps, a certificate chained to a trusted manufacturer
 * CA (not revoked) or a pinned raw key — and a device that is active (or quarantined for observation).
 */
function sensorAuthentication(
  ctx: ListenerContext,
  trust: Awaited<ReturnType<typeof clientTrust>>,
): Pick<DtlsServerOptions, 'clientAuth' | 'lookupPsk' | 'onSession'> {
  const { core, logger, handshakes, sessions, warnOnce } = ctx;
  const identity = core.identity;
  return {
    clientAuth: {
      trustAnchors: trust.trustAnchors,
      revocation: trust.revocation.check,
      allowRawPublicKeys: true,
      verifyPeer: (credential, peer) => {
        // Chained to a trusted manufacturer CA, or a pinned raw key; and the device must be active (or
        // quarantined for observation).
        const device =
          credential.kind === 'x509'
            ? identity.admitCertificate(credential, `${peer.address}:${peer.port}`)
            : identity.deviceFor(credential);
        if (device?.state === 'pending') {
          warnOnce(
            `pending:${device.id}`,
            { deviceId: device.id },
            'certificate sensor pending approval (portcullis device approve)',
          );
        }
        return mayHoldSession(device);
      },
    },
    lookupPsk: (id) => {
      try {
        return identity.pskFor(id);
      } catch (err) {
        // A secret that no longer unwraps (tampered row, changed data key) must fail closed, loudly.
        logger.error({ err: (err as Error).message }, 'PSK lookup failed');
        return undefined;
      }
    },
    onSession: (s) => {
      sessions.add(s);
      const device = identity.deviceFor(s.credential);
      handshakes?.connectedSession(s, device?.id ?? null);
      logger.info(
        { deviceId: device?.id, peer: `${s.peer.address}:${s.peer.port}`, suite: s.cipherSuite },
        'sensor session',
      );
    },
  };
}

/** A failed handshake: audited and recorded, counted against the device it claimed, shown, logged once a minute. */
function handshakeFailureHandler(
  ctx: ListenerContext,
  authFailures: ReturnType<typeof handshakeFailureRecorder>,
): (f: HandshakeFailure) => void {
  const { core, anomaly, handshakes, warnOnce } = ctx;
  const identity = core.identity;
  return (f) => {
    // Failed authentications: audited per source and identity per minute, and watched for brute force.
    authFailures.record(f);
    // A failed handshake that named a known device's PSK identity counts against that device.
    const claimed =
      f.claimedPskIdentity && identity.deviceFor({ kind: 'psk', identity: f.claimedPskIdentity });
    // A session cap's refusal is not a failed authentication (the key was right); onCapacity reports it.
    if (claimed && f.code !== 'ERR_DTLS_SESSION_LIMIT')
      anomaly?.observe({ ts: core.clock.now(), device: claimed.id, kind: 'auth_failure' });
    if (handshakes) {
      const label = identityLabel(f);
      // Any state: an unknown identity is often a decommissioned device's, and its page should say so.
      const owner =
        claimed ||
        (label?.lookup ? identity.claimedBy(label.kind as 'psk' | 'x509' | 'rpk', label.lookup) : undefined);
      handshakes.failure(f, owner ? owner.id : null);
    }
    core.events.emit({
      type: 'handshake.failure',
      ts: new Date(core.clock.now()).toISOString(),
      address: f.peer.address,
      code: f.code,
      deviceId: claimed ? claimed.id : null,
    });
    // Abandoned handshakes come by the thousand from a flood over many addresses: one line per prefix.
    const from = f.code === 'ERR_DTLS_HANDSHAKE_TIMEOUT' ? sourcePrefix(f.peer.address) : f.peer.address;
    warnOnce(
      `handshake:${from}:${f.code}`,
      {
        peer: `${f.peer.address}:${f.peer.port}`,
        code: f.code,
        fromPeer: f.fromPeer,
        deviceId: claimed ? claimed.id : undefined,
      },
      'sensor handshake failed',
    );
  };
}

/**
 * The CLI changes device state in another process; close sessions whose device may no longer talk. The review
 * (two queries per session) runs only when something in identity changed since the last one.
 */
function startSessionReview(
  ctx: ListenerContext,
  trust: Awaited<ReturnType<typeof clientTrust>>,
): NodeJS.Timeout {
  const { core, limiter, sessions } = ctx;
  const identity = core.identity;
  const { revocation, closeRevoked, refreshAnchors, refreshRevocation } = trust;
  const nowIso = () => new Date(core.clock.now()).toISOString();
  let reviewed = identity.changeStamp;
  let staleSeen = revocation.staleKey(new Date());
  const review = setInterval(() => {
    const stale = revocation.staleKey(new Date());
    if (stale !== staleSeen) {
      staleSeen = stale;
      closeRevoked();
    }
    const stamp = identity.changeStamp;
    if (stamp === reviewed) return;
    reviewed = stamp;
    refreshAnchors();
    refreshRevocation();
    limiter.refresh(core.store.rateLimits.active(nowIso()));
    for (const s of sessions) {
      if (!mayHoldSession(identity.deviceFor(s.credential))) s.close();
    }
  }, SESSION_REVIEW_MS);
  review.unref();
  return review;
}

/**
 * The sensor side of the data path: DTLS (PSK from the identity service) → CoAP `POST /telemetry` →
 * identity → policy → durable uplink queue. A message is acknowledged (2.04) only once it is in the queue.
 */
export async function startSensorListener(
  core: Core,
  uplink: Uplink,
  logger: Logger,
  anomaly?: AnomalyService,
  /** Where the recent handshakes and their failure reasons are kept for the technician (issue 25). */
  handshakes?: HandshakeLog,
): Promise<SensorListener> {
  const nowIso = () => new Date(core.clock.now()).toISOString();
  // Automatic rate limits (an anomaly response) apply per message; CoAP says 4.29 Too Many Requests (RFC 8516).
  const limiter = new RateLimiter(() => core.clock.now());
  limiter.refresh(core.store.rateLimits.active(nowIso()));
  const sessions = new Set<DtlsSession>();
  const throttle = new LogThrottle(60_000, () => core.clock.now());
  /** Logs a peer-triggered warning at most once a minute per key, with the count of what it held back. */
  const warnOnce = (key: string, fields: Record<string, unknown>, msg: string) => {
    const suppressed = throttle.admit(key);
    if (suppressed !== null) logger.warn(suppressed > 0 ? { ...fields, suppressed } : fields, msg);
  };
  const ctx: ListenerContext = { core, uplink, logger, anomaly, handshakes, limiter, sessions, warnOnce };
  const capacity = new CapacityReporter(core, logger, warnOnce);
  const authFailures = handshakeFailureRecorder(core, logger, anomaly);
  // Policy refusals (pushed or pulled readings alike) are events for the behaviour detector.
  const stopRefusals = core.policy.onRefusal((r) =>
    anomaly?.observe({
      ts: r.ts,
      device: r.deviceId,
      kind: 'policy_refusal',
      rule: r.rule,
      resource: r.resource,
    }),
  );
  const router = new CoapRouter().on('POST', '/telemetry', telemetryHandler(ctx));
  otherRoutes(ctx, router);
  // Certificate and raw-public-key sensors need the gateway to present a key of its own: a leaf certified by
  // the gateway's identity key (in the TPM with the tpm2 keystore); sensors trust `tls/identity-ca.pem`.
  const { host, port } = core.config.dtls;
  const tls = await operationalCertificate(
    core.keystore as NonNullable<Core['keystore']>,
    join(core.config.dataDir, 'tls'),
    'sensors',
    host === '0.0.0.0' || host === '::' ? ['localhost'] : [host],
    core.clock.now(),
  );
  const trust = await clientTrust(ctx);
  const { server } = createCoapsServer(
    {
      ...serverSettings(core.config.dtls),
      onCapacity: capacity.onCapacity,
      identity: {
        certificateChain: [new X509Certificate(tls.certPem).raw],
        privateKey: createPrivateKey(tls.keyPem),
      },
      ...sensorAuthentication(ctx, trust),
      onClose: (s) => sessions.delete(s),
      onHandshakeFailure: handshakeFailureHandler(ctx, authFailures),
      ...(handshakes ? { onCookieRefused: (peer: PeerAddress) => handshakes.cookieRefused(peer) } : {}),
      onInternalError: (err) => logger.error({ err }, 'DTLS internal error'),
    },
    { router, onHandlerError: (err) => logger.error({ err }, 'CoAP handler error') },
  );
  const address = await server.listen(port, host).catch((err: NodeJS.ErrnoException) => {
    throw new ListenError('dtls', host, port, err);
  });
  const crypto = dtlsCryptoStatus();
  if (crypto.fallbackReason) {
    logger.warn(
      { reason: crypto.fallbackReason },
      'DTLS crypto runs on node:crypto (slower): the native addon is unusable',
    );
  }
  const review = startSessionReview(ctx, trust);
  // Anchors with a CRL distribution URL: fetched on their schedule; a newer CRL lands in the store and the
  // review above applies it like one added with the CLI.
  const stopCrlRefresh = core.revocation.startRefresher(logger);
  return {
    address,
    server,
    close: async () => {
      stopCrlRefresh();
      stopRefusals();
      clearInterval(review);
      await server.close();
      authFailures.close();
      capacity.stop();
    },
  };
}
