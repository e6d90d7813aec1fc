import { Errors } from '../errors.js';
import type { KeyRecord } from '../store/types.js';
import { aliasArn, isKeyId, keyArn, PARTITION, parseKmsArn } from './arn.js';
import type { KmsDeps, RequestContext } from './context.js';
import { checkKeyState } from './key-states.js';
import { withStoreState } from './token-for.js';

/**
 * Resolves a KeyId parameter: key id, key ARN, and (where the operation allows) alias name or
 * alias ARN — exactly AWS's four forms; `key/<uuid>` alone is none of them. Unqualified names
 * are looked up in the caller's account. An ARN of another partition or Region never names a
 * local key (NotFoundException, as AWS answers an ARN it does not serve).
 */
export function resolveKey(deps: KmsDeps, ctx: RequestContext, ref: string, allowAlias = true): KeyRecord {
  let accountId = ctx.principal.accountId;
  let resource = ref;
  if (ref.startsWith('arn:')) {
    const arn = parseKmsArn(ref);
    if (!arn || (!allowAlias && arn.resource.startsWith('alias/'))) throw Errors.notFound(`Invalid arn ${ref}`);
    // Another region's ARN: AWS answers NotFoundException "Invalid arn <region>" (the region of the ARN).
    if (arn.partition !== PARTITION) throw Errors.notFound(`Invalid arn ${ref}`);
    if (arn.region !== deps.region) throw Errors.notFound(`Invalid arn ${arn.region}`);
    accountId = arn.accountId;
    resource = arn.resource;
  }
  let keyId: string;
  if (resource.startsWith('alias/')) {
    if (!allowAlias) throw Errors.notFound(`Invalid keyId '${ref}'`);
    const alias = deps.store.getAlias(accountId, resource);
    if (!alias) throw Errors.notFound(`Alias ${aliasArn(deps.region, accountId, resource)} is not found.`);
    keyId = alias.keyId;
  } else {
    // Inside an ARN the resource is key/<id>; outside one only the bare key id is a key id.
    keyId = resource !== ref && resource.startsWith('key/') ? resource.slice(4) : resource;
    if (!isKeyId(keyId)) throw Errors.notFound(`Invalid keyId '${ref}'`);
  }
  const key = deps.store.getKey(keyId);
  if (!key || key.accountId !== accountId || key.state === 'Creating') {
    throw Errors.notFound(`Key '${keyArn(deps.region, accountId, keyId)}' does not exist`);
  }
  return withStoreState(deps, key);
}

/** Cryptographic use needs an Enabled key, with AWS's error for each other state (see key-states.ts). */
export function requireUsable(key: KeyRecord): void {
  checkKeyState(key, 'Encrypt');
}
