import pkcs11js from 'pkcs11js';
import { KmsError } from '../../errors.js';
import type { TokenCore } from '../session-core.js';

export interface TokenObjectInfo {
  id: Buffer;
  label: string;
}

/**
 * Objects by id and label: destruction, listing for reconciliation, and the token data objects
 * (CKO_DATA) of the audit trail (issue 7), whose seal key and chain head live in the token too.
 */
export class DataObjectVerbs {
  constructor(private readonly core: TokenCore) {}

  /** Destroys every object with this CKA_ID; returns how many there were. */
  destroy(id: Buffer): Promise<number> {
    return this.core.run((s) => {
      this.core.handles.delete(id.toString('hex'));
      this.core.forgetObjects(id);
      const found = this.core.find(s, [{ type: pkcs11js.CKA_ID, value: id }]);
      for (const h of found) this.core.p.C_DestroyObject(s, h);
      return found.length;
    });
  }

  /** Token objects whose CKA_LABEL starts with the prefix: used by start-up reconciliation. */
  listObjects(labelPrefix: string): Promise<TokenObjectInfo[]> {
    return this.core.run((s) =>
      this.core.find(s, [{ type: pkcs11js.CKA_TOKEN, value: true }]).flatMap((h) => {
        // Label first: objects without CKA_ID (data objects, e.g. the audit chain head) must not fail the listing.
        const [label] = this.core.p.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_LABEL }]);
        const text = (label?.value as Buffer | undefined)?.toString('utf8') ?? '';
        if (!text.startsWith(labelPrefix)) return [];
        const [id] = this.core.p.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_ID }]);
        return [{ id: (id?.value as Buffer) ?? Buffer.alloc(0), label: text }];
      }),
    );
  }

  /** Whether a secret key object with this CKA_ID exists (used to find the audit seal key). */
  hasKey(id: Buffer): Promise<boolean> {
    return this.core.run((s) => {
      try {
        this.core.handleFor(s, id);
        return true;
      } catch (e) {
        if (e instanceof KmsError) return false;
        throw e;
      }
    });
  }

  /** The values of the token data objects (CKO_DATA) with this label: normally one (see writeDataObject). */
  readDataObjects(label: string): Promise<Buffer[]> {
    return this.core.run((s) =>
      this.core.find(s, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_LABEL, value: label },
      ]).map((h) => (this.core.p.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_VALUE }])[0]?.value as Buffer) ?? Buffer.alloc(0)),
    'none', 'read-data');
  }

  /**
   * Replaces the private token data object with this label (created first, then the old one
   * destroyed, so a crash leaves the old or both, never neither). Not secret, but only a
   * logged-in user can change it.
   */
  writeDataObject(label: string, value: Buffer): Promise<void> {
    return this.core.run((s) => {
      const template: pkcs11js.Template = [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_LABEL, value: label },
      ];
      const old = this.core.find(s, template);
      this.core.p.C_CreateObject(s, [...template, { type: pkcs11js.CKA_PRIVATE, value: true }, { type: pkcs11js.CKA_VALUE, value }]);
      for (const h of old) this.core.p.C_DestroyObject(s, h);
    }, 'none', 'write-data');
  }
}
