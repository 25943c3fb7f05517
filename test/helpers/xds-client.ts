/**
 * A raw ADS client over grpc-js for protocol tests: sends exactly the requests a test writes (or raw
 * bytes) and exposes decoded responses one at a time, with bounded waits.
 */
import * as grpc from '@grpc/grpc-js';
import { codecFor } from '../../src/protos/envoy-protos.js';
import {
  DELTA_DISCOVERY_REQUEST,
  DELTA_DISCOVERY_RESPONSE,
  DISCOVERY_REQUEST,
  DISCOVERY_RESPONSE,
} from '../../src/xds/messages.js';
import { DELTA_METHOD_PATH, SOTW_METHOD_PATH } from '../../src/xds/server.js';
import { messageNameOf, type TypeUrl } from '../../src/xds/resource-types.js';

export interface DecodedAny {
  type_url: string;
  value: Buffer;
}

export interface SotwResponse {
  version_info?: string;
  resources: DecodedAny[];
  type_url?: string;
  nonce?: string;
}

export interface DeltaResponse {
  system_version_info?: string;
  resources: { name?: string; version?: string; resource?: DecodedAny }[];
  type_url?: string;
  nonce?: string;
  removed_resources: string[];
}

export interface StreamEnd {
  code: number;
  details: string;
}

/** Decodes an Any's payload with the message type its type URL names; T is the shape the test expects. */
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- a typed view for assertions
export function unpack<T = Record<string, unknown>>(any: DecodedAny): T {
  return codecFor<T>(messageNameOf(any.type_url as TypeUrl)).decode(any.value);
}

class RawStream<Req, Res> {
  readonly #call: grpc.ClientDuplexStream<Req | Buffer, Res>;
  readonly #queue: Res[] = [];
  readonly #waiters: ((r: Res | StreamEnd) => void)[] = [];
  end: StreamEnd | undefined;

  constructor(call: grpc.ClientDuplexStream<Req | Buffer, Res>) {
    this.#call = call;
    call.on('data', (response: Res) => {
      const waiter = this.#waiters.shift();
      if (waiter) waiter(response);
      else this.#queue.push(response);
    });
    const onEnd = (end: StreamEnd): void => {
      this.end ??= end;
      for (const waiter of this.#waiters.splice(0)) waiter(this.end);
    };
    call.on('error', (error: grpc.ServiceError) => {
      onEnd({ code: error.code, details: error.details });
    });
    call.on('status', (status: grpc.StatusObject) => {
      onEnd({ code: status.code, details: status.details });
    });
  }

  send(request: Req): void {
    this.#call.write(request);
  }

  /** Writes bytes as-is, as if they were an encoded request. */
  sendRaw(bytes: Buffer): void {
    this.#call.write(bytes);
  }

  /** The next response; rejects after `timeoutMs` or if the stream ends first. */
  async next(timeoutMs = 3000): Promise<Res> {
    const queued = this.#queue.shift();
    if (queued !== undefined) return queued;
    if (this.end) throw new Error(`stream ended: ${this.end.code} ${this.end.details}`);
    return new Promise<Res>((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(new Error(`no response within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = (r: Res | StreamEnd): void => {
        clearTimeout(timer);
        const end = this.end;
        if (end !== undefined && r === end) reject(new Error(`stream ended: ${end.code} ${end.details}`));
        else resolve(r as Res);
      };
      this.#waiters.push(waiter);
    });
  }

  /** Resolves true if no response arrives within `ms` (the server correctly stayed silent). */
  async silentFor(ms: number): Promise<boolean> {
    if (this.#queue.length > 0) return false;
    try {
      await this.next(ms);
      return false;
    } catch {
      return this.#queue.length === 0;
    }
  }

  /** Waits for the stream to end (bounded). */
  async ended(timeoutMs = 3000): Promise<StreamEnd> {
    const deadline = Date.now() + timeoutMs;
    while (!this.end && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    if (!this.end) throw new Error('stream did not end');
    return this.end;
  }

  close(): void {
    this.#call.cancel();
  }
}

function encoderOrRaw(name: string): (value: unknown) => Buffer {
  const codec = codecFor<Record<string, unknown>>(name);
  return (value) => (Buffer.isBuffer(value) ? value : codec.encode(value as Record<string, unknown>));
}

const clientDefinition = {
  sotw: {
    path: SOTW_METHOD_PATH,
    requestStream: true,
    responseStream: true,
    requestSerialize: encoderOrRaw(DISCOVERY_REQUEST),
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => codecFor<SotwResponse>(DISCOVERY_RESPONSE).decode(b),
  },
  delta: {
    path: DELTA_METHOD_PATH,
    requestStream: true,
    responseStream: true,
    requestSerialize: encoderOrRaw(DELTA_DISCOVERY_REQUEST),
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => codecFor<DeltaResponse>(DELTA_DISCOVERY_RESPONSE).decode(b),
  },
};

const Client = grpc.makeGenericClientConstructor(clientDefinition, 'ads');

export type SotwRequestInput = {
  node?: { id: string; cluster?: string; metadata?: { fields: Record<string, Record<string, unknown>> } };
  type_url: string;
  resource_names?: string[];
  version_info?: string;
  response_nonce?: string;
  error_detail?: { code: number; message: string };
};

export type DeltaRequestInput = {
  node?: { id: string; cluster?: string; metadata?: { fields: Record<string, Record<string, unknown>> } };
  type_url: string;
  resource_names_subscribe?: string[];
  resource_names_unsubscribe?: string[];
  initial_resource_versions?: Record<string, string>;
  response_nonce?: string;
  error_detail?: { code: number; message: string };
};

export class XdsTestClient {
  readonly #client: grpc.Client;

  /** Plain h2c unless `credentials` (e.g. grpc.credentials.createSsl for a TLS port) say otherwise. */
  constructor(
    address: string,
    credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
    options: grpc.ChannelOptions = {},
  ) {
    this.#client = new Client(address, credentials, options);
  }

  sotw(): RawStream<SotwRequestInput, SotwResponse> {
    const open = (
      this.#client as unknown as Record<
        string,
        () => grpc.ClientDuplexStream<SotwRequestInput | Buffer, SotwResponse>
      >
    )['sotw']!;
    return new RawStream(open.call(this.#client));
  }

  delta(): RawStream<DeltaRequestInput, DeltaResponse> {
    const open = (
      this.#client as unknown as Record<
        string,
        () => grpc.ClientDuplexStream<DeltaRequestInput | Buffer, DeltaResponse>
      >
    )['delta']!;
    return new RawStream(open.call(this.#client));
  }

  close(): void {
    this.#client.close();
  }
}

export type { RawStream };
