import type { AeadKey } from './aead.ts';
import { AlertDescription, DTLS_1_2, MAX_PLAINTEXT, RECORD_HEADER_LENGTH } from './constants.ts';
import { DtlsError } from './errors.ts';
import { type FlightItem, type RecordSink, transmitFlight } from './flight.ts';
import {
  type DtlsRecord,
  encodeRecordInto,
  openRecord,
  sealedRecordLength,
  sealRecordInto,
} from './record.ts';
import { ReplayWindow } from './replay.ts';

const MAX_SEQ = 2 ** 48 - 1;

/** Where the record layer's datagrams go: the connection, which knows the peer's current address. */
export interface DatagramOut {
  sendDatagram(datagram: Buffer): void;
}

/** An epoch-1 record that authenticated: its real content type and plaintext, and whether it is the newest. */
export interface OpenedRecord {
  type: number;
  data: Buffer;
  /** The highest sequence number seen so far (RFC 9146 §6: only such a record may move the peer's address). */
  newest: boolean;
}

/**
 * One connection's record protection (RFC 6347 §4.1): the write epoch and sequence numbers, the keys of epoch 1,
 * the peer's Connection ID on records we send, the peer's record size limit, and the replay window of the
 * records we read. Epoch 0 is the clear handshake; epoch 1 is the only protected one (no renegotiation).
 */
export class RecordLayer implements RecordSink {
  /** The epoch of the records we send now: 1 once our ChangeCipherSpec went out. */
  writeEpoch: 0 | 1 = 0;
  /** The peer's own CID (RFC 9146), put on every protected record we send; null when none was agreed. */
  peerCid: Buffer | null = null;
  /**
   * The largest record plaintext the peer takes: 2^14, or what it asked for with max_fragment_length
   * (RFC 6066 §4) or record_size_limit (RFC 8449). Every record we send, handshake fragments included, fits.
   */
  sendLimit = MAX_PLAINTEXT;
  private readKey: AeadKey | null = null;
  private writeKey: AeadKey | null = null;
  /** The next record number we write, per epoch: two fields, not an array (64 bytes of every session). */
  private writeSeq0 = 0;
  private writeSeq1 = 0;
  private readonly replay = new ReplayWindow();

  constructor(
    private readonly mtu: number,
    private readonly out: DatagramOut,
  ) {}

  /**
   * The HelloVerifyRequest used the client's first record number; anything we send (an alert included) must
   * come after it or the client's replay window drops it.
   */
  continueAfter(recordSeq: number): void {
    this.writeSeq0 = recordSeq;
  }

  /** Installs epoch 1's keys (from the key block): reading under them starts now, writing at our CCS. */
  setKeys(read: AeadKey, write: AeadKey): void {
    this.readKey = read;
    this.writeKey = write;
  }

  /** Whether epoch-1 records can be opened yet. */
  get canRead(): boolean {
    return this.readKey !== null;
  }

  /** The keys' own bytes into the session's allocation (connection.ts packSession). */
  relocateKeys(move: (b: Buffer) => Buffer): void {
    this.readKey?.relocate(move);
    this.writeKey?.relocate(move);
  }

  /** Forgets the keys: the connection is closed. */
  clear(): void {
    this.readKey = null;
    this.writeKey = null;
  }

  /** The peer's plaintext limit per record; with a peer CID the inner content type takes one byte of it. */
  get payloadLimit(): number {
    return this.peerCid ? this.sendLimit - 1 : this.sendLimit;
  }

  /** The most application data one record carries within the peer's limit and the MTU. */
  get maxPayload(): number {
    const limit = this.payloadLimit;
    if (!this.writeKey) return limit;
    return Math.min(limit, this.mtu - this.recordLength(1, 0));
  }

  // ---------------------------------------------------------------- records out

  /** One record on its own (an alert, application data): writeRecord into a buffer of its size. */
  protect(epoch: 0 | 1, type: number, payload: Buffer): Buffer {
    const out = Buffer.allocUnsafe(this.recordLength(epoch, payload.length));
    this.writeRecord(epoch, type, payload, out, 0);
    return out;
  }

  /** Sends a flight's records, as few datagrams as the MTU allows. */
  transmit(items: readonly FlightItem[]): void {
    transmitFlight(items, this.mtu, this, this.payloadLimit);
    for (const item of items) if (item.epoch === 1) this.writeEpoch = 1;
  }

  // RecordSink, for transmitFlight.

  /** @internal */
  recordLength(epoch: 0 | 1, payloadLength: number): number {
    if (epoch === 0) return RECORD_HEADER_LENGTH + payloadLength;
    return sealedRecordLength(this.writeKey as AeadKey, payloadLength, this.peerCid);
  }

  /** @internal */
  writeRecord(epoch: 0 | 1, type: number, payload: Buffer, out: Buffer, offset: number): number {
    const seq = this.nextSeq(epoch);
    if (epoch === 0) return encodeRecordInto(type, DTLS_1_2, seq, payload, out, offset);
    return sealRecordInto(
      this.writeKey as AeadKey,
      type,
      DTLS_1_2,
      1,
      seq,
      payload,
      this.peerCid,
      out,
      offset,
    );
  }

  /** @internal */
  sendDatagram(datagram: Buffer): void {
    this.out.sendDatagram(datagram);
  }

  private nextSeq(epoch: 0 | 1): number {
    const seq = epoch === 0 ? this.writeSeq0 : this.writeSeq1;
    if (seq >= MAX_SEQ) {
      throw new DtlsError(
        'ERR_DTLS_SEQ_EXHAUSTED',
        'record sequence numbers exhausted',
        AlertDescription.internalError,
      );
    }
    if (epoch === 0) this.writeSeq0 = seq + 1;
    else this.writeSeq1 = seq + 1;
    return seq;
  }

  // ---------------------------------------------------------------- records in

  /**
   * Opens an epoch-1 record (canRead must hold): 'replay' for a number the window has seen, 'forged' when it
   * does not authenticate. The window moves only for a record that authenticated, so forgeries cannot move it.
   */
  open(rec: DtlsRecord): OpenedRecord | 'replay' | 'forged' {
    if (!this.replay.check(rec.seq)) return 'replay';
    const opened = openRecord(this.readKey as AeadKey, rec);
    if (!opened) return 'forged';
    return { type: opened.type, data: opened.data, newest: this.replay.accept(rec.seq) };
  }
}
