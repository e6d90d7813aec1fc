import { CreateAlias, DeleteAlias, ListAliases, UpdateAlias } from './aliases.js';
import type { Operation } from './context.js';
import {
  Decrypt, Encrypt, GenerateDataKey, GenerateDataKeyWithoutPlaintext, GenerateRandom, ReEncrypt,
} from './crypto.js';
import { GenerateDataKeyPair, GenerateDataKeyPairWithoutPlaintext } from './data-key-pairs.js';
import { DeriveSharedSecret } from './key-agreement.js';
import {
  ConnectCustomKeyStore, CreateCustomKeyStore, DeleteCustomKeyStore, DescribeCustomKeyStores, DisconnectCustomKeyStore,
  UpdateCustomKeyStore,
} from './key-stores.js';
import { CreateKey, DescribeKey, DisableKey, EnableKey, ListKeys, UpdateKeyDescription } from './keys.js';
import { GenerateMac, VerifyMac } from './mac.js';
import { GetKeyLastUsage } from './key-usage.js';
import { GetPublicKey } from './public-key.js';
import { PeerCopyDeleted, PeerSetView, PeerSyncReplica } from './peer-replication.js';
import { ReplicateKey, UpdatePrimaryRegion } from './replication.js';
import { Sign, Verify } from './sign.js';
import { CreateGrant, ListGrants, ListRetirableGrants, RetireGrant, RevokeGrant } from './grants.js';
import { GetKeyPolicy, ListKeyPolicies, PutKeyPolicy } from './policies.js';
import { ListResourceTags, TagResource, UntagResource } from './tags.js';
import { CancelKeyDeletion, ScheduleKeyDeletion } from './deletion.js';
import { DeleteImportedKeyMaterial, GetParametersForImport, ImportKeyMaterial } from './import.js';
import {
  DisableKeyRotation, EnableKeyRotation, GetKeyRotationStatus, ListKeyRotations, RotateKeyOnDemand,
} from './rotation.js';

/** Every operation the core serves, by its AWS name. Front doors dispatch through this table. */
export const operations: Readonly<Record<string, Operation>> = {
  CreateKey, DescribeKey, ListKeys, EnableKey, DisableKey, UpdateKeyDescription,
  Encrypt, Decrypt, ReEncrypt, GenerateDataKey, GenerateDataKeyWithoutPlaintext, GenerateRandom,
  CreateAlias, UpdateAlias, DeleteAlias, ListAliases,
  TagResource, UntagResource, ListResourceTags,
  Sign, Verify, GetPublicKey, GenerateMac, VerifyMac, GenerateDataKeyPair, GenerateDataKeyPairWithoutPlaintext,
  DeriveSharedSecret,
  EnableKeyRotation, DisableKeyRotation, GetKeyRotationStatus, RotateKeyOnDemand, ListKeyRotations,
  ScheduleKeyDeletion, CancelKeyDeletion,
  GetParametersForImport, ImportKeyMaterial, DeleteImportedKeyMaterial,
  PutKeyPolicy, GetKeyPolicy, ListKeyPolicies,
  CreateGrant, ListGrants, ListRetirableGrants, RetireGrant, RevokeGrant,
  CreateCustomKeyStore, DescribeCustomKeyStores, ConnectCustomKeyStore, DisconnectCustomKeyStore, UpdateCustomKeyStore,
  DeleteCustomKeyStore,
  GetKeyLastUsage,
  ReplicateKey, UpdatePrimaryRegion,
  // The peer protocol between sites (issue 13): answered only for peers' principals.
  PeerSyncReplica, PeerCopyDeleted, PeerSetView,
} as Record<string, Operation>;
