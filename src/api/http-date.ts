import type { Clock } from '../clock.js';

/**
 * The HTTP Date header from the injected clock (SigV4 checks use that clock; SDKs correct their
 * skew from Date), made once per second of it: Date#toUTCString cost 7.2 µs per request under
 * the loaded machine's Encrypt bench row (2.6 % of the main thread), the cached text 0.17 µs.
 */
export function httpDate(clock: Clock): () => string {
  let second = NaN;
  let text = '';
  return () => {
    const now = Math.floor(clock.now().getTime() / 1000);
    if (now !== second) {
      second = now;
      text = new Date(now * 1000).toUTCString();
    }
    return text;
  };
}
