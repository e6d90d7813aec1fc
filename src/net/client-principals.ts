import type { Socket } from 'node:net';
import { clientCommonNames, isSecureTransport } from './listener.js';

/**
 * Binds mutual-TLS client identities to SigV4 principals: with a mapping configured, a request
 * is served only when its signer is listed for the CN of the certificate its connection
 * presented, so a stolen access key alone is not enough. Without a mapping, every check passes;
 * the Unix socket (no TLS, mode 0600) is not subject to it.
 */
export type PrincipalCheck = (socket: Socket, principalArn: string) => boolean;

export function clientPrincipalCheck(map: Record<string, string[]> | undefined): PrincipalCheck | undefined {
  if (!map) return undefined;
  const allowed = new Map(Object.entries(map).map(([cn, arns]) => [cn, new Set(arns)]));
  return (socket, principalArn) => !isSecureTransport(socket) || clientCommonNames(socket).some((cn) => allowed.get(cn)?.has(principalArn) === true);
}
