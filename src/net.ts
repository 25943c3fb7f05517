/** Address parsing shared by every listener flag (--xds-address, --admin-address, --address). */
import { ErrorCode, ReadygateError } from './errors.js';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** Parses `HOST:PORT` or `[IPv6]:PORT`; port 0 means "any free port". */
export function parseHostPort(value: string): HostPort {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (!match || host === undefined || !Number.isInteger(port) || port > 65535) {
    throw new ReadygateError(
      ErrorCode.CONFIG_INVALID,
      `invalid address "${value}": expected HOST:PORT, e.g. 127.0.0.1:18000`,
    );
  }
  return { host, port };
}

export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
