import { isIP } from 'node:net';

/** Loopback addresses: 127.0.0.0/8, ::1 and IPv4-mapped 127.x (a peer's address or a listener's). */
export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (isIP(a) === 4) return a.startsWith('127.');
  return a === '::1';
}

/** A listener address where plain HTTP never leaves the host: a loopback address or `localhost`. */
export const isLoopbackHost = (host: string): boolean => host === 'localhost' || isLoopback(host);
