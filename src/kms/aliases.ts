import { z } from 'zod';
import { authorize, authorizeAlias } from '../authz/authorize.js';
import { Errors } from '../errors.js';
import { aliasArn } from './arn.js';
import { operation, type KmsDeps, type RequestContext } from './context.js';
import { resolveKey } from './key-ref.js';
import { checkKeyState } from './key-states.js';
import { KEY_ID, LIMIT, MARKER, str } from './validation.js';

const ALIAS_NAME = str(1, 256, /^[a-zA-Z0-9:/_-]+$/);

/** Alias names must start with alias/ and may not use the prefix AWS reserves for its own keys. */
function checkAliasName(name: string): void {
  if (!name.startsWith('alias/') || name.length === 'alias/'.length) {
    throw Errors.validation('Alias must start with the prefix "alias/". Please see https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html');
  }
  if (name.startsWith('alias/aws/')) {
    throw Errors.invalidAliasName('Alias names that begin with alias/aws/ are reserved for AWS managed keys.');
  }
}

/** The target of an alias: a customer key of the caller's account, referenced by id or ARN. */
function targetKey(deps: KmsDeps, ctx: RequestContext, ref: string, action: 'CreateAlias' | 'UpdateAlias') {
  const key = resolveKey(deps, ctx, ref, false);
  authorize(ctx, action, key);
  checkKeyState(key, action);
  if (key.accountId !== ctx.principal.accountId) {
    throw Errors.accessDenied('An alias and its target key must be in the same account.');
  }
  return key;
}

export const CreateAlias = operation(z.object({ AliasName: ALIAS_NAME, TargetKeyId: KEY_ID }), (deps, ctx, input) => {
  checkAliasName(input.AliasName);
  authorizeAlias(ctx, 'CreateAlias', aliasArn(deps.region, ctx.principal.accountId, input.AliasName));
  const key = targetKey(deps, ctx, input.TargetKeyId, 'CreateAlias');
  const accountId = ctx.principal.accountId;
  if (deps.store.getAlias(accountId, input.AliasName)) {
    throw Errors.alreadyExists(`An alias with the name ${aliasArn(deps.region, accountId, input.AliasName)} already exists`);
  }
  const now = deps.clock.now().getTime();
  deps.store.createAlias({ accountId, aliasName: input.AliasName, keyId: key.keyId, createdAt: now, updatedAt: now });
  return {};
});

function existingAlias(deps: KmsDeps, ctx: RequestContext, name: string) {
  checkAliasName(name);
  const accountId = ctx.principal.accountId;
  const alias = deps.store.getAlias(accountId, name);
  if (!alias) throw Errors.notFound(`Alias ${aliasArn(deps.region, accountId, name)} is not found.`);
  return alias;
}

export const UpdateAlias = operation(z.object({ AliasName: ALIAS_NAME, TargetKeyId: KEY_ID }), (deps, ctx, input) => {
  const alias = existingAlias(deps, ctx, input.AliasName);
  authorizeAlias(ctx, 'UpdateAlias', aliasArn(deps.region, alias.accountId, alias.aliasName));
  const current = deps.store.getKey(alias.keyId);
  if (current) authorize(ctx, 'UpdateAlias', current);
  const key = targetKey(deps, ctx, input.TargetKeyId, 'UpdateAlias');
  if (current && (current.keyUsage !== key.keyUsage || current.keySpec !== key.keySpec)) {
    throw Errors.validation('An alias can only be moved to a key with the same key usage and key spec.');
  }
  deps.store.updateAlias(alias.accountId, alias.aliasName, key.keyId, deps.clock.now().getTime());
  return {};
});

export const DeleteAlias = operation(z.object({ AliasName: ALIAS_NAME }), (deps, ctx, input) => {
  const alias = existingAlias(deps, ctx, input.AliasName);
  authorizeAlias(ctx, 'DeleteAlias', aliasArn(deps.region, alias.accountId, alias.aliasName));
  const key = deps.store.getKey(alias.keyId);
  if (key) authorize(ctx, 'DeleteAlias', key);
  deps.store.deleteAlias(alias.accountId, alias.aliasName);
  return {};
});

export const ListAliases = operation(
  z.object({ KeyId: KEY_ID.optional(), Limit: LIMIT, Marker: MARKER }),
  (deps, ctx, input) => {
    const key = input.KeyId === undefined ? undefined : resolveKey(deps, ctx, input.KeyId, false);
    // Identity policies only; naming another account's key is refused (ListAliases is not cross-account).
    authorize(ctx, 'ListAliases', key && key.accountId !== ctx.principal.accountId ? key : undefined);
    const accountId = key?.accountId ?? ctx.principal.accountId;
    const page = deps.store.listAliases(accountId, input.Limit ?? 50, input.Marker, key?.keyId);
    return {
      Aliases: page.items.map((a) => ({
        AliasName: a.aliasName,
        AliasArn: aliasArn(deps.region, a.accountId, a.aliasName),
        TargetKeyId: a.keyId,
        CreationDate: new Date(a.createdAt),
        LastUpdatedDate: new Date(a.updatedAt),
      })),
      NextMarker: page.nextMarker,
      Truncated: page.nextMarker !== undefined,
    };
  },
);
