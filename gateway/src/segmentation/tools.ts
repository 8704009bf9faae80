import { SegmentationError } from './errors.ts';

/**
 * The kernel's firewall tools. `netns` runs them inside a named network namespace (`ip netns exec`), which is
 * how the tests and the benchmark keep their rules off the host; the appliance leaves it unset.
 */
export interface FirewallTools {
  run(
    cmd: 'iptables-restore' | 'iptables-save' | 'ipset',
    args: readonly string[],
    input?: string,
  ): Promise<string>;
}

export function systemFirewallTools(options: { netns?: string } = {}): FirewallTools {
  return {
    async run(cmd, args, input) {
      const [file, argv] = options.netns
        ? ['ip', ['netns', 'exec', options.netns, cmd, ...args]]
        : [cmd, [...args]];
      // execa is loaded on first use: CLI commands that never run a firewall tool do not pay for it.
      const { ExecaError, execa } = await import('execa');
      try {
        const r = await execa(file, argv, { input, timeout: 60_000, maxBuffer: 256 * 1024 * 1024 });
        return r.stdout;
      } catch (err) {
        if (err instanceof ExecaError) {
          const why =
            String(err.stderr ?? '')
              .trim()
              .split('\n')[0] ||
            err.shortMessage ||
            err.message;
          const code =
            err.code === 'ENOENT' || /Permission denied|not permitted/i.test(why)
              ? 'ERR_FIREWALL_TOOL'
              : 'ERR_FIREWALL_TOOL_FAILED';
          throw new SegmentationError(code, `${cmd} ${args[0] ?? ''}: ${why}`.trim(), { cause: err });
        }
        throw err;
      }
    },
  };
}
