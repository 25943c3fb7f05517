/**
 * Address parsing shared by every listener (--xds-address, --admin-address, --address) and the config
 * validation, so a flag and a library caller accept exactly the same addresses.
 */
import { isIP } from 'node:net';
import { ErrorCode, ReadygateError } from './errors.js';

export interface HostPort {
  readonly host: string;
  readonly port: number;
  /** `host:port`, IPv6 hosts bracketed: what gRPC's bind and Node's listen helpers expect. */
  readonly address: string;
}

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$/;

/** Parses `HOST:PORT` or `[IPv6]:PORT` (port 0 = any free port); returns what is wrong as a string. */
export function checkHostPort(text: string): HostPort | string {
  const problem = `"${text}" is not HOST:PORT (example: 127.0.0.1:18000, [::1]:18000)`;
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(text);
  const plain = /^([^:[\]]+):(\d+)$/.exec(text);
  const match = bracketed ?? plain;
  if (!match) return problem;
  const host = match[1] ?? '';
  const portText = match[2] ?? '';
  if (bracketed && isIP(host) !== 6) return `"${text}": "${host}" is not an IPv6 address`;
  if (plain && isIP(host) === 0 && !HOSTNAME.test(host))
    return `"${text}": "${host}" is not a host name or IP address`;
  const port = Number(portText);
  if (portText.length > 5 || port > 65535) return `"${text}": port ${portText} is out of range 0-65535`;
  return Object.freeze({ host, port, address: formatHostPort(host, port) });
}

/** Like checkHostPort, but throws a CONFIG_INVALID ReadygateError. */
export function parseHostPort(text: string): HostPort {
  const result = checkHostPort(text);
  if (typeof result === 'string')
    throw new ReadygateError(ErrorCode.CONFIG_INVALID, `invalid address ${result}`);
  return result;
}

export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
