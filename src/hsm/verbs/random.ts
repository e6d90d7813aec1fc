import type { TokenCore } from '../session-core.js';

/** The token's random number generator. */
export class RandomVerbs {
  constructor(private readonly core: TokenCore) {}

  /** Random bytes from the token's RNG. */
  random(n: number): Promise<Buffer> {
    return this.core.run((s) => this.core.p.C_GenerateRandom(s, Buffer.alloc(n)), 'rng', 'random');
  }
}
