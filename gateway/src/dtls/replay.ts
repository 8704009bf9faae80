/**
 * RFC 6347 §4.1.2.6 sliding anti-replay window of 64 sequence numbers. `check` before decrypting (cheap
 * reject), `accept` only after the record authenticated, so forged records cannot move the window.
 * The 64 bits live in two 32-bit halves (bit i: top - i seen): numbers, not a BigInt, because every record
 * of every session passes here and a BigInt operation allocates.
 */
export class ReplayWindow {
  private top = -1;
  /** Bits 0–31: the record at top - i was seen. */
  private low = 0;
  /** Bits 32–63. */
  private high = 0;

  check(seq: number): boolean {
    if (seq > this.top) return true;
    const diff = this.top - seq;
    if (diff >= 64) return false;
    const bit = diff < 32 ? this.low >>> diff : this.high >>> (diff - 32);
    return (bit & 1) === 0;
  }

  /** Records `seq` as seen. Returns true when it is the newest so far (RFC 9146 address update rule). */
  accept(seq: number): boolean {
    if (seq > this.top) {
      const shift = seq - this.top;
      if (shift >= 64) {
        this.high = 0;
        this.low = 0;
      } else if (shift >= 32) {
        this.high = shift === 32 ? this.low : this.low << (shift - 32);
        this.low = 0;
      } else {
        this.high = (this.high << shift) | (this.low >>> (32 - shift));
        this.low <<= shift;
      }
      this.low |= 1;
      this.top = seq;
      return true;
    }
    const diff = this.top - seq;
    if (diff < 32) this.low |= 1 << diff;
    else if (diff < 64) this.high |= 1 << (diff - 32);
    return false;
  }
}
