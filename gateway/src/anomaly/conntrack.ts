import { createInterface } from 'node:readline';
import type { ResultPromise } from 'execa';
import type { Logger } from '../log.ts';

export interface ConntrackConnection {
  proto: 'tcp' | 'udp';
  src: string;
  dst: string;
  dport: number;
}

/**
 * One line of `conntrack -E -e NEW`, e.g.
 * `    [NEW] tcp      6 120 SYN_SENT src=10.20.0.7 dst=198.51.100.10 sport=39522 dport=8883 [UNREPLIED] src=…`.
 * The first src/dst/dport are the original direction (who opened it). Other protocols are not features here.
 */
export function parseConntrackLine(line: string): ConntrackConnection | undefined {
  const m = /\[NEW\]\s+(tcp|udp)\s.*?\bsrc=(\S+) dst=(\S+) sport=\d+ dport=(\d+)/.exec(line);
  if (!m) return undefined;
  return { proto: m[1] as 'tcp' | 'udp', src: m[2] as string, dst: m[3] as string, dport: Number(m[4]) };
}

/**
 * Connections devices open, from the kernel's connection tracking (`conntrack -E`, needs CAP_NET_ADMIN).
 * Only flows the firewall let through are tracked to the end: blocked attempts never become NEW events.
 */
export class ConntrackFeed {
  private child: ResultPromise | undefined;
  private stopped = false;

  constructor(
    private readonly onConnection: (c: ConntrackConnection) => void,
    private readonly logger: Logger,
  ) {}

  start(): void {
    // execa is loaded on first use, so a gateway that never watches conntrack does not pay for it.
    void import('execa').then(({ execa }) => {
      if (!this.stopped)
        this.follow(execa('conntrack', ['-E', '-e', 'NEW'], { buffer: false, reject: false }));
    });
  }

  private follow(child: ResultPromise<{ buffer: false; reject: false }>): void {
    this.child = child;
    child.catch(() => undefined);
    if (child.stdout) {
      createInterface({ input: child.stdout }).on('line', (line) => {
        const c = parseConntrackLine(line);
        if (c) this.onConnection(c);
      });
    }
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    void child.then((r) => {
      if (!this.stopped) {
        this.logger.error(
          { exitCode: r.exitCode, stderr: stderr.trim().split('\n')[0] },
          'conntrack event feed ended; connections are no longer observed',
        );
      }
    });
  }

  stop(): void {
    this.stopped = true;
    this.child?.kill();
  }
}
