/**
 * What people read instead of the internal names of alert kinds and audit actions (`anomaly.flood`,
 * `device.add`): the pages show the label, and keep the internal name beside it only where someone filters by
 * it (the audit log).
 */

const FEATURES: Record<string, string> = {
  auth: 'authentication failures',
  beacon: 'regular beaconing',
  flood: 'message flood',
  rate: 'unusual message rate',
  scan: 'resource scan',
  size: 'unusual message sizes',
  policy_refusal: 'policy refusals',
};

const ALERT_KINDS: Record<string, string> = {
  'dtls.capacity': 'DTLS session capacity reached',
  'dtls.session_limit': 'one credential used by too many sessions (copied key?)',
  'firewall.apply_failed': 'firewall ruleset failed to apply',
  'firmware.campaign_halted': 'firmware campaign halted',
  'gateway.worker_crash_loop': 'a gateway worker keeps crashing',
  'update.rolled_back': 'gateway update rolled back',
  'hardware.tamper': 'enclosure opened',
};

export function alertKindLabel(kind: string): string {
  if (ALERT_KINDS[kind]) return ALERT_KINDS[kind];
  if (kind.startsWith('anomaly.')) {
    const parts = kind.slice('anomaly.'.length).split('+');
    return `Unusual behaviour: ${parts.map((p) => FEATURES[p] ?? p.replace(/[_.-]/g, ' ')).join(', ')}`;
  }
  return humanise(kind);
}

const ACTIONS: Record<string, string> = {
  'alert.acknowledge': 'alert acknowledged',
  'audit.export': 'audit log exported',
  'audit.reseal': 'audit log resealed',
  'control.denied': 'flow request refused',
  'control.token.create': 'flow token created',
  'control.token.revoke': 'flow token revoked',
  'device.add': 'device added',
  'diagnostics.dns': 'DNS lookup from the gateway',
  'diagnostics.reach': 'reach test from the gateway',
  'diagnostics.uplink': 'uplink TLS test',
  'device.approve': 'device approved',
  'device.decommission': 'device decommissioned',
  'device.pending': 'device waiting for approval',
  'device.place': 'device placed in a segment',
  'device.policy': 'device policy changed',
  'device.quarantine': 'device quarantined',
  'device.rate-limit': 'device rate-limited',
  'device.rate-limit.lift': 'device rate limit lifted',
  'device.reject': 'device rejected',
  'device.release': 'device released from quarantine',
  'firewall.apply': 'firewall ruleset applied',
  'firewall.apply.failed': 'firewall ruleset failed to apply',
  'firewall.block': 'address blocked',
  'firmware.upload': 'firmware uploaded',
  'gateway.start': 'gateway started',
  'gateway.stop': 'gateway stopped',
  'hardware.tamper': 'enclosure opened',
  'identity.trust.add': 'certificate authority trusted',
  'policy.refused': 'messages refused by policy',
  'sensor.auth.failed': 'sensor authentication failed',
  'update.install': 'gateway update installed',
  'uplink.csr': 'uplink certificate request made',
  'uplink.certificate': 'uplink certificate installed',
  'update.rollback': 'gateway update rolled back',
  'user.add': 'user added',
  'user.delete': 'user deleted',
  'user.disable': 'user disabled',
  'user.enable': 'user enabled',
  'user.login': 'logged in',
  'user.login.failed': 'failed logins',
  'user.login.locked': 'account locked after failures',
  'user.logout': 'logged out',
  'user.mfa.enrol': 'second factor enrolled',
  'user.mfa.recovery-code': 'recovery code used',
  'user.mfa.reset': 'second factor reset',
  'user.password.change': 'password changed',
  'user.password.reset': 'password reset by an admin',
  'user.session.revoke': 'session ended by hand',
  'user.setup': 'first administrator created',
  'user.setup.failed': 'wrong setup codes',
  'user.unlock': 'account unlocked',
};

export function actionLabel(action: string): string {
  return ACTIONS[action] ?? humanise(action);
}

/** `firmware.campaign.halt` → "firmware campaign halt": better than the raw name when no label exists. */
function humanise(name: string): string {
  const s = name.replace(/[._-]+/g, ' ').trim();
  return s.charAt(0).toUpperCase() + s.slice(1);
}
