import type { KeyRecord } from '../store/types.js';
import type { KmsDeps } from './context.js';
import { importedKeyMetadata } from './import.js';
import { keyAlgorithms } from './key-specs.js';
import { multiRegionMetadata } from './multi-region.js';
import { withStoreState } from './token-for.js';

/** The KeyMetadata structure AWS returns from CreateKey and DescribeKey. */
export function keyMetadata(deps: KmsDeps, stored: KeyRecord) {
  const key = withStoreState(deps, stored);
  const store = key.customKeyStoreId === undefined ? undefined : deps.store.keyStores.get(key.customKeyStoreId);
  const current = deps.store.getMaterial(key.keyId, key.currentVersion);
  return {
    AWSAccountId: key.accountId,
    KeyId: key.keyId,
    Arn: key.arn,
    CreationDate: new Date(key.createdAt),
    Enabled: key.state === 'Enabled',
    Description: key.description,
    KeyUsage: key.keyUsage,
    KeyState: key.state,
    DeletionDate: key.deletionDate === undefined ? undefined : new Date(key.deletionDate),
    Origin: key.origin,
    KeyManager: key.keyManager,
    CustomerMasterKeySpec: key.keySpec,
    KeySpec: key.keySpec,
    ...keyAlgorithms(deps, key),
    ...multiRegionMetadata(deps, key),
    // Keys in an AWS CloudHSM key store (issue #6): the store, and the HSM (cluster) it is connected to.
    CustomKeyStoreId: key.customKeyStoreId,
    CloudHsmClusterId: store?.hsmName,
    CurrentKeyMaterialId: current?.state === 'active' ? current.materialId : undefined,
    // Origin EXTERNAL: ExpirationModel, ValidTo, and the current material id even while it is not imported.
    ...importedKeyMetadata(deps, key),
  };
}
