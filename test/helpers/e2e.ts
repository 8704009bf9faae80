import { type GatewayHome, makeGatewayHome, type RunningGateway } from './gateway.ts';
import { type Broker, startBroker } from './mosquitto.ts';
import { makePki, type TestPki } from './pki.ts';
import { type Subscriber, startSubscriber } from './subscriber.ts';

export interface E2e {
  pki: TestPki;
  broker: Broker;
  home: GatewayHome;
  gw: RunningGateway;
  sub: Subscriber;
}

/**
 * The whole stage for an end-to-end test: a PKI, mosquitto (mTLS, TLS 1.3), a gateway home provisioned by
 * `provision` through the CLI before it starts, the running gateway, and `mosquitto_sub` on `site-1/#`.
 */
export async function startE2e(
  clientId: string,
  provision?: (home: GatewayHome) => Promise<void>,
): Promise<E2e> {
  const pki = makePki();
  const broker = await startBroker({ caPath: pki.caPath, server: pki.broker });
  const home = await makeGatewayHome(pki, broker, clientId);
  await provision?.(home);
  const gw = await home.start();
  const sub = await startSubscriber(pki, broker, 'site-1/#');
  return { pki, broker, home, gw, sub };
}

export async function stopE2e(e: Partial<E2e>): Promise<void> {
  e.sub?.stop();
  await e.gw?.stop();
  await e.broker?.dispose();
  e.home?.dispose();
  e.pki?.dispose();
}
