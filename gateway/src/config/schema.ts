import { accessSync, constants, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';

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

  return z.strictObject({
    dataDir: dirPath.default(resolve(baseDir, 'var')),
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
          })
          .prefault({}),
      })
      .prefault({}),
    ui: z
      .strictObject({
        host: listenHost.default('127.0.0.1'),
        port: listenPort.default(8443),
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
        enforce: z.boolean().default(false),
      })
      .prefault({}),
    uplink: z
      .strictObject({
        url: z.url({ protocol: /^mqtts$/, error: 'must be an mqtts:// URL' }),
        caFile: existingFile,
        certFile: existingFile.optional(),
        topicPrefix: z
          .string()
          .min(1)
          .regex(/^[^#+]+$/, { error: 'must not contain MQTT wildcards' })
          .default('portcullis'),
        clientId: z.string().min(1).max(128).optional(),
        queue: z
          .strictObject({
            /** Beyond this many queued messages the oldest are dropped (and counted). */
            maxMessages: z.number().int().min(1).default(100_000),
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
  });
}

export type Config = z.output<ReturnType<typeof configSchema>>;
