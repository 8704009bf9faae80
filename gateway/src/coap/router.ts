import type { DtlsSessionInfo } from '../dtls/index.ts';

export type CoapMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

export interface CoapRequest {
  method: CoapMethod;
  /** Uri-Path segments joined with '/', with a leading '/'. */
  path: string;
  query: string[];
  contentFormat: number | null;
  payload: Buffer;
  session: DtlsSessionInfo;
  confirmable: boolean;
}

export interface CoapResponse {
  /** Response code as "class.detail", e.g. "2.04". */
  code: string;
  payload?: Buffer;
  contentFormat?: number;
  /** Max-Age in seconds: with 4.29 Too Many Requests, when the client may try again (RFC 8516 §4). */
  maxAge?: number;
}

export type CoapHandler = (req: CoapRequest) => CoapResponse | Promise<CoapResponse>;

/**
 * Resource router: exact paths, and collections registered as `/prefix/*` (the rest of the path is the
 * handler's to read). A path with no resource is 4.04, a known path with another method 4.05.
 */
export class CoapRouter {
  private readonly routes = new Map<string, Map<CoapMethod, CoapHandler>>();

  on(method: CoapMethod, path: string, handler: CoapHandler): this {
    let byMethod = this.routes.get(path);
    if (!byMethod) {
      byMethod = new Map();
      this.routes.set(path, byMethod);
    }
    byMethod.set(method, handler);
    return this;
  }

  resolve(method: CoapMethod, path: string): CoapHandler | '4.04' | '4.05' {
    const slash = path.lastIndexOf('/');
    const collection = slash > 0 && slash < path.length - 1 ? `${path.slice(0, slash)}/*` : undefined;
    const byMethod = this.routes.get(path) ?? (collection ? this.routes.get(collection) : undefined);
    if (!byMethod) return '4.04';
    return byMethod.get(method) ?? '4.05';
  }
}
