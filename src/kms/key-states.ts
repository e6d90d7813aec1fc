import { Errors, type KmsError } from '../errors.js';
import type { KeyRecord, KeyState } from '../store/types.js';

/**
 * AWS's key-state table ("Key states of AWS KMS keys", KMS Developer Guide): which operation
 * may run on a key in which state, and the exact error when it may not. Every operation that
 * names an existing key checks it here, after authorization and before any token call.
 *
 * The footnotes of AWS's table, as used below:
 *   [1] DisabledException:        <key ARN> is disabled.
 *   [3] KMSInvalidStateException: <key ARN> is pending deletion.
 *   [4] KMSInvalidStateException: <key ARN> is not pending deletion.
 *   [5] KMSInvalidStateException: <key ARN> is pending import.
 *  [11] KMSInvalidStateException: <key ARN> is unavailable.
 * (AWS once answered [2], DisabledException "is pending deletion", for cryptographic use of a
 * key pending deletion; it now answers [3], which is what the issue asks for.)
 *
 * Conditions that depend on the key's type rather than its state (origin EXTERNAL, asymmetric
 * or HMAC key specs, custom key stores → UnsupportedOperationException) are checked by the
 * operations themselves, before the state: AWS refuses those in every state.
 */

type Refusal = (key: KeyRecord) => KmsError;
type Rule = 'ok' | Refusal;

const disabled: Refusal = (k) => Errors.disabled(`${k.arn} is disabled.`);
const pendingDeletion: Refusal = (k) => Errors.invalidState(`${k.arn} is pending deletion.`);
const notPendingDeletion: Refusal = (k) => Errors.invalidState(`${k.arn} is not pending deletion.`);
const pendingImport: Refusal = (k) => Errors.invalidState(`${k.arn} is pending import.`);
const unavailable: Refusal = (k) => Errors.invalidState(`${k.arn} is unavailable.`);

/**
 * One row of the table: the rule for each state a customer key can be in. The two states of
 * Multi-Region keys borrow a column (see checkKeyState): PendingReplicaDeletion is refused
 * where PendingDeletion is; Updating is used like Enabled, except for UPDATING_REFUSED.
 */
type Row = Record<Exclude<KeyState, 'Creating' | 'PendingReplicaDeletion' | 'Updating'>, Rule>;

const row = (Enabled: Rule, Disabled: Rule, PendingImport: Rule, PendingDeletion: Rule, Unavailable: Rule): Row => ({
  Enabled, Disabled, PendingImport, PendingDeletion, Unavailable,
});

/** Cryptographic use: only an Enabled key. */
const CRYPTO = row('ok', disabled, pendingImport, pendingDeletion, unavailable);
/** Managing the key's metadata: anything but a key pending deletion. */
const MANAGE = row('ok', 'ok', 'ok', pendingDeletion, 'ok');
/** Reading, and operations AWS allows in every state. */
const ANY = row('ok', 'ok', 'ok', 'ok', 'ok');

const TABLE = {
  // Cryptographic operations (and those that only make sense for a usable key).
  Encrypt: CRYPTO,
  Decrypt: CRYPTO,
  ReEncrypt: CRYPTO,
  GenerateDataKey: CRYPTO,
  GenerateDataKeyWithoutPlaintext: CRYPTO,
  GenerateDataKeyPair: CRYPTO,
  GenerateDataKeyPairWithoutPlaintext: CRYPTO,
  Sign: CRYPTO,
  Verify: CRYPTO,
  GenerateMac: CRYPTO,
  VerifyMac: CRYPTO,
  GetPublicKey: CRYPTO,
  DeriveSharedSecret: CRYPTO,
  CreateGrant: row('ok', disabled, pendingImport, pendingDeletion, 'ok'),
  // Key state changes.
  EnableKey: row('ok', 'ok', pendingImport, pendingDeletion, unavailable),
  DisableKey: row('ok', 'ok', pendingImport, pendingDeletion, unavailable),
  ScheduleKeyDeletion: MANAGE,
  CancelKeyDeletion: row(notPendingDeletion, notPendingDeletion, notPendingDeletion, 'ok', notPendingDeletion),
  // Rotation.
  EnableKeyRotation: row('ok', disabled, pendingImport, pendingDeletion, 'ok'),
  DisableKeyRotation: row('ok', disabled, pendingImport, pendingDeletion, 'ok'),
  RotateKeyOnDemand: row('ok', disabled, pendingImport, pendingDeletion, unavailable),
  GetKeyRotationStatus: ANY,
  ListKeyRotations: ANY,
  GetKeyLastUsage: ANY,
  // Imported key material.
  GetParametersForImport: MANAGE,
  ImportKeyMaterial: MANAGE,
  DeleteImportedKeyMaterial: ANY,
  // Metadata.
  UpdateKeyDescription: MANAGE,
  CreateAlias: MANAGE,
  UpdateAlias: MANAGE,
  TagResource: MANAGE,
  UntagResource: MANAGE,
  PutKeyPolicy: ANY,
  DescribeKey: ANY,
  GetKeyPolicy: ANY,
  ListResourceTags: ANY,
  ListGrants: ANY,
  RetireGrant: ANY,
  RevokeGrant: ANY,
  DeleteAlias: ANY,
  // Multi-Region keys: ReplicateKey and UpdatePrimaryRegion act on the primary.
  ReplicateKey: row('ok', disabled, 'ok', pendingDeletion, unavailable),
  UpdatePrimaryRegion: row('ok', disabled, pendingImport, pendingDeletion, unavailable),
} as const satisfies Record<string, Row>;

export type KeyStateAction = keyof typeof TABLE;

/** AWS: while Updating, "you cannot replicate the new primary key or perform certain management operations, such as enabling or disabling these keys". */
const UPDATING_REFUSED = new Set<KeyStateAction>(['EnableKey', 'DisableKey', 'ReplicateKey', 'UpdatePrimaryRegion', 'ScheduleKeyDeletion']);

/** Throws AWS's error when `action` is not allowed on `key` in its current state. */
export function checkKeyState(key: KeyRecord, action: KeyStateAction): void {
  if (key.state === 'Creating') throw Errors.invalidState(`${key.arn} is being created.`);
  if (key.state === 'Updating') {
    if (UPDATING_REFUSED.has(action)) throw Errors.invalidState(`${key.arn} is updating its primary Region.`);
    return checkKeyState({ ...key, state: 'Enabled' }, action);
  }
  if (key.state === 'PendingReplicaDeletion') {
    const rule = TABLE[action].PendingDeletion;
    if (rule !== 'ok') throw Errors.invalidState(`${key.arn} is pending replica deletion.`);
    return;
  }
  const rule = TABLE[action][key.state];
  if (rule !== 'ok') throw rule(key);
}
