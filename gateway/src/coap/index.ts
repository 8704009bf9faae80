export { createCoapsServer, type Telemetry, telemetryRouter } from './coaps-server.ts';
export { CoapEndpoint, type CoapEndpointOptions, EXCHANGE_LIFETIME_MS } from './endpoint.ts';
export {
  type CoapHandler,
  type CoapMethod,
  type CoapRequest,
  type CoapResponse,
  CoapRouter,
} from './router.ts';
