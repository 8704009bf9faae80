import { PortcullisError } from '../errors.ts';

/**
 * Codes: ERR_POLICY_SCHEMA (a profile's or override's JSON Schema does not compile), ERR_POLICY_PROFILE (no such
 * profile), ERR_POLICY_OVERRIDES (overrides that are not profile fields), ERR_POLICY_NOT_FOUND (no such device).
 */
export class PolicyError extends PortcullisError {}
