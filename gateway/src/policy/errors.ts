import { PortcullisError } from '../errors.ts';

/**
 * Codes: ERR_POLICY_SCHEMA_INVALID (a profile's or override's JSON Schema does not compile), ERR_POLICY_PROFILE_NOT_FOUND (no such
 * profile), ERR_POLICY_OVERRIDES_INVALID (overrides that are not profile fields), ERR_POLICY_NOT_FOUND (no such device),
 * ERR_POLICY_PROFILE_LOCAL (a fleet document redefining a profile of the configuration), ERR_POLICY_PROFILE_INVALID
 * (a profile definition that does not parse).
 */
export class PolicyError extends PortcullisError {}
