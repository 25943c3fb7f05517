/** The IPC messages of test/helpers/ads-server-process.ts, and the endpoint address each edit sets. */

export interface ServerStats {
  readonly rss: number;
  readonly limits: Readonly<Record<string, number>>;
}

export type ServerMessage = { readonly ready: number } | { readonly stats: ServerStats };
export type ServerCommand = { readonly edit: number } | { readonly stats: true };

export const editedAddress = (n: number): string => `10.0.${(n >> 8) & 255}.${n & 255}`;
