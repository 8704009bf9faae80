import { PortcullisError } from '../errors.ts';

export type FirmwareErrorCode =
  | 'ERR_FIRMWARE_INVALID'
  | 'ERR_FIRMWARE_SIGNATURE'
  | 'ERR_FIRMWARE_UNKNOWN_VENDOR'
  | 'ERR_FIRMWARE_NOT_FOUND'
  | 'ERR_FIRMWARE_STATE'
  | 'ERR_FIRMWARE_CONFLICT';

export class FirmwareError extends PortcullisError {
  constructor(code: FirmwareErrorCode, message: string) {
    super(code, message);
  }
}
