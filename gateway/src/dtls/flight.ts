import { ContentType, HANDSHAKE_HEADER_LENGTH, MAX_PLAINTEXT } from './constants.ts';
import { fragmentHandshake } from './handshake.ts';

/** One message of a flight: a handshake message (header included), a ChangeCipherSpec, in its epoch. */
export interface FlightItem {
  epoch: 0 | 1;
  type: number;
  payload: Buffer;
}

/** How the connection that owns a flight frames its records. */
export interface RecordSink {
  /** The length of a record carrying `payloadLength` bytes in `epoch`. */
  recordLength(epoch: 0 | 1, payloadLength: number): number;
  /** Writes the next record of `epoch` (taking its sequence number) at `offset`; returns its length. */
  writeRecord(epoch: 0 | 1, type: number, payload: Buffer, out: Buffer, offset: number): number;
  sendDatagram(datagram: Buffer): void;
}

// The records of the datagram being put together. transmitFlight runs to the end without yielding, so one set
// serves every connection.
const queuedEpochs: Array<0 | 1> = [];
const queuedTypes: number[] = [];
const queuedPayloads: Buffer[] = [];

/**
 * Sends a flight in as few datagrams as the MTU allows, fragmenting handshake messages to fit the MTU and the
 * peer's record size limit (`maxRecordPayload`: max_fragment_length or record_size_limit, RFC 6066 / RFC 8449).
 * Each datagram is one allocation, its records written (and sealed) in place.
 */
export function transmitFlight(
  items: readonly FlightItem[],
  mtu: number,
  sink: RecordSink,
  maxRecordPayload = MAX_PLAINTEXT,
): void {
  let used = 0;
  queuedPayloads.length = 0;
  try {
    for (const item of items) {
      const overhead = sink.recordLength(item.epoch, 0);
      const maxBody = Math.min(mtu - overhead, maxRecordPayload) - HANDSHAKE_HEADER_LENGTH;
      if (item.type === ContentType.handshake && item.payload.length - HANDSHAKE_HEADER_LENGTH > maxBody) {
        for (const piece of fragmentHandshake(item.payload, maxBody)) {
          used = queue(sink, item.epoch, item.type, piece, overhead, used, mtu);
        }
      } else {
        used = queue(sink, item.epoch, item.type, item.payload, overhead, used, mtu);
      }
    }
    if (used > 0) flush(sink, used);
  } finally {
    queuedPayloads.length = 0;
  }
}

function queue(
  sink: RecordSink,
  epoch: 0 | 1,
  type: number,
  payload: Buffer,
  overhead: number,
  used: number,
  mtu: number,
): number {
  let size = used;
  if (size > 0 && size + overhead + payload.length > mtu) {
    flush(sink, size);
    size = 0;
  }
  const n = queuedPayloads.length;
  queuedEpochs[n] = epoch;
  queuedTypes[n] = type;
  queuedPayloads[n] = payload;
  return size + overhead + payload.length;
}

function flush(sink: RecordSink, size: number): void {
  const datagram = Buffer.allocUnsafe(size);
  let at = 0;
  for (let i = 0; i < queuedPayloads.length; i++) {
    at += sink.writeRecord(
      queuedEpochs[i] as 0 | 1,
      queuedTypes[i] as number,
      queuedPayloads[i] as Buffer,
      datagram,
      at,
    );
  }
  queuedPayloads.length = 0;
  // Never more than the records written: the buffer was not zeroed.
  sink.sendDatagram(at === size ? datagram : datagram.subarray(0, at));
}
