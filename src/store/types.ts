import type { LifecycleStore } from './lifecycle.js';
import type { KeyStoreTable } from './key-stores.js';
import type { KeyUsageTable } from './key-usage.js';
import type { MultiRegionTable } from './multi-region.js';
import type { CredentialRecord, GrantFilter, GrantRecord, IdentityPolicyRecord } from './authz-records.js';
import type { Page } from './page.js';
import type { PostgresHealth } from '../model/database-health.js';

/** Non-secret metadata. Key material never appears here: a version row names a token object by CKA_ID. */

export type KeyState =
  | 'Creating'
  | 'Enabled'
  | 'Disabled'
  | 'PendingDeletion'
  | 'PendingImport'
  | 'Unavailable'
  /** A Multi-Region primary scheduled for deletion that still has replicas (issue 13). */
  | 'PendingReplicaDeletion'
  /** A Multi-Region key whose primary region is being changed (issue 13). */
  | 'Updating';

export interface KeyRecord {
  keyId: string;
  arn: string;
  accountId: string;
  region: string;
  createdAt: number;
  description: string;
  keyUsage: string;
  keySpec: string;
  origin: string;
  keyManager: 'CUSTOMER' | 'AWS';
  state: KeyState;
  policy: string;
  /** Version used for new encryptions; older versions still decrypt. */
  currentVersion: number;
  deletionDate?: number | undefined;
  /** The custom key store whose token holds the key's material; absent for the default token. */
  customKeyStoreId?: string | undefined;
}

/** 'pending' rows exist only between "row written" and "token object confirmed" (see reconcile). */
export type MaterialState = 'pending' | 'active';

export interface KeyMaterialRecord {
  keyId: string;
  version: number;
  /** AWS's KeyMaterialId: 64 hex characters. */
  materialId: string;
  /** CKA_ID of the token object. */
  objectId: Buffer;
  state: MaterialState;
  createdAt: number;
}

export interface AliasRecord {
  accountId: string;
  aliasName: string;
  keyId: string;
  createdAt: number;
  updatedAt: number;
}

export interface Tag {
  TagKey: string;
  TagValue: string;
}

export type { Page };

export type KeyPatch = Partial<Pick<KeyRecord, 'description' | 'state' | 'policy' | 'currentVersion' | 'deletionDate'>>;

/** A row that changed, as the change feed of a shared store names it (entity '*': anything may have). */
export interface StoreChange {
  seq: number;
  /** The table: keys, key_materials, aliases, grants, credentials, identity_policies, custom_key_stores. */
  entity: string;
  /** The row's key (key id, access key id, principal ARN, store id, account/alias name). */
  ref: string;
}

/** What a store shared by several daemons (PostgreSQL) adds: cluster-wide locks, leadership, change feed. */
export interface SharedStore {
  /** This daemon process's id in the cluster (unique per start). */
  instanceId: string;
  /** Serialises one key's lifecycle changes across nodes; resolves to the unlock function. */
  lockKey(keyId: string): Promise<() => Promise<void>>;
  /** Tries to become the node that runs background jobs; true while it is. */
  tryLead(): Promise<boolean>;
  isLeader(): boolean;
  /** The caches are confirmed current (the change feed answered recently). */
  fresh(): boolean;
  /** How this node sees the shared database (readiness, metrics). */
  health(): PostgresHealth;
  onChange(listener: (change: StoreChange) => void): void;
  /** Import-token rows whose writer is gone (hex ids): reconciliation may remove those without an object. */
  abandonedImportTokenIds(): Set<string>;
  /**
   * Records whether this node reaches a custom key store's token now; answers whether another
   * live node reports reaching it (rows of instances that are gone are removed first).
   */
  reportKeyStoreReach(storeId: string, reachable: boolean, errorCode?: string): boolean;
  /** Custom key stores left CONNECTING or DISCONNECTING by an instance that is gone: the leader finishes them. */
  abandonedKeyStoreSteps(): string[];
  /** Ends the cluster link: PostgreSQL frees this instance's locks (leader, keys, pending rows). */
  release(): Promise<void>;
}

/**
 * The storage interface. SQLite implements it now; a PostgreSQL backend can implement it
 * later. Every method is a single transaction.
 */
export interface MetadataStore {
  /** Writes the key row (state Creating) and its first version row (pending) together. */
  createKeyPending(key: KeyRecord, material: KeyMaterialRecord, tags: Tag[]): void;
  /** Marks a pending version active and, for a new key, the key Enabled. */
  activateMaterial(keyId: string, version: number, keyState?: KeyState): void;
  getKey(keyId: string): KeyRecord | undefined;
  listKeys(accountId: string, limit: number, marker?: string): Page<KeyRecord>;
  updateKey(keyId: string, patch: KeyPatch): KeyRecord;
  /** Removes the key and everything that hangs off it (versions, aliases, tags). */
  deleteKey(keyId: string): void;

  getMaterial(keyId: string, version: number): KeyMaterialRecord | undefined;
  listMaterials(keyId: string): KeyMaterialRecord[];
  listPendingMaterials(): KeyMaterialRecord[];
  deleteMaterial(keyId: string, version: number): void;
  /** CKA_IDs (hex) of every version row, pending or active. */
  allObjectIds(): Set<string>;
  /** CKA_IDs (hex) of the version rows of keys in one custom key store (null: the default token). */
  objectIdsIn(customKeyStoreId: string | null): Set<string>;

  getAlias(accountId: string, aliasName: string): AliasRecord | undefined;
  listAliases(accountId: string, limit: number, marker?: string, keyId?: string): Page<AliasRecord>;
  countAliasesForKey(keyId: string): number;
  createAlias(alias: AliasRecord): void;
  updateAlias(accountId: string, aliasName: string, keyId: string, updatedAt: number): void;
  deleteAlias(accountId: string, aliasName: string): void;

  getTags(keyId: string): Tag[];
  /** Upserts tags; the caller has checked the per-key limit. */
  putTags(keyId: string, tags: Tag[]): void;
  removeTags(keyId: string, tagKeys: string[]): void;

  /** Number of keys in each state, all accounts (metrics). */
  countKeysByState?(): Record<string, number>;

  close(): void;
  /** Present when several daemons share the store (src/store/pg); absent for SQLite (one daemon owns the file). */
  readonly shared?: SharedStore | undefined;

  // ── Key lifecycle (issue #4): rotation, deletion, imported key material ──
  /** Rotation settings, material history and import tokens, in side tables (src/store/lifecycle.ts). */
  readonly lifecycle: LifecycleStore;
  /** Runs fn in one transaction (nested calls become savepoints); caches are dropped if it throws. */
  transaction<T>(fn: () => T): T;
  /** Writes a key row that has no key material yet (Origin EXTERNAL, state PendingImport). */
  createKey(key: KeyRecord, tags: Tag[]): void;
  /** Writes a 'pending' version row for a key that already exists (rotation, import). */
  addPendingMaterial(material: KeyMaterialRecord): void;
  // Custom key stores (issue #6).
  readonly keyStores: KeyStoreTable;
  /** GetKeyLastUsage (issue #12): last successful cryptographic use per key, written in batches. */
  readonly keyUsage: KeyUsageTable;
  /** Multi-Region keys (issue 13): where the primary and the replicas of each copy held here are. */
  readonly multiRegion: MultiRegionTable;
  // Authorization (issue #3): credentials, identity policies, grants.
  listCredentials(): CredentialRecord[];
  putCredential(c: CredentialRecord): void;
  setCredentialEnabled(accessKeyId: string, enabled: boolean): void;
  deleteCredential(accessKeyId: string): void;
  listIdentityPolicies(): IdentityPolicyRecord[];
  putIdentityPolicy(p: IdentityPolicyRecord): void;
  deleteIdentityPolicy(principalArn: string, policyName: string): void;
  /** Every grant on the key, cached in memory until a grant of the key changes. */
  grantsForKey(keyId: string): readonly GrantRecord[];
  getGrant(grantId: string): GrantRecord | undefined;
  listGrants(keyId: string, limit: number, marker?: string, filter?: GrantFilter): Page<GrantRecord>;
  listRetirableGrants(retiringPrincipal: string, limit: number, marker?: string): Page<GrantRecord>;
  createGrant(g: GrantRecord): void;
  deleteGrant(grantId: string): void;
}
