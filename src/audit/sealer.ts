import { timingSafeEqual } from 'node:crypto';
import type { Token } from '../hsm/token.js';
import { HEAD_LABEL, parseAnchors, SEAL_KEY_ID, SEAL_KEY_LABEL, type Anchor } from './chain.js';

/** What the trail needs from the token: an HMAC key that never leaves it, and a place for the chain head. */
export interface Sealer {
  /** HMAC-SHA256 of the text, computed inside the token; hex. */
  mac(text: string): Promise<string>;
  /** Recomputes the MAC inside the token and compares in constant time. */
  verify(text: string, mac: string): Promise<boolean>;
  readAnchor(): Promise<Anchor | undefined>;
  writeAnchor(anchor: Anchor): Promise<void>;
}

/** The token's chain head of one node's trail: one per node when several daemons share the token. */
export const headLabelFor = (nodeId?: string): string => (nodeId ? `${HEAD_LABEL}:${nodeId}` : HEAD_LABEL);

export class TokenSealer implements Sealer {
  private constructor(
    private readonly token: Token,
    private readonly headLabel: string,
  ) {}

  /**
   * The daemon creates the audit key on first start (a 256-bit generic secret, sensitive and
   * non-extractable, usable only for HMAC). The verifier never creates it: a missing key means
   * the wrong token or a re-initialised one.
   */
  static async open(token: Token, create: boolean, nodeId?: string): Promise<TokenSealer> {
    if (!(await token.hasKey(SEAL_KEY_ID))) {
      if (!create) throw new Error(`The token has no audit seal key (${SEAL_KEY_LABEL}).`);
      await token.generateHmacKey(SEAL_KEY_ID, SEAL_KEY_LABEL, 32);
    }
    return new TokenSealer(token, headLabelFor(nodeId));
  }

  async mac(text: string): Promise<string> {
    return (await this.token.mac(SEAL_KEY_ID, 'sha256', Buffer.from(text, 'utf8'))).toString('hex');
  }

  async verify(text: string, mac: string): Promise<boolean> {
    const expected = Buffer.from(await this.mac(text), 'hex');
    const given = Buffer.from(mac, 'hex');
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  async readAnchor(): Promise<Anchor | undefined> {
    return parseAnchors(await this.token.readDataObjects(this.headLabel));
  }

  writeAnchor(anchor: Anchor): Promise<void> {
    return this.token.writeDataObject(this.headLabel, Buffer.from(JSON.stringify(anchor), 'utf8'));
  }
}
