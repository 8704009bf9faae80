/**
 * RFC 6347 §4.1.2.6 sliding anti-replay window of 64 sequence numbers. `check` before decrypting (cheap
 * reject), `accept` only after the record authenticated, so forged records cannot move the window.
 */
export class ReplayWindow {
  private top = -1;
  private bits = 0n;

  check(seq: number): boolean {
    if (seq > this.top) return true;
    const diff = this.top - seq;
    if (diff >= 64) return false;
    return ((this.bits >> BigInt(diff)) & 1n) === 0n;
  }

  /** Records `seq` as seen. Returns true when it is the newest so far (RFC 9146 address update rule). */
  accept(seq: number): boolean {
    if (seq > this.top) {
      const shift = seq - this.top;
      this.bits = shift >= 64 ? 1n : ((this.bits << BigInt(shift)) | 1n) & 0xffffffffffffffffn;
      this.top = seq;
      return true;
    }
    this.bits |= 1n << BigInt(this.top - seq);
    return false;
  }
}
