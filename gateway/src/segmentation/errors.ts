import { PortcullisError } from '../errors.ts';

/**
 * Codes: ERR_SEGMENT_INVALID (config or placement), ERR_MUD_INVALID (malformed MUD file), ERR_MUD_UNSUPPORTED
 * (a construct Portcullis cannot enforce exactly), ERR_FIREWALL_COMPILE (state that cannot become a ruleset),
 * ERR_FIREWALL_TEST (the kernel refused the ruleset in a dry run; nothing changed), ERR_FIREWALL_APPLY (apply or
 * read-back failed; the last good ruleset was restored), ERR_FIREWALL_ROLLBACK (and restoring it failed too),
 * ERR_FIREWALL_TOOL (iptables/ipset missing or not permitted), ERR_FIREWALL_TOOL_FAILED (a tool refused its
 * input), ERR_FIREWALL_BUSY (another apply holds the lock), ERR_FIREWALL_NOT_APPLIED (no ruleset in force yet).
 */
export class SegmentationError extends PortcullisError {}
