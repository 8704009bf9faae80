import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import type { CompiledRuleset, IpSet } from './compiler.ts';
import { SET, SET_MAX_ELEMENTS, SET_PREFIX } from './compiler.ts';
import { SegmentationError } from './errors.ts';
import type { FirewallTools } from './tools.ts';

/** Staging copies are filled beside the live sets and swapped in, so a set is never seen half-filled. */
const STAGING_SUFFIX = '-new';

export interface ApplyTimings {
  stageMs: number;
  testMs: number;
  swapMs: number;
  verifyMs: number;
  totalMs: number;
}

/** A rule's packet and byte counts in front of it, as `iptables-save -c` prints them. */
const RULE_COUNTS = /^\[\d+:\d+\] /;
/** A chain's (its policy's) counts after it. */
const CHAIN_COUNTS = / \[\d+:\d+\]$/;

/** The filter table's policies and rules as `iptables-save` prints them (no comments, no counters). */
export function ruleLines(doc: string): string[] {
  return doc
    .split('\n')
    .map((l) => l.trimEnd().replace(RULE_COUNTS, ''))
    .filter((l) => l.startsWith('-A ') || l.startsWith(':'))
    .map((l) => (l.startsWith(':') ? l.replace(CHAIN_COUNTS, '') : l));
}

/**
 * The ruleset with the counts the kernel holds now (`saved`, from `iptables-save -c`) on every rule and built-in
 * chain it keeps unchanged, for `iptables-restore --counters`: replacing the table would otherwise zero every
 * counter at each apply, and a technician reading how much a rule dropped (`iptables -L -v`) would see only
 * what came since the last change anywhere. A rule is the same when its text is; a text listed n times takes
 * the counts of its n occurrences in order. A new or changed rule starts at zero.
 */
export function withCounters(iptables: string, saved: string): string {
  const rules = new Map<string, string[]>();
  const chains = new Map<string, string>();
  for (const raw of saved.split('\n')) {
    const line = raw.trimEnd();
    const rule = RULE_COUNTS.exec(line);
    if (rule) {
      const text = line.slice(rule[0].length);
      const counts = rules.get(text) ?? [];
      counts.push(rule[0].trimEnd());
      rules.set(text, counts);
    } else if (line.startsWith(':')) {
      const chain = CHAIN_COUNTS.exec(line);
      if (chain) chains.set(line.slice(0, -chain[0].length), chain[0].trimStart());
    }
  }
  return iptables
    .split('\n')
    .map((raw) => {
      const line = raw.trimEnd();
      if (line.startsWith('-A ')) {
        const counts = rules.get(line)?.shift();
        return counts ? `${counts} ${line}` : line;
      }
      if (!line.startsWith(':')) return line;
      // With --counters, iptables-restore requires counts on every chain line.
      const own = CHAIN_COUNTS.exec(line);
      const head = own ? line.slice(0, -own[0].length) : line;
      return `${head} ${chains.get(head) ?? own?.[0].trim() ?? '[0:0]'}`;
    })
    .join('\n');
}

/** The blocked-sources set: entries time out on their own (`timeout 0`: each entry gives its own). */
const BLOCKED_CREATE = `create ${SET.blocked} hash:ip family inet hashsize 1024 maxelem 65536 timeout 0 -exist`;

function createLine(s: Pick<IpSet, 'name' | 'type'>, name = s.name): string {
  return `create ${name} ${s.type} family inet hashsize 1024 maxelem ${SET_MAX_ELEMENTS} -exist`;
}

/** Entries per set, from `ipset list -t`. */
function parseSetSizes(listing: string): Map<string, number> {
  const sizes = new Map<string, number>();
  let name: string | undefined;
  for (const line of listing.split('\n')) {
    if (line.startsWith('Name: ')) name = line.slice(6).trim();
    const m = /^Number of entries: (\d+)/.exec(line);
    if (m && name) sizes.set(name, Number(m[1]));
  }
  return sizes;
}

/**
 * Applies compiled rulesets to the kernel: stage the sets, dry-run the rules (`iptables-restore --test`), swap
 * the sets and replace the filter table in one `iptables-restore`, then read both back. Any failure after the
 * dry run puts back exactly what was in force before (old set contents are still in the staging sets; the old
 * table was saved) and verifies that too. One apply at a time, across processes (a lock file).
 */
export class FirewallApplier {
  constructor(
    private readonly tools: FirewallTools,
    private readonly lockFile: string,
  ) {}

  async apply(r: Pick<CompiledRuleset, 'iptables' | 'sets'>): Promise<ApplyTimings> {
    const release = this.lock();
    try {
      return await this.applyLocked(r);
    } finally {
      release();
    }
  }

  private async applyLocked(r: Pick<CompiledRuleset, 'iptables' | 'sets'>): Promise<ApplyTimings> {
    const t0 = performance.now();
    const staged = r.sets.map((s) => ({ ...s, staging: `${s.name}${STAGING_SUFFIX}` }));
    // The rules match the blocked set: it must exist; its entries (with their timeouts) are left as they are.
    const stage: string[] = [BLOCKED_CREATE];
    for (const s of staged) {
      stage.push(createLine(s), createLine(s, s.staging), `flush ${s.staging}`);
      for (const e of s.entries) stage.push(`add ${s.staging} ${e}`);
    }
    await this.tools.run('ipset', ['restore'], `${stage.join('\n')}\n`);
    const t1 = performance.now();
    try {
      await this.tools.run('iptables-restore', ['--test'], r.iptables);
    } catch (err) {
      await this.destroy(staged.map((s) => s.staging));
      throw new SegmentationError(
        'ERR_FIREWALL_TEST',
        `the kernel refused the ruleset (nothing changed): ${(err as Error).message}`,
        { cause: err },
      );
    }
    const t2 = performance.now();
    // With the counters: what a rollback puts back, and what the rules kept unchanged carry over.
    const before = await this.tools.run('iptables-save', ['-c', '-t', 'filter']);
    const swap = staged.map((s) => `swap ${s.staging} ${s.name}`).join('\n');
    let t3 = t2;
    // How many swaps took effect: `ipset restore` stops at the first failing line and names it.
    let swapped = 0;
    try {
      try {
        await this.tools.run('ipset', ['restore'], `${swap}\n`);
        swapped = staged.length;
      } catch (err) {
        const line = Number(/line (\d+)/i.exec((err as Error).message)?.[1] ?? 1);
        swapped = Math.max(0, Math.min(staged.length, line - 1));
        throw err;
      }
      await this.tools.run('iptables-restore', ['--counters'], withCounters(r.iptables, before));
      t3 = performance.now();
      await this.verify(r.iptables, new Map(r.sets.map((s) => [s.name, s.entries.length])));
    } catch (err) {
      // Only the sets actually swapped are swapped back: swapping an untouched one would install new contents.
      await this.rollback(staged.slice(0, swapped), before, err, staged);
    }
    const t4 = performance.now();
    // The staging sets (old contents now) and sets of ours no rule uses any more (an allow-list group gone).
    await this.destroyUnused(new Set(r.sets.map((s) => s.name)));
    return {
      stageMs: t1 - t0,
      testMs: t2 - t1,
      swapMs: t3 - t2,
      verifyMs: t4 - t3,
      totalMs: performance.now() - t0,
    };
  }

  /**
   * Puts back the sets that were swapped (swap again) and the saved table; throws ERR_FIREWALL_APPLY, or
   * ERR_FIREWALL_ROLLBACK if that fails too. `all` are destroyed afterwards (staging copies).
   */
  private async rollback(
    staged: { name: string; staging: string }[],
    before: string,
    cause: unknown,
    all: { name: string; staging: string }[],
  ): Promise<never> {
    const why = (cause as Error).message;
    try {
      const sizes = parseSetSizes(await this.tools.run('ipset', ['list', '-t']));
      const swappable = staged.filter((s) => sizes.has(s.name) && sizes.has(s.staging));
      if (swappable.length > 0) {
        await this.tools.run(
          'ipset',
          ['restore'],
          `${swappable.map((s) => `swap ${s.staging} ${s.name}`).join('\n')}\n`,
        );
      }
      await this.tools.run('iptables-restore', ['--counters'], before);
      const back = await this.tools.run('iptables-save', ['-t', 'filter']);
      if (ruleLines(back).join('\n') !== ruleLines(before).join('\n'))
        throw new Error('the restored table reads back differently');
    } catch (err) {
      throw new SegmentationError(
        'ERR_FIREWALL_ROLLBACK',
        `apply failed (${why}) and restoring the previous ruleset failed too: ${(err as Error).message}`,
        { cause },
      );
    }
    await this.destroy(all.map((s) => s.staging));
    throw new SegmentationError('ERR_FIREWALL_APPLY', `apply failed, previous ruleset restored: ${why}`, {
      cause,
    });
  }

  /** Reads the table and the set sizes back; anything different from what was applied is a failure. */
  private async verify(iptables: string, expected: Map<string, number>): Promise<void> {
    const live = ruleLines(await this.tools.run('iptables-save', ['-t', 'filter']));
    const want = ruleLines(iptables);
    if (live.join('\n') !== want.join('\n')) {
      const i = want.findIndex((l, k) => live[k] !== l);
      const at = i === -1 ? want.length : i;
      throw new Error(
        `read-back differs at rule ${at + 1}: expected "${want[at] ?? '(end)'}", found "${live[at] ?? '(end)'}"`,
      );
    }
    const sizes = parseSetSizes(await this.tools.run('ipset', ['list', '-t']));
    for (const [name, n] of expected) {
      if (sizes.get(name) !== n)
        throw new Error(`set ${name} holds ${sizes.get(name) ?? 'nothing'} entries, expected ${n}`);
    }
  }

  private async destroy(names: string[]): Promise<void> {
    if (names.length === 0) return;
    const sizes = parseSetSizes(await this.tools.run('ipset', ['list', '-t']));
    const present = names.filter((n) => sizes.has(n));
    if (present.length > 0)
      await this.tools.run('ipset', ['restore'], `${present.map((n) => `destroy ${n}`).join('\n')}\n`);
  }

  /** Destroys every set with our prefix that is not in `keep`. */
  private async destroyUnused(keep: Set<string>): Promise<void> {
    const names = (await this.tools.run('ipset', ['list', '-n'])).split('\n').map((l) => l.trim());
    await this.destroy(names.filter((n) => n.startsWith(SET_PREFIX) && !keep.has(n) && n !== SET.blocked));
  }

  /**
   * Blocks a source address for `seconds` (the kernel drops the entry when it times out); blocking it again
   * restarts the timeout. Needs an applied ruleset (the rules that match the set).
   */
  async block(address: string, seconds: number): Promise<void> {
    try {
      await this.tools.run('ipset', ['add', SET.blocked, address, 'timeout', String(seconds), '-exist']);
    } catch (err) {
      if (/does not exist/.test((err as Error).message)) {
        throw new SegmentationError(
          'ERR_FIREWALL_NOT_APPLIED',
          `set ${SET.blocked} does not exist: no ruleset has been applied yet (portcullis firewall apply)`,
          { cause: err },
        );
      }
      throw err;
    }
  }

  /** Adds or removes one address in a set: the quarantine fast path (no recompile, no table reload). */
  async setMember(set: string, address: string, present: boolean): Promise<void> {
    try {
      await this.tools.run('ipset', [present ? 'add' : 'del', set, address, '-exist']);
    } catch (err) {
      if (/does not exist/.test((err as Error).message)) {
        throw new SegmentationError(
          'ERR_FIREWALL_NOT_APPLIED',
          `set ${set} does not exist: no ruleset has been applied yet (portcullis firewall apply)`,
          { cause: err },
        );
      }
      throw err;
    }
  }

  /** The rules in force now, as `iptables-save` prints them. */
  async live(): Promise<string> {
    return this.tools.run('iptables-save', ['-t', 'filter']);
  }

  /** An exclusive lock across processes; a lock left by a dead process is taken over. */
  private lock(): () => void {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(this.lockFile, 'wx', 0o600);
        writeSync(fd, String(process.pid));
        closeSync(fd);
        return () => {
          try {
            unlinkSync(this.lockFile);
          } catch {
            // already gone
          }
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const holder = Number(readFileSync(this.lockFile, 'utf8'));
        if (Number.isInteger(holder) && holder > 0 && isAlive(holder)) {
          throw new SegmentationError('ERR_FIREWALL_BUSY', `another apply is running (pid ${holder})`);
        }
        unlinkSync(this.lockFile);
      }
    }
    throw new SegmentationError('ERR_FIREWALL_BUSY', 'could not take the firewall lock');
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
