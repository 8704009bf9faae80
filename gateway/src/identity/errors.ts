import { PortcullisError } from '../errors.ts';

/**
 * Codes: ERR_IDENTITY_INVALID, ERR_IDENTITY_WEAK_PSK (a PSK under 128 bits without the explicit exception),
 * ERR_IDENTITY_NOT_FOUND, ERR_IDENTITY_STATE, ERR_IDENTITY_CONFLICT.
 */
export class IdentityError extends PortcullisError {}
