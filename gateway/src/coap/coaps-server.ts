import { DtlsServer, type DtlsServerOptions, type DtlsSessionInfo } from '../dtls/index.ts';
import { CoapEndpoint, type CoapEndpointOptions } from './endpoint.ts';
import { CoapRouter } from './router.ts';

export interface Telemetry {
  session: DtlsSessionInfo;
  contentFormat: number | null;
  payload: Buffer;
}

/** The ingest resource of the data path: `POST /telemetry`, any content-format, answered 2.04 Changed. */
export function telemetryRouter(onTelemetry: (t: Telemetry) => void | Promise<void>): CoapRouter {
  return new CoapRouter().on('POST', '/telemetry', async (req) => {
    await onTelemetry({ session: req.session, contentFormat: req.contentFormat, payload: req.payload });
    return { code: '2.04' };
  });
}

/** A DTLS server whose sessions speak CoAP to `router`. */
export function createCoapsServer(
  dtls: Omit<DtlsServerOptions, 'onData'>,
  coap: CoapEndpointOptions,
): { server: DtlsServer; endpoint: CoapEndpoint } {
  const endpoint = new CoapEndpoint(coap);
  const server = new DtlsServer({
    ...dtls,
    onData: (session, data) => {
      void endpoint.handle(session, data);
    },
  });
  return { server, endpoint };
}
