import { DtlsError } from './errors.ts';
import type { FlightItem } from './flight.ts';
import type { RetransmitPolicy } from './types.ts';

/** What the retransmission timer drives: the connection that owns the flight. */
export interface FlightOwner {
  /** Whether the handshake is still running (a timer that fires after it ended does nothing). */
  readonly handshaking: boolean;
  /** Sends the flight's records again. */
  transmit(items: readonly FlightItem[]): void;
  /** Ends the handshake: the peer stopped answering, or a retransmission failed. */
  abort(err: unknown): void;
}

/**
 * The server's last flight and the RFC 6347 §4.2.4 timer that resends it: doubling from `initialMs` up to
 * `maxMs`, at most `maxRetransmits` times, and never past the deadline for the client's next flight
 * (`handshakeTimeoutMs`). A peer that re-sends its own flight also prompts a resend (its copy of ours was
 * lost); those count too, so a peer cannot make us amplify forever.
 */
export class Retransmitter {
  /** Kept for resending: the handshake's pending flight, or the final one until the peer shows it arrived. */
  private flight: readonly FlightItem[] | null = null;
  private timer: NodeJS.Timeout | null = null;
  private retransmits = 0;
  private timeoutMs: number;
  /** When the client's next flight is due (set when we send a flight that expects one). */
  private deadline = Number.POSITIVE_INFINITY;

  constructor(
    private readonly policy: RetransmitPolicy,
    private readonly handshakeTimeoutMs: number,
    private readonly now: () => number,
    private readonly owner: FlightOwner,
  ) {
    this.timeoutMs = policy.initialMs;
  }

  /** Whether a flight is held for resending. */
  get holding(): boolean {
    return this.flight !== null;
  }

  /** Sends a new flight; with `expectReply` the timer runs until the peer's next flight (or the deadline). */
  send(items: readonly FlightItem[], expectReply: boolean): void {
    this.flight = items;
    this.retransmits = 0;
    this.timeoutMs = this.policy.initialMs;
    this.owner.transmit(items);
    if (expectReply) {
      this.deadline = this.now() + this.handshakeTimeoutMs;
      this.arm();
    }
  }

  /** Resends the flight because the peer's retransmission shows ours was lost. */
  resend(): void {
    if (!this.flight) return;
    if (++this.retransmits > this.policy.maxRetransmits * 2) return;
    this.owner.transmit(this.flight);
  }

  /** Stops the timer: the peer's flight arrived (or the connection ends). The flight may still be resent. */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Stops the timer and drops the flight: nothing is left to resend. */
  release(): void {
    this.stop();
    this.flight = null;
  }

  private arm(): void {
    this.stop();
    // The next retransmission, or the deadline if it comes first.
    const delay = Math.max(0, Math.min(this.timeoutMs, this.deadline - this.now()));
    this.timer = setTimeout(Retransmitter.fired, delay, this);
    this.timer.unref();
  }

  private static fired(r: Retransmitter): void {
    r.onTimer();
  }

  private onTimer(): void {
    this.timer = null;
    if (!this.owner.handshaking) return;
    if (this.now() >= this.deadline) {
      this.owner.abort(timeout('peer did not send its next flight before the deadline'));
      return;
    }
    if (this.retransmits >= this.policy.maxRetransmits) {
      this.owner.abort(timeout('peer stopped answering during the handshake'));
      return;
    }
    this.retransmits++;
    try {
      if (this.flight) this.owner.transmit(this.flight);
    } catch (err) {
      this.owner.abort(err);
      return;
    }
    this.timeoutMs = Math.min(this.timeoutMs * 2, this.policy.maxMs);
    this.arm();
  }
}

/** A timeout is no protocol error: no alert goes out (-1). */
function timeout(message: string): DtlsError {
  return new DtlsError('ERR_DTLS_HANDSHAKE_TIMEOUT', message, -1);
}
