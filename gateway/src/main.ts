import { join } from 'node:path';
import { createUiApp } from '../../ui/src/app.ts';
import { type RunningServer, startHttpsServer } from '../../ui/src/server.ts';
import { loadOrCreateUiTls } from '../../ui/src/tls.ts';
import type { Clock } from './clock.ts';
import type { LoadedConfig } from './config/index.ts';
import { Core } from './core.ts';
import type { Logger } from './log.ts';

/** The composition root of the `portcullis-gateway` process. */
export class Gateway {
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly core: Core,
    private readonly ui: RunningServer,
    private readonly logger: Logger,
  ) {}

  static async start(loaded: LoadedConfig, deps: { clock: Clock; logger: Logger }): Promise<Gateway> {
    const { config } = loaded;
    const { logger } = deps;
    const core = Core.open(config, deps.clock);
    try {
      const tls = await loadOrCreateUiTls(join(config.dataDir, 'tls'), config.ui.host, config.ui.tls);
      if (tls.generated)
        logger.warn({ dir: join(config.dataDir, 'tls') }, 'generated a self-signed UI certificate');
      const ui = await startHttpsServer(createUiApp(core), {
        host: config.ui.host,
        port: config.ui.port,
        ...tls,
      });
      core.audit.append({
        actor: 'system',
        action: 'gateway.start',
        details: { version: core.status().version, config: loaded.source ?? 'embedded defaults' },
      });
      logger.info(
        {
          config: loaded.source ?? 'embedded defaults',
          dataDir: config.dataDir,
          ui: `https://${ui.address.address}:${ui.address.port}`,
          keystore: config.keystore.backend,
          uplink: config.uplink ? 'configured' : 'unset',
          firewall: config.firewall.enforce ? 'enforcing' : 'off',
        },
        'gateway started',
      );
      if (config.keystore.backend === 'software') {
        logger.warn('keystore backend is software: keys are files on disk, not protected by a TPM');
      }
      return new Gateway(core, ui, logger);
    } catch (err) {
      core.close();
      throw err;
    }
  }

  get uiAddress() {
    return this.ui.address;
  }

  /** Idempotent: close listeners first so no new work arrives, then record the stop and close the database. */
  stop(reason: string): Promise<void> {
    this.stopping ??= (async () => {
      this.logger.info({ reason }, 'gateway stopping');
      await this.ui.close();
      this.core.audit.append({ actor: 'system', action: 'gateway.stop', details: { reason } });
      this.core.close();
      this.logger.info('gateway stopped');
    })();
    return this.stopping;
  }
}
