import { PortcullisError } from '../errors.ts';

/** Why a desired-state document was refused; the code is what goes back on `desired/result`. */
export type FleetErrorCode =
  | 'ERR_FLEET_MALFORMED'
  | 'ERR_FLEET_UNSIGNED'
  | 'ERR_FLEET_BAD_SIGNATURE'
  | 'ERR_FLEET_UNKNOWN_KEY'
  | 'ERR_FLEET_REPLAYED'
  | 'ERR_FLEET_EXPIRED'
  | 'ERR_FLEET_NOT_FOR_ME'
  | 'ERR_FLEET_LOCKED'
  | 'ERR_FLEET_NO_OPERATOR_KEY'
  | 'ERR_FLEET_SEALED'
  | 'ERR_FLEET_APPLY'
  | 'ERR_FLEET_FETCH_URL'
  | 'ERR_FLEET_FETCH'
  | 'ERR_FLEET_FETCH_SIZE'
  | 'ERR_FLEET_FETCH_HASH'
  | 'ERR_FLEET_USAGE'
  | 'ERR_FLEET_BROKER';

export class FleetError extends PortcullisError {
  constructor(code: FleetErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
