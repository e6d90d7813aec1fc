import { authorize } from '../authz/authorize.js';
import { Errors } from '../errors.js';
import type { KeyMaterialRecord, KeyRecord } from '../store/types.js';
import type { KmsDeps, RequestContext } from './context.js';
import { requireUsable, resolveKey } from './key-ref.js';
import { requireUsage, type KeyUsage } from './key-specs.js';
import { materialOf } from './material.js';

/**
 * The common start of every asymmetric and HMAC operation, in AWS's order: resolve the key,
 * authorize, check its usage, check its state. Returns the key and its current material.
 */
export function keyFor(
  deps: KmsDeps,
  ctx: RequestContext,
  ref: string,
  action: string,
  usage: KeyUsage,
): { key: KeyRecord; material: KeyMaterialRecord } {
  return checkedKey(deps, ctx, resolveKey(deps, ctx, ref), action, usage);
}

/** keyFor() for a key the caller has already resolved. */
export function checkedKey(
  deps: KmsDeps,
  ctx: RequestContext,
  key: KeyRecord,
  action: string,
  usage: KeyUsage,
): { key: KeyRecord; material: KeyMaterialRecord } {
  authorize(ctx, action, key);
  requireUsage(key, usage, action);
  requireUsable(key);
  const material = materialOf(deps, key, key.currentVersion);
  if (!material) throw Errors.keyUnavailable(`The key material for ${key.arn} is unavailable.`);
  return { key, material };
}


