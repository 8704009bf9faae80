import { Reader } from '../bytes.ts';
import {
  AlertDescription,
  CertificateType,
  ECDSA_SECP256R1_SHA256,
  ExtensionType,
  MAX_PLAINTEXT,
  NamedGroup,
  RENEGOTIATION_SCSV,
} from '../constants.ts';
import { DtlsError, decodeError } from '../errors.ts';
import { type ClientHello, parseU8List, parseU16List } from '../handshake.ts';
import type { ResolvedOptions } from '../options.ts';

/** What a ClientHello offers, read from its extensions (with the defaults RFC 5246 and RFC 8422 give when absent). */
export interface HelloOffer {
  extendedMasterSecret: boolean;
  /** renegotiation_info (empty) or the SCSV was sent: the ServerHello answers with an empty one (RFC 5746). */
  secureRenegotiation: boolean;
  signatureAlgorithms: number[];
  groups: number[];
  /** ec_point_formats was sent (and lists uncompressed): the ServerHello echoes it for an ECDHE suite. */
  pointFormats: boolean;
  /** The certificate types the client can send (client_certificate_type) and take (server_…), RFC 7250. */
  clientCertTypes: number[];
  serverCertTypes: number[];
  clientCertTypeSent: boolean;
  serverCertTypeSent: boolean;
}

/** The peer's record size limit (RFC 6066, RFC 8449) and what the ServerHello answers with. */
export interface SizeLimit {
  /** The largest record plaintext the peer takes. */
  sendLimit: number;
  /** Answer record_size_limit with ours. */
  echoRecordSizeLimit: boolean;
  /** Echo max_fragment_length with this code, or null. */
  echoMaxFragmentLength: number | null;
}

/** An extension's list of 16-bit values, or `absent`'s when the client did not send it. */
function u16s(ext: ClientHello['extensions'], type: number, what: string, absent: number[]): number[] {
  const data = ext.get(type);
  return data ? parseU16List(data, what) : absent;
}

function u8s(ext: ClientHello['extensions'], type: number, what: string, absent: number[]): number[] {
  const data = ext.get(type);
  return data ? parseU8List(data, what) : absent;
}

function fail(code: string, message: string, alert: number): DtlsError {
  return new DtlsError(code, message, alert);
}

/**
 * Reads what the ClientHello offers. Refuses what this server never does: compression, renegotiation, a client
 * without Extended Master Secret when it is required, points other than uncompressed.
 */
export function readHelloOffer(hello: ClientHello, o: ResolvedOptions): HelloOffer {
  if (hello.compressionMethods.indexOf(0) < 0) {
    throw fail(
      'ERR_DTLS_COMPRESSION',
      'client offers no null compression',
      AlertDescription.illegalParameter,
    );
  }
  const ext = hello.extensions;
  const reneg = ext.get(ExtensionType.renegotiationInfo);
  if (reneg && !(reneg.length === 1 && reneg[0] === 0)) {
    throw fail('ERR_DTLS_RENEGOTIATION', 'renegotiation is not supported', AlertDescription.handshakeFailure);
  }
  const extendedMasterSecret = ext.has(ExtensionType.extendedMasterSecret);
  if (o.requireExtendedMasterSecret && !extendedMasterSecret) {
    throw fail(
      'ERR_DTLS_EMS_REQUIRED',
      'client does not offer Extended Master Secret',
      AlertDescription.handshakeFailure,
    );
  }
  const signatureAlgorithms = u16s(ext, ExtensionType.signatureAlgorithms, 'signature_algorithms', [
    ECDSA_SECP256R1_SHA256,
  ]);
  const groups = u16s(ext, ExtensionType.supportedGroups, 'supported_groups', [NamedGroup.secp256r1]);
  const pointFormats = ext.has(ExtensionType.ecPointFormats);
  if (pointFormats && !u8s(ext, ExtensionType.ecPointFormats, 'ec_point_formats', []).includes(0)) {
    throw decodeError('ec_point_formats (no uncompressed)');
  }
  return {
    extendedMasterSecret,
    secureRenegotiation: reneg !== undefined || hello.cipherSuites.includes(RENEGOTIATION_SCSV),
    signatureAlgorithms,
    groups,
    pointFormats,
    clientCertTypes: u8s(ext, ExtensionType.clientCertificateType, 'client_certificate_type', [
      CertificateType.x509,
    ]),
    serverCertTypes: u8s(ext, ExtensionType.serverCertificateType, 'server_certificate_type', [
      CertificateType.x509,
    ]),
    clientCertTypeSent: ext.has(ExtensionType.clientCertificateType),
    serverCertTypeSent: ext.has(ExtensionType.serverCertificateType),
  };
}

/** RFC 8449 §5: with both, record_size_limit wins and max_fragment_length is ignored (not echoed). */
export function readSizeLimit(hello: ClientHello): SizeLimit {
  const rsl = hello.extensions.get(ExtensionType.recordSizeLimit);
  const mfl = hello.extensions.get(ExtensionType.maxFragmentLength);
  if (rsl) {
    if (rsl.length !== 2) throw decodeError('record_size_limit');
    const limit = rsl.readUInt16BE(0);
    if (limit < 64) {
      throw fail(
        'ERR_DTLS_RECORD_SIZE_LIMIT',
        'record_size_limit below 64',
        AlertDescription.illegalParameter,
      );
    }
    return {
      sendLimit: Math.min(MAX_PLAINTEXT, limit),
      echoRecordSizeLimit: true,
      echoMaxFragmentLength: null,
    };
  }
  if (mfl) {
    const code = mfl.length === 1 ? (mfl[0] as number) : 0;
    if (code < 1 || code > 4) {
      throw fail(
        'ERR_DTLS_MAX_FRAGMENT_LENGTH',
        'max_fragment_length is not one of 2^9..2^12',
        AlertDescription.illegalParameter,
      );
    }
    return { sendLimit: 1 << (8 + code), echoRecordSizeLimit: false, echoMaxFragmentLength: code };
  }
  return { sendLimit: MAX_PLAINTEXT, echoRecordSizeLimit: false, echoMaxFragmentLength: null };
}

/**
 * The client's connection_id extension (RFC 9146 §3): undefined when it sent none, else its own CID for the
 * records we send (null when it sent an empty one: it wants none on ours).
 */
export function readConnectionId(hello: ClientHello): Buffer | null | undefined {
  const data = hello.extensions.get(ExtensionType.connectionId);
  if (!data) return undefined;
  const r = new Reader(data, 'connection_id');
  const peerCid = r.vec8();
  r.end();
  // A copy of the datagram's bytes, moved into the session's own allocation once established (packSession).
  return peerCid.length > 0 ? Buffer.from(peerCid) : null;
}
