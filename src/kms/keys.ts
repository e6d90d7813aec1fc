import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { authorize } from '../authz/authorize.js';
import { Errors } from '../errors.js';
import type { KeyRecord } from '../store/types.js';
import { keyArn } from './arn.js';
import { operation, type KmsDeps, type RequestContext } from './context.js';
import { createExternalKey } from './import.js';
import { checkImportableSpec } from './import-kinds.js';
import { keyMetadata } from './key-metadata.js';
import { storeForNewKey } from './key-stores.js';
import { checkKeyState, type KeyStateAction } from './key-states.js';
import { resolveKey } from './key-ref.js';
import { checkKeySpec } from './key-specs.js';
import { materialize, newMaterial } from './material.js';
import { newMultiRegionKeyId } from './multi-region.js';
import { checkLockout, defaultKeyPolicy, validateKeyPolicy } from './policies.js';

export { defaultKeyPolicy } from './policies.js';
import { checkTags } from './tags.js';
import { bool, DESCRIPTION, GRANT_TOKENS, KEY_ID, LIMIT, list, MARKER, oneOf, str, TAG } from './validation.js';

const KEY_SPECS = [
  'RSA_2048', 'RSA_3072', 'RSA_4096', 'ECC_NIST_P256', 'ECC_NIST_P384', 'ECC_NIST_P521', 'ECC_SECG_P256K1',
  'SYMMETRIC_DEFAULT', 'HMAC_224', 'HMAC_256', 'HMAC_384', 'HMAC_512', 'SM2', 'ML_DSA_44', 'ML_DSA_65', 'ML_DSA_87',
  'ECC_NIST_EDWARDS25519',
] as const;
const KEY_USAGES = ['SIGN_VERIFY', 'ENCRYPT_DECRYPT', 'GENERATE_VERIFY_MAC', 'KEY_AGREEMENT'] as const;
const ORIGINS = ['AWS_KMS', 'EXTERNAL', 'AWS_CLOUDHSM', 'EXTERNAL_KEY_STORE'] as const;


const CreateKeySchema = z.object({
  Policy: str(1, 131072, /^[\u0009\u000A\u000D\u0020-\u00FF]+$/).optional(),
  Description: DESCRIPTION.optional(),
  KeyUsage: oneOf(KEY_USAGES).optional(),
  CustomerMasterKeySpec: oneOf(KEY_SPECS.slice(0, 13) as unknown as typeof KEY_SPECS).optional(),
  KeySpec: oneOf(KEY_SPECS).optional(),
  Origin: oneOf(ORIGINS).optional(),
  CustomKeyStoreId: str(1, 64).optional(),
  BypassPolicyLockoutSafetyCheck: bool().optional(),
  Tags: list(TAG, 0, 1000).optional(),
  MultiRegion: bool().optional(),
  XksKeyId: str(1, 128, /^[a-zA-Z0-9-_.]+$/).optional(),
});

export const CreateKey = operation(CreateKeySchema, async (deps, ctx, input) => {
  if (input.KeySpec && input.CustomerMasterKeySpec) {
    throw Errors.validation('You cannot specify KeySpec and CustomerMasterKeySpec in the same request.');
  }
  const keySpec = input.KeySpec ?? input.CustomerMasterKeySpec ?? 'SYMMETRIC_DEFAULT';
  const origin = input.Origin ?? 'AWS_KMS';
  // Usage must fit the spec (ValidationException); the token must have what it needs (UnsupportedOperationException).
  const keyUsage = checkKeySpec(deps, keySpec, input.KeyUsage);
  if (origin === 'EXTERNAL_KEY_STORE' || input.XksKeyId !== undefined) {
    throw Errors.unsupported('External key stores (Origin EXTERNAL_KEY_STORE, XksKeyId) are not supported by this key store.');
  }
  // Custom key stores (issue #6): AWS_CLOUDHSM keys live in the store's token; symmetric only.
  const inKeyStore = input.CustomKeyStoreId !== undefined || origin === 'AWS_CLOUDHSM';
  if (inKeyStore) {
    if (input.CustomKeyStoreId === undefined) {
      throw Errors.validation('Origin AWS_CLOUDHSM requires a CustomKeyStoreId that identifies an AWS CloudHSM key store.');
    }
    if (origin !== 'AWS_CLOUDHSM') {
      throw Errors.validation(`To create a KMS key in an AWS CloudHSM key store, Origin must be AWS_CLOUDHSM (not ${origin}).`);
    }
    if (keySpec !== 'SYMMETRIC_DEFAULT' || keyUsage !== 'ENCRYPT_DECRYPT') {
      throw Errors.unsupported(
        `Only symmetric encryption keys (KeySpec SYMMETRIC_DEFAULT, KeyUsage ENCRYPT_DECRYPT) can be created in a custom key store.`,
      );
    }
  }
  if (origin === 'EXTERNAL') checkImportableSpec(keySpec, keyUsage);
  // AWS: "you cannot create a multi-Region key in a custom key store".
  if (input.MultiRegion && inKeyStore) throw Errors.unsupported('You cannot create a multi-Region key in a custom key store.');
  const tags = input.Tags ?? [];
  checkTags(tags, 0);
  const policy = input.Policy === undefined ? undefined : validateKeyPolicy(input.Policy);
  authorize(ctx, 'CreateKey');
  // Not found → CustomKeyStoreNotFoundException; not CONNECTED → CustomKeyStoreInvalidStateException.
  const customKeyStoreId = input.CustomKeyStoreId === undefined ? undefined : storeForNewKey(deps, ctx, input.CustomKeyStoreId).id;

  const keyId = input.MultiRegion ? newMultiRegionKeyId() : randomUUID();
  // Symmetric Multi-Region material is created wrappable by a trusted peer key (src/hsm/peer-keys.ts).
  const view = input.MultiRegion
    ? { keyId, primaryRegion: deps.region, replicaRegions: [], wrappable: keySpec === 'SYMMETRIC_DEFAULT' && origin === 'AWS_KMS' }
    : undefined;
  const now = deps.clock.now().getTime();
  const accountId = ctx.principal.accountId;
  const key: KeyRecord = {
    keyId,
    arn: keyArn(deps.region, accountId, keyId),
    accountId,
    region: deps.region,
    createdAt: now,
    description: input.Description ?? '',
    keyUsage,
    keySpec,
    origin,
    keyManager: 'CUSTOMER',
    state: 'Creating',
    policy: input.Policy ?? defaultKeyPolicy(accountId),
    currentVersion: 1,
    customKeyStoreId,
  };
  if (policy) checkLockout(ctx, key, policy, input.BypassPolicyLockoutSafetyCheck);
  // Origin EXTERNAL: no material yet; the key waits in PendingImport for ImportKeyMaterial.
  if (origin === 'EXTERNAL') {
    const created = deps.store.transaction(() => {
      const k = createExternalKey(deps, key, tags);
      if (view) deps.store.multiRegion.put(view);
      return k;
    });
    return { KeyMetadata: keyMetadata(deps, created) };
  }
  const material = newMaterial(keyId, 1, now);
  deps.store.transaction(() => {
    deps.store.createKeyPending(key, material, tags);
    if (view) deps.store.multiRegion.put(view);
  });
  try {
    await materialize(deps, key, material, 'Enabled');
  } catch (e) {
    deps.store.deleteKey(keyId);
    throw e;
  }
  return { KeyMetadata: keyMetadata(deps, deps.store.getKey(keyId) as KeyRecord) };
});

export const DescribeKey = operation(z.object({ KeyId: KEY_ID, GrantTokens: GRANT_TOKENS }), (deps, ctx, input) => {
  const key = resolveKey(deps, ctx, input.KeyId);
  authorize(ctx, 'DescribeKey', key);
  return { KeyMetadata: keyMetadata(deps, key) };
});

export const ListKeys = operation(z.object({ Limit: LIMIT, Marker: MARKER }), (deps, ctx, input) => {
  authorize(ctx, 'ListKeys');
  const page = deps.store.listKeys(ctx.principal.accountId, input.Limit ?? 100, input.Marker);
  return {
    Keys: page.items.map((k) => ({ KeyId: k.keyId, KeyArn: k.arn })),
    NextMarker: page.nextMarker,
    Truncated: page.nextMarker !== undefined,
  };
});

/** Resolves a key id/ARN (never an alias) for a management call that changes the key. */
function managedKey(deps: KmsDeps, ctx: RequestContext, ref: string, action: KeyStateAction): KeyRecord {
  const key = resolveKey(deps, ctx, ref, false);
  authorize(ctx, action, key);
  checkKeyState(key, action);
  return key;
}

export const EnableKey = operation(z.object({ KeyId: KEY_ID }), (deps, ctx, input) => {
  const key = managedKey(deps, ctx, input.KeyId, 'EnableKey');
  if (key.state === 'Disabled') deps.store.updateKey(key.keyId, { state: 'Enabled' });
  return {};
});

export const DisableKey = operation(z.object({ KeyId: KEY_ID }), (deps, ctx, input) => {
  const key = managedKey(deps, ctx, input.KeyId, 'DisableKey');
  if (key.state === 'Enabled') deps.store.updateKey(key.keyId, { state: 'Disabled' });
  return {};
});

export const UpdateKeyDescription = operation(
  z.object({ KeyId: KEY_ID, Description: DESCRIPTION }),
  (deps, ctx, input) => {
    const key = managedKey(deps, ctx, input.KeyId, 'UpdateKeyDescription');
    deps.store.updateKey(key.keyId, { description: input.Description });
    return {};
  },
);

