import { timingSafeEqual } from 'node:crypto';
import { Errors, isKmsError, KmsError } from '../errors.js';
import { AuthenticationFailed } from '../hsm/token.js';
import type { XksKeyBinding } from '../model/xks.js';
import type { KeyMaterialRecord, KeyRecord } from '../store/types.js';
import { isKeyId } from './arn.js';
import type { KmsDeps } from './context.js';
import { requireUsable } from './key-ref.js';
import { materialOf } from './material.js';
import {
  ciphertextDataIntegrityValue, encodeCiphertextMetadata, parseCiphertextMetadata, XKS_TAG_BYTES,
  xksTokenAad,
} from './xks-format.js';

/**
 * The cryptographic core of the External Key Store (XKS) proxy: external keys are the daemon's
 * own symmetric keys. HTTP, JSON, Base64 and SigV4 live in src/api/xks; this module takes and
 * returns bytes and throws the daemon's typed errors (the front door maps them to XKS errorNames).
 */

export type { XksKeyBinding };
/** The daemon key a binding resolves to: the XKS door holds it only to hand it back to the core and authorization. */
export type { KeyRecord as XksDaemonKey };

export interface XksKeyMetadata {
  keySpec: string;
  keyUsage: string[];
  keyStatus: 'ENABLED' | 'DISABLED';
}

export interface XksSealed {
  ciphertext: Buffer;
  initializationVector: Buffer;
  authenticationTag: Buffer;
  ciphertextMetadata: Buffer;
  /** SHA-256 digest (Appendix C) when it was asked for. */
  ciphertextDataIntegrityValue?: Buffer | undefined;
}

export interface XksDecryptInput {
  ciphertext: Buffer;
  initializationVector: Buffer;
  authenticationTag: Buffer;
  additionalAuthenticatedData?: Buffer | undefined;
  ciphertextMetadata?: Buffer | undefined;
}

const isSymmetric = (key: KeyRecord) => key.keySpec === 'SYMMETRIC_DEFAULT' && key.keyUsage === 'ENCRYPT_DECRYPT';

/**
 * Resolves bindings to key records. Key ids hit the store's in-memory cache; alias names are
 * looked up at most once a second per alias, so the hot path does no SQL either way.
 */
export class XksKeyResolver {
  private readonly aliasCache = new Map<string, { keyId: string | undefined; until: number }>();

  constructor(
    private readonly deps: KmsDeps,
    private readonly accountId: string,
    private readonly aliasTtlMs = 1000,
  ) {}

  resolve(binding: XksKeyBinding): KeyRecord {
    const keyId = binding.keyRef.startsWith('alias/') ? this.aliasTarget(binding.keyRef) : binding.keyRef;
    const key = keyId !== undefined && isKeyId(keyId) ? this.deps.store.getKey(keyId) : undefined;
    if (!key || key.accountId !== this.accountId || key.state === 'Creating') {
      throw Errors.notFound(`The external key ${binding.externalKeyId} is not found.`);
    }
    return key;
  }

  private aliasTarget(aliasName: string): string | undefined {
    const now = Date.now();
    const hit = this.aliasCache.get(aliasName);
    if (hit && hit.until > now) return hit.keyId;
    const keyId = this.deps.store.getAlias(this.accountId, aliasName)?.keyId;
    if (this.aliasCache.size > 1024) this.aliasCache.clear();
    this.aliasCache.set(aliasName, { keyId, until: now + this.aliasTtlMs });
    return keyId;
  }
}

/** GetKeyMetadata: keyStatus follows the daemon key's state; keyUsage follows the binding. */
export function xksKeyMetadata(key: KeyRecord, binding: XksKeyBinding): XksKeyMetadata {
  const keyUsage: string[] = [];
  let keySpec = key.keySpec;
  if (isSymmetric(key)) {
    keySpec = 'AES_256';
    if (binding.allowEncrypt) keyUsage.push('ENCRYPT');
    if (binding.allowDecrypt) keyUsage.push('DECRYPT');
  } else if (key.keyUsage === 'SIGN_VERIFY') {
    keyUsage.push('SIGN', 'VERIFY');
  }
  return { keySpec, keyUsage, keyStatus: key.state === 'Enabled' ? 'ENABLED' : 'DISABLED' };
}

function requireUsage(key: KeyRecord, binding: XksKeyBinding, op: 'encrypt' | 'decrypt'): void {
  const allowed = op === 'encrypt' ? binding.allowEncrypt : binding.allowDecrypt;
  if (!isSymmetric(key) || !allowed) {
    throw Errors.invalidKeyUsage(`The external key ${binding.externalKeyId} does not support ${op}.`);
  }
}

function currentMaterial(deps: KmsDeps, key: KeyRecord): KeyMaterialRecord {
  const material = materialOf(deps, key, key.currentVersion);
  if (!material) throw Errors.keyUnavailable(`The key material of the external key is unavailable.`);
  return material;
}

const integrityFailure = () => Errors.internal('The encrypt output failed its verification decrypt.');

/**
 * Encrypt: AES-256-GCM inside the token under the key's current material, with the spec's AAD
 * layout and our ciphertextMetadata. When a ciphertextDataIntegrityValue is asked for, it is
 * computed first and the output is then decrypted and compared (Appendix C, steps 1–4); a
 * failed verification is retried once from step 1, then reported as an internal error.
 */
export async function xksEncrypt(
  deps: KmsDeps,
  key: KeyRecord,
  binding: XksKeyBinding,
  plaintext: Buffer,
  aad: Buffer | undefined,
  withIntegrityValue: boolean,
): Promise<XksSealed> {
  requireUsage(key, binding, 'encrypt');
  // The verification decrypt needs the key to be usable for decrypt too.
  if (withIntegrityValue) requireUsage(key, binding, 'decrypt');
  requireUsable(key);
  const material = currentMaterial(deps, key);
  const ciphertextMetadata = encodeCiphertextMetadata(material.version);
  const tokenAad = xksTokenAad(aad, ciphertextMetadata);
  if (deps.token.aeadShape.scheme !== 'aes-gcm') {
    throw Errors.unsupported('The external key store proxy needs AES-GCM, and this token has no AES-GCM.');
  }
  for (let attempt = 0; ; attempt++) {
    // The token may choose the IV (12 or 16 bytes, both allowed by the XKS API); AWS gets the one used.
    const { iv, sealed } = await deps.token.seal(material.objectId, tokenAad, plaintext);
    const ciphertext = sealed.subarray(0, sealed.length - XKS_TAG_BYTES);
    const tag = sealed.subarray(sealed.length - XKS_TAG_BYTES);
    const out: XksSealed = { ciphertext, initializationVector: iv, authenticationTag: tag, ciphertextMetadata };
    if (!withIntegrityValue) return out;
    out.ciphertextDataIntegrityValue = ciphertextDataIntegrityValue(aad, ciphertextMetadata, iv, ciphertext, tag);
    if (await verifies(deps, material, iv, tokenAad, sealed, plaintext)) return out;
    deps.log.error({ keyId: key.keyId, attempt }, 'XKS encrypt output failed its verification decrypt');
    if (attempt >= 1) throw integrityFailure();
  }
}

async function verifies(
  deps: KmsDeps, material: KeyMaterialRecord, iv: Buffer, tokenAad: Buffer, sealed: Buffer, plaintext: Buffer,
): Promise<boolean> {
  let opened: Buffer;
  try {
    // A copy: the response must be exactly what the digest covered, whatever the token does.
    opened = await deps.token.decryptGcm(material.objectId, Buffer.from(iv), tokenAad, Buffer.from(sealed));
  } catch (e) {
    if (e instanceof AuthenticationFailed) return false;
    throw e;
  }
  const ok = opened.length === plaintext.length && timingSafeEqual(opened, plaintext);
  opened.fill(0);
  return ok;
}

const invalidCiphertext = () =>
  Errors.invalidCiphertext(
    'The ciphertext, initialization vector, additional authenticated data, ciphertext metadata or authentication tag is invalid.',
  );

/** Decrypt: the metadata names the key-material version, so ciphertexts survive rotation. */
export async function xksDecrypt(
  deps: KmsDeps,
  key: KeyRecord,
  binding: XksKeyBinding,
  input: XksDecryptInput,
): Promise<Buffer> {
  requireUsage(key, binding, 'decrypt');
  requireUsable(key);
  const version = parseCiphertextMetadata(input.ciphertextMetadata);
  const iv = input.initializationVector;
  if (version === undefined || (iv.length !== 12 && iv.length !== 16) || input.authenticationTag.length !== XKS_TAG_BYTES) {
    throw invalidCiphertext();
  }
  const material = materialOf(deps, key, version);
  if (!material) throw invalidCiphertext();
  const tokenAad = xksTokenAad(input.additionalAuthenticatedData, input.ciphertextMetadata);
  try {
    return await deps.token.decryptGcm(
      material.objectId, iv, tokenAad, Buffer.concat([input.ciphertext, input.authenticationTag]),
    );
  } catch (e) {
    if (e instanceof AuthenticationFailed) throw invalidCiphertext();
    throw e;
  }
}

export interface XksHealthResult {
  ok: boolean;
  checkedAt: number;
  /** Set when ok is false. */
  error?: KmsError | undefined;
}

/**
 * GetHealthStatus's deep check: an encrypt and decrypt round trip with a dedicated health key
 * (not one KMS uses, so its activity never shows up as unexplained use of a customer key), or,
 * without one, a random-number draw on a pooled session. Results are cached for `ttlMs` (the
 * spec allows at most one minute); concurrent callers share one check. Failures are not cached.
 */
export class XksHealthCheck {
  private last: XksHealthResult | undefined;
  private running: Promise<XksHealthResult> | undefined;
  private readonly binding: XksKeyBinding | undefined;

  constructor(
    private readonly deps: KmsDeps,
    private readonly resolver: XksKeyResolver,
    healthKeyRef: string | undefined,
    private readonly ttlMs: number,
  ) {
    this.binding = healthKeyRef === undefined
      ? undefined
      : { externalKeyId: 'health key', keyRef: healthKeyRef, allowEncrypt: true, allowDecrypt: true };
  }

  get deep(): boolean {
    return this.binding !== undefined;
  }

  check(): Promise<XksHealthResult> {
    const now = Date.now();
    if (this.last?.ok && now - this.last.checkedAt < this.ttlMs) return Promise.resolve(this.last);
    return (this.running ??= this.run().finally(() => {
      this.running = undefined;
    }));
  }

  private async run(): Promise<XksHealthResult> {
    const checkedAt = Date.now();
    try {
      if (this.binding) {
        const key = this.resolver.resolve(this.binding);
        const probe = await this.deps.token.random(32);
        const aad = Buffer.from('p11kms xks health check', 'utf8');
        const sealed = await xksEncrypt(this.deps, key, this.binding, probe, aad, true);
        probe.fill(0);
        if (!sealed.ciphertextDataIntegrityValue) throw integrityFailure();
      } else {
        await this.deps.token.random(16);
      }
      this.last = { ok: true, checkedAt };
    } catch (e) {
      const error = isKmsError(e) ? e : Errors.internal('The health check failed.');
      if (error.code === 'NotFoundException') {
        this.deps.log.error('XKS health key is not found; GetHealthStatus fails until it exists');
      }
      this.last = { ok: false, checkedAt, error };
    }
    return this.last;
  }
}
