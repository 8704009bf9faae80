import { PortcullisError } from '../errors.ts';
import { AlertDescription } from './constants.ts';

/**
 * A protocol failure. `alert` is what the peer is told (fatal); `code` is what operators and tests match on.
 * Messages never carry key material or PSKs.
 */
export class DtlsError extends PortcullisError {
  constructor(
    code: string,
    message: string,
    readonly alert: number = AlertDescription.handshakeFailure,
  ) {
    super(code, message);
    this.name = 'DtlsError';
  }
}

export function decodeError(what: string): DtlsError {
  return new DtlsError('ERR_DTLS_DECODE', `malformed ${what}`, AlertDescription.decodeError);
}
