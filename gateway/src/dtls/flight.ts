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

/** The records of the datagram being put together, and its size once written. */
interface Datagram {
  records: FlightItem[];
  size: number;
}

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
  const d: Datagram = { records: [], size: 0 };
  for (const item of items) {
    const overhead = sink.recordLength(item.epoch, 0);
    const maxBody = Math.min(mtu - overhead, maxRecordPayload) - HANDSHAKE_HEADER_LENGTH;
    if (item.type === ContentType.handshake && item.payload.length - HANDSHAKE_HEADER_LENGTH > maxBody) {
      for (const piece of fragmentHandshake(item.payload, maxBody)) {
        queue(sink, d, { epoch: item.epoch, type: item.type, payload: piece }, overhead, mtu);
      }
    } else {
      queue(sink, d, item, overhead, mtu);
    }
  }
  if (d.size > 0) flush(sink, d);
}

/** Adds a record to the datagram, sending the datagram first if the record would not fit in it. */
function queue(sink: RecordSink, d: Datagram, record: FlightItem, overhead: number, mtu: number): void {
  if (d.size > 0 && d.size + overhead + record.payload.length > mtu) flush(sink, d);
  d.records.push(record);
  d.size += overhead + record.payload.length;
}

function flush(sink: RecordSink, d: Datagram): void {
  const datagram = Buffer.allocUnsafe(d.size);
  let at = 0;
  for (const r of d.records) at += sink.writeRecord(r.epoch, r.type, r.payload, datagram, at);
  const size = d.size;
  d.records = [];
  d.size = 0;
  // Never more than the records written: the buffer was not zeroed.
  sink.sendDatagram(at === size ? datagram : datagram.subarray(0, at));
}
