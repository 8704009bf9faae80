export { CoapEndpoint, type CoapEndpointOptions, EXCHANGE_LIFETIME_MS } from './endpoint.ts';
export { CoapRouter, type CoapHandler, type CoapMethod, type CoapRequest, type CoapResponse } from './router.ts';
