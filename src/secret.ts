import { inspect } from 'node:util';

/**
 * Holds a PIN or secret key so that it cannot be printed by accident: logging, JSON,
 * string interpolation and util.inspect all show a placeholder. Only reveal() gives the value.
 */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  toString(): string {
    return '[redacted]';
  }
  toJSON(): string {
    return '[redacted]';
  }
  [inspect.custom](): string {
    return 'Secret([redacted])';
  }
}
