import { existsSync, readFileSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { createUiApp } from '../../ui/src/app.ts';
import { type RunningServer, startHttpsServer } from '../../ui/src/server.ts';
import { uiTls } from '../../ui/src/tls.ts';
import { AnomalyService } from './anomaly/index.ts';
import type { Clock } from './clock.ts';
import type { ConfigApplier } from './config/apply.ts';
import type { LoadedConfig } from './config/index.ts';
import type { ControlServer } from './control/server.ts';
import { Core } from './core.ts';
import { commandHandler } from './datapath/downlink.ts';
import { HandshakeLog } from './datapath/handshake-log.ts';
import { type SensorListener, startSensorListener } from './datapath/sensor-listener.ts';
import { dtlsCryptoStatus } from './dtls/index.ts';
import { startFirmwareScheduler } from './firmware/index.ts';
import type { FleetAgent } from './fleet/agent.ts';
import type { GpioBackend, HardwareService } from './hardware/index.ts';
import type { Logger } from './log.ts';
import { PullManager } from './pull/pull-manager.ts';
import { type FirewallReconciler, startFirewallReconciler } from './segmentation/index.ts';
import { publishSetupCode } from './setup-code-file.ts';
import { SystemdNotifier, UnitStateProbe } from './systemd.ts';
import { readCertificate } from './uplink/certificate-watch.ts';
import { Uplink, type UplinkOptions } from './uplink/index.ts';

function uplinkOptions(core: Core): UplinkOptions | null {
  const u = core.config.uplink;
  if (!u) return null;
  return {
    url: u.url,
    clientId: u.clientId ?? `portcullis-${hostname()}`,
    topicPrefix: u.topicPrefix,
    certFile: u.certFile,
    tls: {
      ca: readFileSync(u.caFile),
      cert: u.certFile ? readCertificate(u.certFile) : null,
      key: (core.keystore as NonNullable<Core['keystore']>).uplinkKey(),
    },
    maxMessages: u.queue.maxMessages,
    retryAfterSeconds: u.queue.retryAfterSeconds,
    maxAgeMs: u.queue.maxAgeHours * 3600_000,
    reconnect: { minMs: u.reconnect.minSeconds * 1000, maxMs: u.reconnect.maxSeconds * 1000 },
    sparkplug:
      u.format === 'sparkplug-b'
        ? {
            groupId: u.sparkplug.groupId,
            edgeNodeId:
              u.sparkplug.edgeNodeId ?? (u.clientId ?? `portcullis-${hostname()}`).replace(/[/#+]/g, '_'),
            // Each device's metrics as its policy profile maps them (docs/fleet.md), read at publish time.
            metricsFor: (id: string) => {
              try {
                return core.policy.show(id).fields.metrics;
              } catch {
                return undefined;
              }
            },
          }
        : undefined,
  };
}

async function gpioBackend(
  kind: 'none' | 'auto' | 'simulator',
  logger: Logger,
): Promise<GpioBackend | undefined> {
  if (kind === 'none') return undefined;
  const { openOnoff, SimulatedGpio } = await import('./hardware/index.ts');
  if (kind === 'simulator') return new SimulatedGpio();
  const onoff = await openOnoff();
  if (!onoff)
    logger.warn(
      'hardware.backend auto: no accessible GPIO (or no onoff); pairing button, tamper switch and LED are off',
    );
  return onoff;
}

/** The composition root of the `portcullis-gateway` process. */
export class Gateway {
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly core: Core,
    private readonly ui: RunningServer,
    readonly uplink: Uplink,
    private readonly sensors: SensorListener,
    private readonly pull: PullManager,
    private readonly firewall: FirewallReconciler | undefined,
    readonly anomaly: AnomalyService | undefined,
    private readonly logger: Logger,
    private readonly systemd: SystemdNotifier,
    readonly hardware: HardwareService | undefined,
    private readonly control: ControlServer | undefined,
    private readonly firmwareScheduler: { close(): void },
    private readonly fleet: { stop(): Promise<void> } | undefined,
    /** Polls the flows' unit; stopped with the gateway, or each in-process restart would leave one more. */
    private readonly flowsUnit: UnitStateProbe | undefined,
  ) {}

  static async start(
    loaded: LoadedConfig,
    deps: {
      clock: Clock;
      logger: Logger;
      logs?: { recent(): string[] };
      /** Applies a configuration change from the console (the supervisor in `portcullis start`). */
      configApply?: ConfigApplier;
    },
  ): Promise<Gateway> {
    const { config } = loaded;
    const { logger } = deps;
    // A first start that fails (a port in use, say) must not leave a data directory behind that looks like
    // an installed gateway: one made here is removed again on failure. One that existed is left as it was.
    const freshDataDir = !existsSync(config.dataDir);
    let core: Core;
    try {
      core = Core.open(config, deps.clock);
    } catch (err) {
      if (freshDataDir) rmSync(config.dataDir, { recursive: true, force: true });
      throw err;
    }
    let uplink: Uplink | undefined;
    let sensors: SensorListener | undefined;
    let ui: RunningServer | undefined;
    let pull: PullManager | undefined;
    let firewall: FirewallReconciler | undefined;
    let anomaly: AnomalyService | undefined;
    let hardware: HardwareService | undefined;
    let control: ControlServer | undefined;
    let fleetAgent: FleetAgent | undefined;
    let flowsUnit: UnitStateProbe | undefined;
    try {
      const backend = await gpioBackend(config.hardware.backend, logger);
      if (backend) {
        // Optional subsystems (hardware, the flows' control socket) load only when configured.
        const { HardwareService } = await import('./hardware/index.ts');
        hardware = new HardwareService({
          backend,
          options: config.hardware,
          store: core.store,
          audit: core.audit,
          clock: deps.clock,
          logger,
          events: core.events,
        });
        hardware.start();
      }
      // The firewall first: sensors are contained before the gateway starts listening to them.
      if (config.firewall.enforce) {
        firewall = startFirewallReconciler(
          core.segmentation,
          core.identity,
          config.firewall.dnsRefreshSeconds,
          () => deps.clock.now(),
          logger,
        );
        await firewall.ready;
      }
      const tls = await uiTls(
        config,
        core.keystore as NonNullable<Core['keystore']>,
        join(config.dataDir, 'tls'),
        deps.clock.now(),
      );
      const pairing = hardware;
      // On the appliance: the policy flows' unit state, for /healthz (PORTCULLIS_FLOWS_UNIT, set by the unit).
      flowsUnit = UnitStateProbe.fromEnv()?.start();
      // The sensors' recent handshakes: written by the sensor listener, read by the device and diagnostics pages.
      const handshakes = new HandshakeLog(() => deps.clock.now());
      const uiApp = createUiApp(core, {
        logs: deps.logs,
        fleet: () => fleetAgent?.status(),
        handshakes,
        configApply: deps.configApply,
        // Backups carry the configuration file the gateway runs with.
        maintenance: { configSource: loaded.source },
        pairingOpen: () => pairing?.pairingOpen() ?? false,
        uplinkStatus: () => uplink?.status(),
        behaviour: (id) => anomaly?.behaviour(id),
        runtime: {
          uplink: () => uplink?.status(),
          pullPoller: () => pull?.health(),
          dtlsCrypto: () => (sensors ? dtlsCryptoStatus() : undefined),
          flows: () => flowsUnit?.state(),
        },
        logger,
      });
      ui = await startHttpsServer(uiApp, {
        host: config.ui.host,
        port: config.ui.port,
        key: tls.key,
        cert: tls.cert,
        logger,
      });
      uplink = new Uplink(core.store, uplinkOptions(core), deps.clock, logger, commandHandler(core, logger));
      if (config.anomaly.enabled) {
        anomaly = new AnomalyService({
          config,
          store: core.store,
          audit: core.audit,
          identity: core.identity,
          segmentation: core.segmentation,
          clock: deps.clock,
          logger,
          events: core.events,
          firmware: core.firmware,
        });
        anomaly.start();
      }
      sensors = await startSensorListener(core, uplink, logger, anomaly, handshakes);
      let fleet: { stop(): Promise<void> } | undefined;
      if (config.uplink) {
        // The fleet plane rides on the uplink's connection (presence, state, desired state): docs/fleet.md.
        const { FleetAgent } = await import('./fleet/agent.ts');
        const agent = await FleetAgent.create(core, uplink, deps.clock, logger);
        agent.start();
        fleetAgent = agent;
        fleet = agent;
      }
      uplink.start();
      pull = new PullManager(core, uplink, logger, anomaly);
      if (config.control.socketPath) {
        const { groupId, startControlServer } = await import('./control/server.ts');
        control = await startControlServer(core, config.control.socketPath, {
          anomaly,
          uplink,
          group: config.control.socketGroup ? groupId(config.control.socketGroup) : undefined,
        });
      }
      pull.start();
      if (config.uplink && !config.uplink.certFile) {
        logger.warn('uplink has no client certificate yet (uplink.certFile); messages queue until it is set');
      }
      // No default password (ETSI EN 303 645 5.1-1): until the first account exists, setup needs this code,
      // shown only here on the console (the journal) — proof of physical presence.
      const setupCode = core.users.issueSetupCode();
      const unpublished = publishSetupCode(config.ui.setupCodeFile, setupCode, ui.address.port);
      if (unpublished) logger.warn(unpublished);
      if (setupCode) {
        process.stderr.write(
          `portcullis: first boot: set up the first account at the UI with the setup code ${setupCode}\n`,
        );
      }
      core.audit.append({
        actor: 'system',
        action: 'gateway.start',
        details: { version: core.status().version, config: loaded.source ?? 'embedded defaults' },
      });
      // Signed checkpoints of the keyed audit head, for the SIEM export (docs/audit.md).
      core.audit.startCheckpoints();
      logger.info(
        {
          config: loaded.source ?? 'embedded defaults',
          dataDir: config.dataDir,
          ui: `https://${ui.address.address}:${ui.address.port}`,
          uiTrust: tls.trust,
          dtls: `${sensors.address.address}:${sensors.address.port}`,
          keystore: config.keystore.backend,
          uplink: config.uplink ? 'configured' : 'unset',
          firewall: config.firewall.enforce ? 'enforcing' : 'off',
        },
        'gateway started',
      );
      if (config.keystore.backend === 'software') {
        logger.warn('keystore backend is software: keys are files on disk, not protected by a TPM');
      }
      const systemd = new SystemdNotifier(logger);
      systemd.ready(() => core.store.healthy());
      return new Gateway(
        core,
        ui,
        uplink,
        sensors,
        pull,
        firewall,
        anomaly,
        logger,
        systemd,
        hardware,
        control,
        startFirmwareScheduler(core.firmware, (err) =>
          logger.error({ err }, 'firmware campaign step failed'),
        ),
        fleet,
        flowsUnit,
      );
    } catch (err) {
      // Whatever came up goes down again: a failed start must not leave a listener behind.
      await ui?.close();
      await control?.close();
      await pull?.stop();
      await sensors?.close();
      await uplink?.stop();
      await anomaly?.stop();
      await firewall?.close();
      hardware?.stop();
      flowsUnit?.stop();
      core.close();
      if (freshDataDir) rmSync(config.dataDir, { recursive: true, force: true });
      throw err;
    }
  }

  get uiAddress() {
    return this.ui.address;
  }

  get dtlsAddress() {
    return this.sensors.address;
  }

  /** Idempotent: close listeners first so no new work arrives, then record the stop and close the database. */
  stop(reason: string, opts: { reloading?: boolean } = {}): Promise<void> {
    this.stopping ??= (async () => {
      this.logger.info({ reason }, 'gateway stopping');
      // Stopped to start again in this process (a configuration change): systemd hears "reloading", not "stopping".
      if (opts.reloading) this.systemd.reloading();
      else this.systemd.stopping();
      await Promise.all([
        this.ui.close(),
        this.sensors.close(),
        this.pull.stop(),
        this.firewall?.close(),
        this.control?.close(),
      ]);
      this.firmwareScheduler.close();
      await this.anomaly?.stop();
      this.hardware?.stop();
      this.flowsUnit?.stop();
      await this.fleet?.stop();
      await this.uplink.stop();
      this.core.audit.append({ actor: 'system', action: 'gateway.stop', details: { reason } });
      this.core.audit.stopCheckpoints();
      this.core.close();
      this.logger.info('gateway stopped');
    })();
    return this.stopping;
  }
}
