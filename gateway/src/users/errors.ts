import { PortcullisError } from '../errors.ts';

/**
 * Codes: ERR_USER_CREDENTIALS (wrong name, password or code — one message for all), ERR_USER_LOCKED,
 * ERR_USER_INVALID (bad input: weak password, bad name), ERR_USER_SETUP (setup closed or wrong setup code),
 * ERR_USER_MFA (second factor not enrolled / enrolment not started), ERR_USER_CONFLICT.
 */
export class UserError extends PortcullisError {}
