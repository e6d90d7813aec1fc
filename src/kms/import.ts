import { recordKeyServiceEvent, type JobResult } from '../audit/service-event.js';
import { createHash, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { authorize } from '../authz/authorize.js';
import { Errors } from '../errors.js';
import { KeyMaterialRejected, UnwrapFailed, type ImportedKind, type OaepHash } from '../hsm/token.js';
import type { ExpirationModel, ImportTokenRecord, MaterialInfo } from '../store/lifecycle.js';
import type { KeyRecord, KeyState, Tag } from '../store/types.js';
import { bytesToKeyId, keyIdToBytes } from './ciphertext.js';
import { objectIdsOfOtherCopies, sameMaterialElsewhere } from './multi-region.js';
import { operation, type KmsDeps } from './context.js';
import { checkWrappingFor, importedKindOf, wrongMaterial } from './import-kinds.js';
import { resolveKey } from './key-ref.js';
import { withKeyLock } from './key-locks.js';
import { checkKeyState } from './key-states.js';
import { LABEL_PREFIX, objectIdFor } from './material.js';
import { nextVersion } from './rotation.js';
import { blob, KEY_ID, oneOf, str, timestamp } from './validation.js';
import { tokenFor } from './token-for.js';

/**
 * Imported key material (Origin EXTERNAL, "bring your own key").
 *
 * GetParametersForImport generates an RSA key pair in the token for one import: the private key
 * is a token object that can only unwrap; the public key goes to the caller with an import token
 * that names the key and the pair and expires after 24 hours. ImportKeyMaterial unwraps the
 * caller's wrapped material with C_UnwrapKey straight into a non-extractable token object: the
 * material never exists in this process.
 *
 * Recognising "the same material" without extracting it: the token computes a check value (a
 * digest of a fixed block encrypted under the key, see Token.unwrapAesKey) and the KeyMaterialId
 * is SHA-256 of the key id and that check value. AWS likewise derives the id of imported material
 * from the key and the material. Re-importing the same material yields the same KeyMaterialId, so
 * its old ciphertexts decrypt again; different material yields another id and is refused with
 * IncorrectKeyMaterialException (or becomes new material pending rotation, with NEW_KEY_MATERIAL).
 *
 * Write order for a new material object, as for CreateKey and rotation: version row 'pending' →
 * C_UnwrapKey into the token object → row 'active' and the material's history in one transaction.
 * Removing material (DeleteImportedKeyMaterial, ValidTo passed) goes the other way round: rows
 * first, then the token object, so a crash leaves at worst an orphan object, which start-up
 * reconciliation destroys.
 */

/** Label prefix of wrapping key pairs; not LABEL_PREFIX, whose orphans reconcile.ts destroys as key material. */
export const IMPORT_LABEL_PREFIX = 'p11kms-import:';
export const IMPORT_TOKEN_VALIDITY_MS = 24 * 3_600_000;
/** Outstanding import tokens (wrapping key pairs in the token) per key; a new one evicts the oldest. */
export const MAX_IMPORT_TOKENS_PER_KEY = 10;
const MAX_VALID_TO_MS = 365 * 86_400_000;
const AES_256_KWP_BYTES = 40;

const WRAPPING_ALGORITHMS = [
  'RSAES_PKCS1_V1_5', 'RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256', 'RSA_AES_KEY_WRAP_SHA_1', 'RSA_AES_KEY_WRAP_SHA_256', 'SM2PKE',
] as const;
const WRAPPING_KEY_SPECS = ['RSA_2048', 'RSA_3072', 'RSA_4096', 'SM2'] as const;
const MODULUS_BITS: Record<string, number> = { RSA_2048: 2048, RSA_3072: 3072, RSA_4096: 4096 };

interface Wrapping {
  hash: OaepHash;
  aesKeyWrap: boolean;
}
const WRAPPINGS: Record<string, Wrapping> = {
  RSAES_OAEP_SHA_1: { hash: 'sha1', aesKeyWrap: false },
  RSAES_OAEP_SHA_256: { hash: 'sha256', aesKeyWrap: false },
  RSA_AES_KEY_WRAP_SHA_1: { hash: 'sha1', aesKeyWrap: true },
  RSA_AES_KEY_WRAP_SHA_256: { hash: 'sha256', aesKeyWrap: true },
};

/** CreateKey with Origin EXTERNAL: a key row without material, waiting for ImportKeyMaterial. */
export function createExternalKey(deps: KmsDeps, key: KeyRecord, tags: Tag[]): KeyRecord {
  deps.store.createKey({ ...key, state: 'PendingImport', currentVersion: 1 }, tags);
  return deps.store.getKey(key.keyId) as KeyRecord;
}

/** Versions permanently associated with the key: imported, and not merely waiting for a rotation. */
function associated(deps: KmsDeps, keyId: string): MaterialInfo[] {
  return deps.store.lifecycle.listMaterialInfo(keyId).filter((i) => i.imported && !i.pendingRotation);
}

/** Whether every associated imported material is in the token (the key can then be Enabled). */
export function importedMaterialComplete(deps: KmsDeps, keyId: string): boolean {
  const all = associated(deps, keyId);
  return all.length > 0 && all.every((i) => i.importState === 'IMPORTED');
}

/** DescribeKey's fields for imported key material; empty for other keys. */
export function importedKeyMetadata(deps: KmsDeps, key: KeyRecord) {
  if (key.origin !== 'EXTERNAL') return {};
  const current = deps.store.lifecycle.getMaterialInfo(key.keyId, key.currentVersion);
  if (!current?.imported) return {};
  const expiring = associated(deps, key.keyId).filter((i) => i.importState === 'IMPORTED' && i.validTo !== undefined);
  const validTo = expiring.length ? Math.min(...expiring.map((i) => i.validTo as number)) : undefined;
  return {
    CurrentKeyMaterialId: current.materialId,
    ExpirationModel: current.expirationModel,
    ValidTo: validTo === undefined ? undefined : new Date(validTo),
  };
}

function requireExternal(key: KeyRecord): void {
  if (key.origin !== 'EXTERNAL') {
    throw Errors.unsupported(`${key.arn} origin is ${key.origin} which is not valid for this operation.`);
  }
}

// Import token: version ‖ key id (16) ‖ token id (16) ‖ expiry (u64 ms, big-endian). The token id
// is 128 random bits looked up in the store, so the token needs no MAC to be unforgeable; the
// expiry is carried so that a token whose record was already swept still reads as expired.
const IMPORT_TOKEN_V1 = 0x01;
const IMPORT_TOKEN_BYTES = 41;

function encodeImportToken(keyId: string, tokenId: Buffer, expiresAt: number): Buffer {
  const t = Buffer.alloc(IMPORT_TOKEN_BYTES);
  t[0] = IMPORT_TOKEN_V1;
  keyIdToBytes(keyId).copy(t, 1);
  tokenId.copy(t, 17);
  t.writeBigUInt64BE(BigInt(expiresAt), 33);
  return t;
}

function resolveImportToken(deps: KmsDeps, key: KeyRecord, token: Buffer, now: number): ImportTokenRecord {
  const invalid = () => Errors.invalidImportToken('The import token is invalid or is associated with a different KMS key.');
  const expired = () =>
    Errors.expiredImportToken('The import token has expired. Use GetParametersForImport to get a new public key and import token.');
  if (token.length !== IMPORT_TOKEN_BYTES || token[0] !== IMPORT_TOKEN_V1) throw invalid();
  if (bytesToKeyId(token.subarray(1, 17)) !== key.keyId) throw invalid();
  const record = deps.store.lifecycle.getImportToken(token.subarray(17, 33));
  if (record && record.keyId !== key.keyId) throw invalid();
  const expiresAt = record?.expiresAt ?? Number(token.readBigUInt64BE(33));
  if (expiresAt <= now) throw expired();
  if (!record || record.expiresAt !== Number(token.readBigUInt64BE(33))) throw invalid();
  return record;
}

export const GetParametersForImport = operation(
  z.object({ KeyId: KEY_ID, WrappingAlgorithm: oneOf(WRAPPING_ALGORITHMS), WrappingKeySpec: oneOf(WRAPPING_KEY_SPECS) }),
  async (deps, ctx, input) => {
    const key = resolveKey(deps, ctx, input.KeyId, false);
    authorize(ctx, 'GetParametersForImport', key);
    requireExternal(key);
    checkKeyState(key, 'GetParametersForImport');
    if (input.WrappingAlgorithm === 'RSAES_PKCS1_V1_5') {
      throw Errors.unsupported('The RSAES_PKCS1_V1_5 wrapping algorithm is no longer supported (AWS KMS dropped it in October 2023).');
    }
    if (input.WrappingAlgorithm === 'SM2PKE' || input.WrappingKeySpec === 'SM2') {
      throw Errors.unsupported('SM2 wrapping keys are only available in the AWS China Regions and not in this key store.');
    }
    checkWrappingFor(key, input.WrappingAlgorithm);
    const wrapping = WRAPPINGS[input.WrappingAlgorithm] as Wrapping;
    const bits = MODULUS_BITS[input.WrappingKeySpec] as number;
    await requireWrappingSupport(deps, input.WrappingAlgorithm, wrapping);

    const now = deps.clock.now().getTime();
    const tokenId = randomBytes(16);
    const expiresAt = now + IMPORT_TOKEN_VALIDITY_MS;
    const publicKey = await withKeyLock(deps.store, key.keyId, async () => {
      const current = deps.store.getKey(key.keyId);
      if (!current) throw Errors.notFound(`Key '${key.arn}' does not exist`);
      checkKeyState(current, 'GetParametersForImport');
      const outstanding = deps.store.lifecycle.listImportTokens(key.keyId);
      for (const old of outstanding.slice(0, Math.max(0, outstanding.length - MAX_IMPORT_TOKENS_PER_KEY + 1))) {
        await tokenFor(deps, key).destroy(old.tokenId);
        deps.store.lifecycle.deleteImportToken(old.tokenId);
      }
      // Row first, then the key pair: a crash in between leaves a row without an object, which
      // start-up reconciliation removes (the caller never received this token).
      deps.store.lifecycle.insertImportToken({
        tokenId, keyId: key.keyId, wrappingAlgorithm: input.WrappingAlgorithm, wrappingKeySpec: input.WrappingKeySpec,
        createdAt: now, expiresAt,
      });
      try {
        const rawDecrypt = await tokenFor(deps, key).needsRawOaep(wrapping.hash);
        return await tokenFor(deps, key).generateRsaWrappingKeyPair(tokenId, `${IMPORT_LABEL_PREFIX}${key.keyId}`, bits, rawDecrypt);
      } catch (e) {
        deps.store.lifecycle.deleteImportToken(tokenId);
        throw e;
      }
    });
    return {
      KeyId: key.arn,
      ImportToken: encodeImportToken(key.keyId, tokenId, expiresAt),
      PublicKey: publicKey,
      ParametersValidTo: new Date(expiresAt),
    };
  },
);

/** Refuses, naming the mechanism, a wrapping algorithm this token cannot perform. */
async function requireWrappingSupport(deps: KmsDeps, algorithm: string, wrapping: Wrapping): Promise<void> {
  const missing = await deps.token.missingForImport(wrapping);
  if (missing) throw Errors.unsupported(`The key store's PKCS#11 token does not support ${missing}, which ${algorithm} needs.`);
}

const KEY_MATERIAL_ID = str(64, 64, /^[a-f0-9]+$/);

export const ImportKeyMaterial = operation(
  z.object({
    KeyId: KEY_ID,
    ImportToken: blob(1, 6144),
    EncryptedKeyMaterial: blob(1, 6144),
    ValidTo: timestamp().optional(),
    ExpirationModel: oneOf(['KEY_MATERIAL_EXPIRES', 'KEY_MATERIAL_DOES_NOT_EXPIRE']).optional(),
    ImportType: oneOf(['NEW_KEY_MATERIAL', 'EXISTING_KEY_MATERIAL']).optional(),
    KeyMaterialDescription: str(0, 256, /^[a-zA-Z0-9:/_\s.-]+$/).optional(),
    KeyMaterialId: KEY_MATERIAL_ID.optional(),
  }),
  async (deps, ctx, input) => {
    const now = deps.clock.now().getTime();
    const expirationModel: ExpirationModel = input.ExpirationModel ?? 'KEY_MATERIAL_EXPIRES';
    let validTo: number | undefined;
    if (expirationModel === 'KEY_MATERIAL_EXPIRES') {
      if (!input.ValidTo) throw Errors.validation('ValidTo is required when ExpirationModel is KEY_MATERIAL_EXPIRES.');
      validTo = input.ValidTo.getTime();
      if (validTo <= now) throw Errors.validation('ValidTo must be in the future.');
      if (validTo > now + MAX_VALID_TO_MS) throw Errors.validation('ValidTo must be at most 365 days from now.');
    } else if (input.ValidTo) {
      throw Errors.validation('ValidTo must be omitted when ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE.');
    }
    if (input.ImportType === 'NEW_KEY_MATERIAL' && input.KeyMaterialId !== undefined) {
      throw Errors.validation('You cannot specify a KeyMaterialId when ImportType is NEW_KEY_MATERIAL.');
    }

    const key = resolveKey(deps, ctx, input.KeyId, false);
    authorize(ctx, 'ImportKeyMaterial', key);
    requireExternal(key);
    checkKeyState(key, 'ImportKeyMaterial');
    const record = resolveImportToken(deps, key, input.ImportToken, now);
    const wrapping = WRAPPINGS[record.wrappingAlgorithm] as Wrapping;
    const modulusBytes = (MODULUS_BITS[record.wrappingKeySpec] as number) / 8;
    const kind = importedKindOf(key);
    checkWrappedLength(key, kind, input.EncryptedKeyMaterial.length, modulusBytes, wrapping);
    const how = { ...wrapping, modulusBytes, rawOaep: await tokenFor(deps, key).needsRawOaep(wrapping.hash) };
    // Only symmetric keys rotate into new imported material (AWS: on-demand rotation of imported keys).
    if (kind !== 'aes' && input.ImportType === 'NEW_KEY_MATERIAL' && deps.store.lifecycle.listMaterialInfo(key.keyId).some((i) => i.imported)) {
      throw Errors.unsupported(`${key.arn} key spec ${key.keySpec} cannot take new key material: only symmetric keys rotate.`);
    }
    const unwrapInto = (target?: { id: Buffer; label: string }) =>
      unwrapMapped(key, () =>
        kind === 'aes'
          ? tokenFor(deps, key).unwrapAesKey(record.tokenId, how, input.EncryptedKeyMaterial, target)
          : tokenFor(deps, key).unwrapKeyMaterial(record.tokenId, how, input.EncryptedKeyMaterial, kind, target),
      );

    return withKeyLock(deps.store, key.keyId, async () => {
      const current = deps.store.getKey(key.keyId);
      if (!current) throw Errors.notFound(`Key '${key.arn}' does not exist`);
      checkKeyState(current, 'ImportKeyMaterial');
      // First unwrap into a session object, only to learn which material this is.
      const check = await unwrapInto();
      const materialId = createHash('sha256').update(keyIdToBytes(key.keyId)).update(check).digest('hex');
      const imported = deps.store.lifecycle.listMaterialInfo(key.keyId).filter((i) => i.imported);
      const known = imported.find((i) => i.materialId === materialId);
      const importType = input.ImportType ?? (imported.length === 0 ? 'NEW_KEY_MATERIAL' : 'EXISTING_KEY_MATERIAL');

      let version: number;
      let pendingRotation: boolean;
      if (importType === 'EXISTING_KEY_MATERIAL') {
        if (!known || (input.KeyMaterialId !== undefined && input.KeyMaterialId !== materialId)) {
          throw Errors.incorrectKeyMaterial(
            `The key material is not the key material previously imported into ${key.arn}` +
              (input.KeyMaterialId !== undefined ? ` as ${input.KeyMaterialId}.` : '.'),
          );
        }
        version = known.version;
        pendingRotation = known.pendingRotation;
      } else {
        if (known) throw Errors.incorrectKeyMaterial(`This key material is already associated with ${key.arn}; KMS expected new key material.`);
        if (kind !== 'aes' && imported.length > 0) throw Errors.incorrectKeyMaterial(`The key material is not the key material previously imported into ${key.arn}.`);
        if (imported.some((i) => i.pendingRotation)) {
          throw Errors.invalidState(
            `${key.arn} already has key material pending rotation. Rotate it (RotateKeyOnDemand) or delete it first.`,
          );
        }
        version = imported.length === 0 ? 1 : nextVersion(deps, key.keyId);
        pendingRotation = imported.length > 0;
      }

      const info: MaterialInfo = {
        keyId: key.keyId, version, materialId, createdAt: known?.createdAt ?? now,
        rotationType: known?.rotationType, rotatedAt: known?.rotatedAt, imported: true, importState: 'IMPORTED',
        pendingRotation, expirationModel, validTo, description: input.KeyMaterialDescription ?? known?.description,
      };
      const { store } = deps;
      const present = store.getMaterial(key.keyId, version)?.state === 'active';
      // A Multi-Region copy in a region sharing the token imported this very material already
      // (the check value matched its material id): name the same token object.
      const shared = present ? undefined : sameMaterialElsewhere(deps, key.keyId, version, materialId);
      if (shared) store.addPendingMaterial({ ...shared });
      else if (!present) {
        const objectId = objectIdFor(key.keyId, version);
        store.addPendingMaterial({ keyId: key.keyId, version, materialId, objectId, state: 'pending', createdAt: now });
        try {
          const again = await unwrapInto({ id: objectId, label: `${LABEL_PREFIX}${key.keyId}:v${version}` });
          if (!again.equals(check)) {
            await tokenFor(deps, key).destroy(objectId);
            throw Errors.internal('The key store unwrapped different key material from the same request.');
          }
        } catch (e) {
          store.deleteMaterial(key.keyId, version);
          throw e;
        }
      }
      store.transaction(() => {
        if (!present && !shared) store.activateMaterial(key.keyId, version);
        store.lifecycle.putMaterialInfo(info);
        const latest = store.getKey(key.keyId) as KeyRecord;
        if (latest.state === 'PendingImport' && importedMaterialComplete(deps, key.keyId)) {
          store.updateKey(key.keyId, { state: 'Enabled' });
        }
      });
      deps.log.info({ keyId: key.keyId, version, importType, restored: !present && known !== undefined }, 'key material imported');
      return { KeyId: key.arn, KeyMaterialId: materialId };
    });
  },
);

/** Lengths the wrapped material can have for this key; anything else fails before the token is asked. */
function checkWrappedLength(key: KeyRecord, kind: ImportedKind | 'aes', length: number, modulusBytes: number, wrapping: Wrapping): void {
  if (!wrapping.aesKeyWrap) {
    if (length !== modulusBytes) {
      throw Errors.invalidCiphertext(`The encrypted key material must be ${modulusBytes} bytes for this wrapping key.`);
    }
    return;
  }
  const kwp = length - modulusBytes;
  if (kwp < 16 || kwp % 8 !== 0) throw Errors.invalidCiphertext('The encrypted key material is not an RSA_AES_KEY_WRAP ciphertext for this wrapping key.');
  // RFC 5649: the material padded to 8 bytes, plus the 8-byte integrity block.
  const fits = kind === 'aes' ? kwp === AES_256_KWP_BYTES : kind.type === 'hmac' ? kwp - 8 >= kind.minBytes - 7 && kwp - 8 <= kind.maxBytes : true;
  if (!fits) throw wrongMaterial(key);
}

async function unwrapMapped(key: KeyRecord, fn: () => Promise<Buffer>): Promise<Buffer> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof UnwrapFailed) {
      throw Errors.invalidCiphertext(
        'The encrypted key material could not be unwrapped. Wrap it with the public key and the wrapping algorithm of this import token.',
      );
    }
    if (e instanceof KeyMaterialRejected) throw wrongMaterial(key);
    throw e;
  }
}

export const DeleteImportedKeyMaterial = operation(
  z.object({ KeyId: KEY_ID, KeyMaterialId: KEY_MATERIAL_ID.optional() }),
  async (deps, ctx, input) => {
    const key = resolveKey(deps, ctx, input.KeyId, false);
    authorize(ctx, 'DeleteImportedKeyMaterial', key);
    requireExternal(key);
    checkKeyState(key, 'DeleteImportedKeyMaterial');
    return withKeyLock(deps.store, key.keyId, async () => {
      const current = deps.store.getKey(key.keyId);
      if (!current) throw Errors.notFound(`Key '${key.arn}' does not exist`);
      const imported = deps.store.lifecycle.listMaterialInfo(key.keyId).filter((i) => i.imported);
      const target = input.KeyMaterialId === undefined
        ? imported.find((i) => i.version === current.currentVersion)
        : imported.find((i) => i.materialId === input.KeyMaterialId);
      if (input.KeyMaterialId !== undefined && !target) {
        throw Errors.notFound(`Key material ${input.KeyMaterialId} is not associated with ${key.arn}.`);
      }
      // Material already gone (or never imported): AWS reports success with no effect.
      if (target?.importState === 'IMPORTED') await removeImportedMaterial(deps, current, target, 'deleted');
      return { KeyId: key.arn, KeyMaterialId: target?.materialId ?? '' };
    });
  },
);

/**
 * Deletes one imported material's token object; the key becomes PendingImport (unless it is
 * pending deletion, or the material was only pending rotation, which is then forgotten).
 * Rows first, then the object (see the module comment). Call under the key's lock.
 */
async function removeImportedMaterial(deps: KmsDeps, key: KeyRecord, info: MaterialInfo, reason: 'deleted' | 'expired') {
  const { store } = deps;
  const row = store.getMaterial(key.keyId, info.version);
  store.transaction(() => {
    store.deleteMaterial(key.keyId, info.version);
    if (info.pendingRotation) {
      store.lifecycle.deleteMaterialInfo(key.keyId, info.version);
    } else {
      store.lifecycle.putMaterialInfo({ ...info, importState: 'PENDING_IMPORT', validTo: undefined });
      const latest = store.getKey(key.keyId) as KeyRecord;
      const next: KeyState = latest.state === 'PendingDeletion' ? 'PendingDeletion' : 'PendingImport';
      if (latest.state !== next) store.updateKey(key.keyId, { state: next });
    }
  });
  // A Multi-Region copy in another region sharing the token may still name the object.
  if (row && !objectIdsOfOtherCopies(deps, key.keyId).has(row.objectId.toString('hex'))) await tokenFor(deps, key).destroy(row.objectId);
  deps.log.info({ keyId: key.keyId, version: info.version, reason }, 'imported key material removed from the token');
}

/** Destroys imported material whose ValidTo has passed (scheduler.ts), each audited as DeleteExpiredKeyMaterial. */
export async function runExpiredMaterials(deps: KmsDeps, now: number, limit: number): Promise<JobResult> {
  const result: JobResult = { done: 0, failed: 0 };
  for (const candidate of deps.store.lifecycle.expiredMaterials(now, limit)) {
    try {
      const removed = await withKeyLock(deps.store, candidate.keyId, async () => {
        const info = deps.store.lifecycle.getMaterialInfo(candidate.keyId, candidate.version);
        const key = deps.store.getKey(candidate.keyId);
        if (!key || !info || info.importState !== 'IMPORTED' || info.validTo === undefined || info.validTo > now) return undefined;
        await removeImportedMaterial(deps, key, info, 'expired');
        return { key, info };
      });
      if (removed) {
        result.done++;
        await recordKeyServiceEvent(deps, 'DeleteExpiredKeyMaterial', removed.key, {
          keyMaterialId: removed.info.materialId, validTo: new Date(removed.info.validTo as number),
        });
      }
    } catch (e) {
      result.failed++;
      deps.log.warn({ keyId: candidate.keyId, err: (e as Error).message }, 'expiring imported key material failed; will retry');
    }
  }
  return result;
}

/**
 * Destroys the wrapping key pairs of expired import tokens (scheduler.ts), token object first,
 * then the row; each audited as DeleteExpiredImportToken (p11kms's name: AWS records none).
 */
export async function runExpiredImportTokens(deps: KmsDeps, now: number, limit: number): Promise<JobResult> {
  const result: JobResult = { done: 0, failed: 0 };
  for (const t of deps.store.lifecycle.expiredImportTokens(now, limit)) {
    try {
      await withKeyLock(deps.store, t.keyId, async () => {
        await deps.token.destroy(t.tokenId);
        deps.store.lifecycle.deleteImportToken(t.tokenId);
      });
      result.done++;
      const key = deps.store.getKey(t.keyId);
      if (key) await recordKeyServiceEvent(deps, 'DeleteExpiredImportToken', key);
    } catch (e) {
      result.failed++;
      deps.log.warn({ keyId: t.keyId, err: (e as Error).message }, 'removing an expired wrapping key failed; will retry');
    }
  }
  return result;
}

/**
 * Start-up reconciliation of wrapping key pairs: destroys token objects with our import label
 * and no row, and removes rows whose object is missing (a crash during GetParametersForImport).
 */
export async function reconcileImportKeys(deps: KmsDeps): Promise<{ orphansDestroyed: number; rowsRemoved: number }> {
  // Objects first, rows second (see reconcile.ts): an object listed here already has its row.
  const objects = await deps.token.listObjects(IMPORT_LABEL_PREFIX);
  const known = deps.store.lifecycle.allImportTokenIds();
  // Regions sharing the token (issue 13) have wrapping keys of their own there.
  for (const other of deps.regions?.sharingToken(deps) ?? []) for (const id of other.store.lifecycle.allImportTokenIds()) known.add(id);
  const present = new Set<string>();
  let orphansDestroyed = 0;
  let rowsRemoved = 0;
  for (const obj of objects) {
    const id = obj.id.toString('hex');
    present.add(id);
    if (!known.has(id)) orphansDestroyed += await deps.token.destroy(obj.id);
  }
  // With a shared store a row without its object may be another node's GetParametersForImport
  // in progress: only rows whose writer is gone are removed.
  for (const id of deps.store.shared?.abandonedImportTokenIds() ?? known) {
    if (!present.has(id)) {
      deps.store.lifecycle.deleteImportToken(Buffer.from(id, 'hex'));
      rowsRemoved++;
    }
  }
  return { orphansDestroyed, rowsRemoved };
}
