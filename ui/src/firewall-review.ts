import type { Core } from '../../gateway/src/core.ts';
import { HttpError } from '../../gateway/src/http.ts';
import type { StoredRuleset } from '../../gateway/src/store/index.ts';

/** Lines only in `a` (-) or only in `b` (+), in order: enough to review a ruleset change before applying it. */
export function lineDiff(a: string, b: string): string[] {
  const left = a.split('\n');
  const right = b.split('\n');
  const n = left.length;
  const m = right.length;
  if (n * m > 4_000_000) {
    // Set contents (thousands of `add` lines) have no meaningful order: compare them as sets.
    const l = new Set(left);
    const r = new Set(right);
    return [
      ...left.filter((x) => !r.has(x)).map((x) => `-${x}`),
      ...right.filter((x) => !l.has(x)).map((x) => `+${x}`),
    ];
  }
  // Longest common subsequence over lines; the rules are a few dozen lines (devices live in sets).
  const lcs: number[][] = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i]![j] =
        left[i] === right[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
    }
  }
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && left[i] === right[j]) {
      i++;
      j++;
    } else if (j < m && (i === n || lcs[i]![j + 1]! >= lcs[i + 1]![j]!)) {
      out.push(`+${right[j++]}`);
    } else {
      out.push(`-${left[i++]}`);
    }
  }
  return out;
}

const rulesetView = (r: StoredRuleset | undefined) =>
  r ? { hash: r.hash, status: r.status, actor: r.actor, createdAt: r.createdAt, error: r.error } : null;

/** Whether the firewall is enforced, the ruleset in force and the last attempt (the API and the segments page). */
export function firewallStatus(core: Core) {
  return {
    enforce: core.config.firewall.enforce,
    inForce: rulesetView(core.segmentation.lastApplied()),
    latest: rulesetView(core.segmentation.latestAttempt()),
  };
}

/** The ruleset as it would be compiled now, and what applying it would change against the one in force. */
export async function firewallReview(core: Core) {
  const r = await core.segmentation.render();
  const inForce = core.segmentation.lastApplied();
  return {
    hash: r.hash,
    inForce: inForce?.hash ?? null,
    changed: r.hash !== inForce?.hash,
    warnings: r.warnings,
    iptables: r.iptables,
    ipsets: r.ipsets,
    diff: {
      iptables: lineDiff(inForce?.iptables ?? '', r.iptables),
      ipsets: lineDiff(inForce?.ipsets ?? '', r.ipsets),
    },
  };
}

/**
 * Applying a ruleset while `firewall.enforce` is off would load rules (with `INPUT DROP`) into a host whose
 * owner never asked the gateway to manage its firewall: refused server-side, whatever a page offers.
 */
export function assertEnforcing(core: Core): void {
  if (!core.config.firewall.enforce) {
    throw new HttpError(
      409,
      'ERR_FIREWALL_NOT_ENFORCED',
      'firewall.enforce is off in the configuration: the gateway does not manage this host firewall, so it applies no ruleset',
    );
  }
}
