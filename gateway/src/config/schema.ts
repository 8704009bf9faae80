import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { CIPHER_SUITE_NAMES, type CipherSuiteName } from '../dtls/suites.ts';
import { isHostOf, networksOverlap, parseIpv4Network } from '../net/ipv4.ts';
import { policySchema } from './policy-schema.ts';
import { isKnownTimeZone } from './time-zone.ts';

/** Port 0 asks the OS for a free port: useful in tests, never a default. */
const listenPort = z.number().int().min(0).max(65535);
const listenHost = z.union([z.ipv4(), z.ipv6()], { error: 'must be an IPv4 or IPv6 address literal' });

function isReadableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

/** Not there yet, or a readable file: a file the operator adds later (a certificate waiting to be signed). */
function isAbsentOrReadableFile(path: string): boolean {
  return !existsSync(path) || isReadableFile(path);
}

/** Linux interface names: at most 15 bytes, no '/', ':' or whitespace. */
const interfaceName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$/, { error: 'must be a Linux interface name (1-15 characters)' });

const segmentSchema = z
  .strictObject({
    name: z.string().regex(/^[a-z][a-z0-9-]{0,23}$/, {
      error: 'must be 1-24 characters: lower-case letters, digits or "-", starting with a letter',
    }),
    /** sensors: DTLS, DHCP and DNS to the gateway only; management: may also reach the UI; protected: neither. */
    role: z.enum(['sensors', 'protected', 'management']),
    vlanId: z.number().int().min(1).max(4094).optional(),
    parentInterface: interfaceName.optional(),
    /** The segment's interface on the gateway; defaults to the VLAN interface `<parentInterface>.<vlanId>`. */
    interface: interfaceName.optional(),
    subnet: z.string().refine((s) => parseIpv4Network(s) !== undefined, {
      error: 'must be an IPv4 network such as 10.20.0.0/24 (host bits zero)',
    }),
    gatewayAddress: z.ipv4(),
    /** What the segment's devices may reach beyond their allow-lists: nothing (deny) or the WAN (allow). */
    defaultPolicy: z.enum(['deny', 'allow']).default('deny'),
  })
  .refine((s) => (s.vlanId === undefined) === (s.parentInterface === undefined), {
    error: 'vlanId and parentInterface go together',
  })
  .refine((s) => s.interface !== undefined || s.vlanId !== undefined, {
    error: 'give vlanId and parentInterface, or interface',
  })
  .refine((s) => s.interface !== undefined || `${s.parentInterface}.${s.vlanId}`.length <= 15, {
    error: 'the VLAN interface name <parentInterface>.<vlanId> is longer than 15 characters; set interface',
  })
  .refine((s) => isHostOf(parseIpv4Network(s.subnet) ?? { base: 0, prefix: 32 }, s.gatewayAddress), {
    error: 'gatewayAddress must be a host address inside subnet',
  });

export type SegmentConfig = z.output<typeof segmentSchema>;

/** Segments must not overlap or share a name, VLAN or interface: each rule names exactly one of them. */
function checkSegments(segments: SegmentConfig[], ctx: z.RefinementCtx): void {
  const seen = { name: new Set<string>(), vlan: new Set<string>(), iface: new Set<string>() };
  segments.forEach((s, i) => {
    const iface = s.interface ?? `${s.parentInterface}.${s.vlanId}`;
    const vlan = s.vlanId === undefined ? undefined : `${s.parentInterface}.${s.vlanId}`;
    const clash = (what: string) =>
      ctx.addIssue({ code: 'custom', path: [i], message: `${what} is used by another segment` });
    if (seen.name.has(s.name)) clash(`name ${s.name}`);
    if (vlan && seen.vlan.has(vlan)) clash(`VLAN ${vlan}`);
    if (seen.iface.has(iface)) clash(`interface ${iface}`);
    seen.name.add(s.name);
    if (vlan) seen.vlan.add(vlan);
    seen.iface.add(iface);
    const net = parseIpv4Network(s.subnet);
    segments.slice(0, i).forEach((o) => {
      const other = parseIpv4Network(o.subnet);
      if (net && other && networksOverlap(net, other)) {
        ctx.addIssue({ code: 'custom', path: [i, 'subnet'], message: `overlaps segment ${o.name}` });
      }
    });
  });
}

/**
 * The config schema. Relative paths resolve against `baseDir` (the config file's folder, or the working
 * directory when running on embedded defaults), so a config means the same thing wherever it is started from.
 * Every object is strict: an unknown key is a typo that would otherwise silently disable a control.
 */
export function configSchema(baseDir: string) {
  const dirPath = z
    .string()
    .min(1)
    .transform((p) => resolve(baseDir, p));
  const existingFile = z
    .string()
    .min(1)
    .transform((p) => resolve(baseDir, p))
    .refine(isReadableFile, { error: 'file does not exist or is not readable' });
  const laterFile = z
    .string()
    .min(1)
    .transform((p) => resolve(baseDir, p))
    .refine(isAbsentOrReadableFile, { error: 'exists but is not a readable file' });

  return z
    .strictObject({
      dataDir: dirPath.default(resolve(baseDir, 'var')),
      /**
       * Where the technician's console keeps its changes (uplink, segments), merged over this file at every
       * load; set only in a file the service cannot write (the appliance's, docs/appliance.md). Absent: the
       * console changes this file itself.
       */
      consoleConfigFile: z.string().startsWith('/').optional(),
      log: z
        .strictObject({
          level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
        })
        .prefault({}),
      store: z
        .strictObject({
          /** `full` fsyncs every commit: nothing acknowledged is lost even on power loss. */
          synchronous: z.enum(['full', 'normal']).default('full'),
        })
        .prefault({}),
      keystore: z
        .strictObject({
          backend: z.enum(['software', 'tpm2']).default('software'),
          tcti: z.string().min(1).optional(),
        })
        .prefault({}),
      dtls: z
        .strictObject({
          host: listenHost.default('127.0.0.1'),
          port: listenPort.default(5684),
          limits: z
            .strictObject({
              maxSessions: z.number().int().min(1).default(10_000),
              maxHandshakes: z.number().int().min(1).default(500),
              /** Cookie-verified handshakes per second from one source address. */
              handshakesPerSecondPerSource: z.number().positive().default(20),
              idleTimeoutSeconds: z.number().positive().default(600),
              /** Half-open handshakes (cookie-verified, not yet completed) from one source address. */
              maxHandshakesPerSource: z.number().int().min(1).default(8),
              /** Half-open handshakes from one IPv4 /24 or IPv6 /64. */
              maxHandshakesPerPrefix: z.number().int().min(1).default(64),
              /** How long a client has for its next flight after the gateway's; then the handshake is dropped. */
              handshakeTimeoutSeconds: z.number().positive().max(120).default(10),
              /** Sessions one credential may hold (a new one from the same address replaces the old). */
              maxSessionsPerIdentity: z.number().int().min(1).default(4),
              /** Sessions one source address may hold (raise it behind a NAT). */
              maxSessionsPerSource: z.number().int().min(1).default(64),
            })
            .prefault({}),
          /** RFC 9146 Connection IDs: a sensor behind a NAT keeps its session when its address or port changes. */
          connectionId: z
            .strictObject({
              enabled: z.boolean().default(true),
              /** Bytes of CID on every record the sensor sends. */
              length: z.number().int().min(1).max(32).default(8),
            })
            .prefault({}),
          /** Largest datagram the gateway sends to sensors (the path MTU less IP and UDP headers). */
          mtu: z.number().int().min(128).max(65_507).default(1200),
          /** Abbreviated handshakes for sensors that reconnect (docs/dtls.md: a bounded session cache). */
          resumption: z
            .strictObject({
              enabled: z.boolean().default(true),
              maxSessions: z.number().int().min(1).max(1_000_000).default(10_000),
              lifetimeSeconds: z
                .number()
                .int()
                .min(1)
                .max(7 * 86_400)
                .default(86_400),
            })
            .prefault({}),
          /** Server preference order (docs/dtls.md); by default forward-secret suites first when offered. */
          cipherSuites: z
            .array(z.enum(CIPHER_SUITE_NAMES as [CipherSuiteName, ...CipherSuiteName[]]))
            .min(1)
            .optional(),
        })
        .prefault({}),
      ui: z
        .strictObject({
          /** Default: the management segment's gateway address if one is configured, else loopback. */
          host: listenHost.optional(),
          port: listenPort.default(8443),
          /** Also write the first-boot setup code here (the appliance's console shows it; a local 0600 file). */
          setupCodeFile: z.string().startsWith('/').optional(),
          tls: z
            .strictObject({
              certFile: existingFile,
              keyFile: existingFile,
            })
            .optional(),
        })
        .prefault({}),
      firewall: z
        .strictObject({
          /** The gateway applies the ruleset at start and whenever devices, allow-lists or quarantines change. */
          enforce: z.boolean().default(false),
          /** Where segments with defaultPolicy allow may go (the site's uplink). */
          wanInterface: interfaceName.optional(),
          /** Datagrams per second per source to the DTLS port, beyond which they are dropped in the kernel. */
          dtlsRateLimit: z
            .strictObject({
              perSecond: z.number().int().min(1).max(100_000).default(200),
              burst: z.number().int().min(1).max(100_000).default(400),
            })
            .prefault({}),
          /** What quarantine does when the caller does not say: observe keeps the DTLS endpoint reachable. */
          quarantineMode: z.enum(['observe', 'isolate']).default('observe'),
          /** How often DNS names in allow-lists (from MUD files) are resolved again. */
          dnsRefreshSeconds: z.number().int().min(10).default(300),
        })
        .prefault({}),
      segments: z.array(segmentSchema).default([]).superRefine(checkSegments),
      /** Device profiles checked on every sensor message before the queue (docs/policy.md). */
      policy: policySchema.prefault({}),
      control: z
        .strictObject({
          /** The Unix socket of the control API for policy flows; unset: no control API. */
          socketPath: z
            .string()
            .min(1)
            .transform((p) => resolve(baseDir, p))
            .optional(),
          /** The group that may connect (the flows service's); the socket is 0660 either way. */
          socketGroup: z
            .string()
            .regex(/^[a-z_][a-z0-9_-]{0,31}$/, { error: 'must be a group name' })
            .optional(),
        })
        .prefault({}),
      updates: z
        .strictObject({
          /** The release key's public half (Ed25519 PEM), pinned in the image; without it no bundle installs. */
          publicKeyFile: existingFile.optional(),
          releasesDir: z
            .string()
            .min(1)
            .transform((p) => resolve(baseDir, p))
            .default('/opt/portcullis/releases'),
          /** The symlink the services run from; switched atomically to the new release. */
          currentLink: z
            .string()
            .min(1)
            .transform((p) => resolve(baseDir, p))
            .default('/opt/portcullis/current'),
          /**
           * Run after the switch (argv; `{current}` and `{version}` are substituted); exit 0 within the deadline
           * means healthy. Default: the new release's CLI must start and report its version. The appliance
           * restarts the gateway and waits for /healthz (systemd/portcullis-update-health).
           */
          healthCommand: z.array(z.string().min(1)).min(1).optional(),
          healthDeadlineSeconds: z.number().int().min(1).max(3600).default(120),
        })
        .prefault({}),
      hardware: z
        .strictObject({
          /** auto: onoff where GPIO is accessible, else none; simulator: no real pins (demos, tests). */
          backend: z.enum(['none', 'auto', 'simulator']).default('none'),
          pins: z
            .strictObject({
              pairingButton: z.number().int().min(0).max(1023).optional(),
              tamperSwitch: z.number().int().min(0).max(1023).optional(),
              statusLed: z.number().int().min(0).max(1023).optional(),
            })
            .prefault({}),
          /** A pressed button / open enclosure reads 0 (pull-up wiring). */
          activeLow: z.boolean().default(true),
          pairingWindowMinutes: z.number().positive().max(120).default(10),
          /** An open tamper alert locks changes through the UI until a person acknowledges it. */
          tamperLocksUi: z.boolean().default(false),
        })
        .prefault({}),
      compliance: z
        .strictObject({
          /** Where researchers report vulnerabilities (ETSI EN 303 645 5.2-1), e.g. a security.txt URL. */
          vulnerabilityDisclosureUrl: z
            .url({ protocol: /^https$/, error: 'must be an https:// URL' })
            .optional(),
        })
        .prefault({}),
      anomaly: z
        .strictObject({
          enabled: z.boolean().default(true),
          /** Event time a new device is only learned (cold start); fractions allowed. */
          learningHours: z
            .number()
            .positive()
            .max(24 * 90)
            .default(24),
          windowSeconds: z.number().int().min(1).max(3600).default(60),
          /** The site's offset from UTC, for hour-of-day habits. */
          utcOffsetMinutes: z
            .number()
            .int()
            .min(-14 * 60)
            .max(14 * 60)
            .default(0),
          /** The site's IANA time zone (e.g. Europe/Berlin): hour-of-day habits follow DST; overrides the offset. */
          timeZone: z
            .string()
            .min(1)
            .max(64)
            .refine(isKnownTimeZone, { error: 'not a known IANA time zone' })
            .optional(),
          /** How long a device re-learns after a firmware update or re-onboarding (an expected change). */
          relearnHours: z
            .number()
            .positive()
            .max(24 * 14)
            .default(24),
          /** Observe the connections devices open from connection tracking (`conntrack -E`, CAP_NET_ADMIN). */
          conntrack: z.boolean().default(false),
          /** The same kind of alert for the same device at most once per this many minutes. */
          cooldownMinutes: z.number().positive().default(60),
          /** First matching rule wins; no match: alert only. */
          responses: z
            .array(
              z.strictObject({
                segment: z.string().min(1).optional(),
                /** Device class (the device's type). */
                type: z.string().min(1).optional(),
                minSeverity: z.enum(['low', 'medium', 'high']).default('high'),
                action: z.enum(['alert', 'rate-limit', 'quarantine', 'revoke']),
                /** For rate-limit: messages per second allowed, and for how long. */
                perSecond: z.number().positive().default(1),
                durationMinutes: z.number().positive().default(60),
              }),
            )
            .default([]),
          siem: z
            .strictObject({
              /** RFC 5424 over TCP (RFC 6587 octet counting), with TLS (RFC 5425) when tls is set. */
              syslog: z
                .strictObject({
                  host: z.string().min(1),
                  port: z.number().int().min(1).max(65535),
                  tls: z
                    .strictObject({ caFile: existingFile, serverName: z.string().min(1).optional() })
                    .optional(),
                })
                .optional(),
              /** JSON lines appended to this file (docs/anomaly.md has the schema). */
              jsonlFile: z
                .string()
                .min(1)
                .transform((p) => resolve(baseDir, p))
                .optional(),
            })
            .prefault({}),
        })
        .prefault({}),
      uplink: z
        .strictObject({
          url: z.url({ protocol: /^mqtts$/, error: 'must be an mqtts:// URL' }),
          caFile: existingFile,
          // The certificate is signed only after `uplink csr` ran with this config, so it may be missing until
          // then: the uplink waits for it (sending nothing, queueing everything) instead of refusing the config.
          certFile: laterFile.optional(),
          topicPrefix: z
            .string()
            .min(1)
            .regex(/^[^#+]+$/, { error: 'must not contain MQTT wildcards' })
            .default('portcullis'),
          clientId: z.string().min(1).max(128).optional(),
          /** raw: the payload byte for byte on {topicPrefix}/devices/{id}/telemetry; sparkplug-b: Sparkplug B 3.0. */
          format: z.enum(['raw', 'sparkplug-b']).default('raw'),
          sparkplug: z
            .strictObject({
              groupId: z
                .string()
                .regex(/^[^/#+]{1,128}$/, { error: 'must not contain /, # or +' })
                .default('portcullis'),
              /** Default: the client id. */
              edgeNodeId: z
                .string()
                .regex(/^[^/#+]{1,128}$/, { error: 'must not contain /, # or +' })
                .optional(),
            })
            .prefault({}),
          queue: z
            .strictObject({
              /** At this many queued messages new ones are refused (5.03 + Max-Age to a sensor), never dropped. */
              maxMessages: z.number().int().min(1).default(100_000),
              /**
               * What a full queue does. One behaviour on purpose: a sender is never acknowledged for a message the
               * bound would then drop (issue 23); the sender keeps it and retries.
               */
              whenFull: z.enum(['refuse']).default('refuse'),
              /** The retry hint of a refusal: CoAP Max-Age on 5.03, HTTP Retry-After on 503. */
              retryAfterSeconds: z.number().int().min(1).max(3600).default(10),
              /** Messages older than this are dropped (and counted). */
              maxAgeHours: z.number().positive().default(168),
            })
            .prefault({}),
          /** Reconnect back-off after the broker goes away: jittered, doubling up to the maximum. */
          reconnect: z
            .strictObject({
              minSeconds: z.number().positive().default(1),
              maxSeconds: z.number().positive().default(60),
            })
            .prefault({})
            .refine((r) => r.maxSeconds >= r.minSeconds, { error: 'maxSeconds must be at least minSeconds' }),
        })
        .optional(),
      /** The fleet plane over the uplink's broker (docs/fleet.md); unset: presence and state only, no desired state. */
      fleet: z
        .strictObject({
          /** The fleet operator's Ed25519 public key (PEM): only documents it signs are applied. */
          operatorKeyFile: existingFile.optional(),
          /** Groups whose desired-state topics this gateway follows. */
          groups: z
            .array(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, { error: 'must be a group name' }))
            .max(16)
            .default([]),
          /** Where a group's documents are published; `{group}` is replaced by the group's name. */
          groupTopic: z
            .string()
            .regex(/^[^#+]*\{group\}[^#+]*$/, { error: 'must contain {group} and no MQTT wildcards' })
            .default('fleet/groups/{group}/desired'),
          /** Reported state: at most once per this many seconds on change, and at least once per hour. */
          stateDebounceSeconds: z.number().positive().max(3600).default(5),
          stateIntervalSeconds: z.number().positive().default(3600),
          /** A gateway update carried by a document: where its bundle may come from, and how big it may be. */
          update: z
            .strictObject({
              /** https only, unless this allows file: URLs too (a local mirror; the tests). */
              allowFileUrls: z.boolean().default(false),
              maxBundleBytes: z
                .number()
                .int()
                .min(1024)
                .max(2 * 1024 ** 3)
                .default(512 * 1024 * 1024),
              fetchTimeoutSeconds: z.number().int().min(1).max(3600).default(600),
            })
            .prefault({}),
        })
        .prefault({}),
    })
    .superRefine((c, ctx) => {
      c.segments.forEach((s, i) => {
        if (s.defaultPolicy === 'allow' && !c.firewall.wanInterface) {
          ctx.addIssue({
            code: 'custom',
            path: ['segments', i, 'defaultPolicy'],
            message: 'allow needs firewall.wanInterface (where the segment may go)',
          });
        }
      });
      // A profile naming a segment that does not exist would refuse its devices forever: say so at load.
      const names = new Set(c.segments.map((s) => s.name));
      for (const [name, p] of Object.entries(c.policy.profiles)) {
        p.segments?.forEach((s, i) => {
          if (!names.has(s))
            ctx.addIssue({
              code: 'custom',
              path: ['policy', 'profiles', name, 'segments', i],
              message: `no segment ${s} in segments`,
            });
        });
      }
    })
    .transform((c) => ({
      ...c,
      // Technicians reach the UI from the management segment only: by default it listens nowhere else.
      ui: {
        ...c.ui,
        host: c.ui.host ?? c.segments.find((s) => s.role === 'management')?.gatewayAddress ?? '127.0.0.1',
      },
    }));
}

export type Config = z.output<ReturnType<typeof configSchema>>;
