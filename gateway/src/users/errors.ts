import { PortcullisError } from '../errors.ts';

/**
 * Codes: ERR_USER_CREDENTIALS (wrong name, password or code, or a locked account tried from a suspect source —
 * one message for all), ERR_USER_THROTTLED (this source failed too often: wait), ERR_USER_INVALID (bad input:
 * weak password, bad name), ERR_USER_SETUP (setup closed or wrong setup code), ERR_USER_MFA (second factor not
 * enrolled / enrolment not started), ERR_USER_CONFLICT, ERR_USER_NOT_FOUND (no such account or session),
 * ERR_USER_STATE (not on your own account, not the last enabled admin, already in that state).
 */
export class UserError extends PortcullisError {}
