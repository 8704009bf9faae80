import { PortcullisError } from '../errors.ts';

export type UpdateErrorCode =
  | 'ERR_UPDATE_UNSIGNED'
  | 'ERR_UPDATE_SIGNATURE'
  | 'ERR_UPDATE_TAMPERED'
  | 'ERR_UPDATE_TRUNCATED'
  | 'ERR_UPDATE_INVALID'
  | 'ERR_UPDATE_INCOMPATIBLE'
  | 'ERR_UPDATE_DOWNGRADE'
  | 'ERR_UPDATE_HEALTH'
  | 'ERR_UPDATE_BUSY'
  | 'ERR_UPDATE_STATE'
  | 'ERR_UPDATE_CONFIG';

/** Why a bundle was refused or an installation undone; the message names the file or field, never a key. */
export class UpdateError extends PortcullisError {
  constructor(code: UpdateErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
