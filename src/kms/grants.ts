import { z } from 'zod';
import { authorize } from '../authz/authorize.js';
import {
  GRANT_ID, GRANT_OPERATIONS, grantIdOfToken, newGrantId, newGrantToken, sameGrant,
} from '../authz/grant-rules.js';
import { parsePrincipal } from '../authz/policy-document.js';
import { Errors, KmsError } from '../errors.js';
import type { GrantConstraintsRecord, GrantRecord } from '../store/authz-records.js';
import type { KeyRecord } from '../store/types.js';
import { keyArn } from './arn.js';
import { operation, type KmsDeps, type RequestContext } from './context.js';
import { resolveKey } from './key-ref.js';
import {
  DRY_RUN, ENCRYPTION_CONTEXT, GRANT_TOKENS, KEY_ID, LIMIT, list, MARKER, oneOf, str,
} from './validation.js';
import { dryRunStop } from './request-flags.js';

/** AWS's quotas: grants per KMS key, and the size of each encryption-context constraint. */
export const grantLimits = { perKey: 50_000, constraintPairs: 8, constraintChars: 384 };

const PRINCIPAL = str(1, 256, /^[\w+=,.@:/-]+$/);
const GRANT_NAME = str(1, 256, /^[a-zA-Z0-9:/_-]+$/);
const GRANT_ID_PARAM = str(1, 128);
const CONSTRAINTS = z
  .object({ EncryptionContextSubset: ENCRYPTION_CONTEXT, EncryptionContextEquals: ENCRYPTION_CONTEXT })
  .optional();

const invalidGrantId = (id: string) => new KmsError('InvalidGrantIdException', `Invalid grant ID: ${id}`);
const SERVICE_PRINCIPAL = /^[a-z0-9-]+(\.[a-z0-9-]+)*\.amazonaws\.com(\.cn)?$/;

function checkPrincipal(value: string, member: string): void {
  if (parsePrincipal(value) || SERVICE_PRINCIPAL.test(value)) return;
  throw Errors.validation(`${member} '${value}' is not a valid principal: use an account id or the ARN of an account, user or role.`);
}

/** Operations a grant may allow on a key of this kind (plus CreateGrant, RetireGrant, DescribeKey). */
function operationsFor(key: KeyRecord): Set<string> {
  const ops = new Set(['CreateGrant', 'RetireGrant', 'DescribeKey']);
  const add = (...o: string[]) => o.forEach((x) => ops.add(x));
  if (key.keySpec === 'SYMMETRIC_DEFAULT') {
    add('Encrypt', 'Decrypt', 'ReEncryptFrom', 'ReEncryptTo', 'GenerateDataKey', 'GenerateDataKeyWithoutPlaintext',
      'GenerateDataKeyPair', 'GenerateDataKeyPairWithoutPlaintext');
  } else if (key.keyUsage === 'ENCRYPT_DECRYPT') add('Encrypt', 'Decrypt', 'ReEncryptFrom', 'ReEncryptTo', 'GetPublicKey');
  else if (key.keyUsage === 'SIGN_VERIFY') add('Sign', 'Verify', 'GetPublicKey');
  else if (key.keyUsage === 'GENERATE_VERIFY_MAC') add('GenerateMac', 'VerifyMac');
  else if (key.keyUsage === 'KEY_AGREEMENT') add('DeriveSharedSecret', 'GetPublicKey');
  return ops;
}

function checkConstraints(c: GrantConstraintsRecord | undefined, key: KeyRecord): void {
  if (!c) return;
  for (const [name, ec] of Object.entries(c)) {
    if (!ec) continue;
    const pairs = Object.entries(ec as Record<string, string>);
    if (pairs.length > grantLimits.constraintPairs) {
      throw Errors.validation(`${name} can have at most ${grantLimits.constraintPairs} encryption context pairs.`);
    }
    const chars = pairs.reduce((n, [k, v]) => n + k.length + v.length, 0);
    if (chars > grantLimits.constraintChars) {
      throw Errors.validation(`${name} cannot exceed ${grantLimits.constraintChars} characters.`);
    }
  }
  if ((c.EncryptionContextEquals || c.EncryptionContextSubset) && key.keySpec !== 'SYMMETRIC_DEFAULT') {
    throw Errors.validation('Encryption context grant constraints are only valid on symmetric encryption KMS keys.');
  }
}


function grantEntry(deps: KmsDeps, g: GrantRecord) {
  return {
    KeyId: keyArn(deps.region, g.issuingAccount, g.keyId),
    GrantId: g.grantId,
    Name: g.name,
    CreationDate: new Date(g.createdAt),
    GranteePrincipal: g.granteePrincipal,
    RetiringPrincipal: g.retiringPrincipal,
    IssuingAccount: `arn:aws:iam::${g.issuingAccount}:root`,
    Operations: g.operations,
    Constraints: g.constraints,
  };
}

export const CreateGrant = operation(
  z.object({
    KeyId: KEY_ID,
    GranteePrincipal: PRINCIPAL,
    RetiringPrincipal: PRINCIPAL.optional(),
    Operations: list(oneOf(GRANT_OPERATIONS), 1, GRANT_OPERATIONS.length * 4),
    Constraints: CONSTRAINTS,
    GrantTokens: GRANT_TOKENS,
    Name: GRANT_NAME.optional(),
    DryRun: DRY_RUN,
  }),
  (deps, ctx, input) => {
    const key = resolveKey(deps, ctx, input.KeyId, false);
    checkPrincipal(input.GranteePrincipal, 'GranteePrincipal');
    if (input.RetiringPrincipal !== undefined) checkPrincipal(input.RetiringPrincipal, 'RetiringPrincipal');
    const constraints = input.Constraints && (input.Constraints.EncryptionContextEquals || input.Constraints.EncryptionContextSubset)
      ? input.Constraints
      : undefined;
    checkConstraints(constraints, key);
    const operations = [...new Set(input.Operations)];
    const allowed = operationsFor(key);
    const invalid = operations.filter((o) => !allowed.has(o));
    if (invalid.length) {
      throw Errors.validation(`Grant operations ${invalid.join(', ')} are not valid for ${key.arn} (${key.keySpec}, ${key.keyUsage}).`);
    }
    authorize(ctx, 'CreateGrant', key, { newGrant: { operations, constraints } });
    if (key.state === 'Disabled') throw Errors.disabled(`${key.arn} is disabled.`);
    if (key.state === 'PendingDeletion') throw Errors.invalidState(`${key.arn} is pending deletion.`);
    dryRunStop(input.DryRun);

    const params = {
      name: input.Name,
      granteePrincipal: input.GranteePrincipal,
      retiringPrincipal: input.RetiringPrincipal,
      operations,
      constraints,
    };
    // One transaction from the idempotency check to the insert: with a shared store it also
    // holds the key's grant lock, so a retry on another node finds the grant (README, High availability).
    return deps.store.transaction(() => {
      const existing = deps.store.grantsForKey(key.keyId);
      if (input.Name !== undefined) {
        // A retry of the same request (same name and parameters) returns the grant it created.
        const same = existing.find((g) => sameGrant(g, params));
        if (same) return { GrantToken: same.token, GrantId: same.grantId };
      }
      if (existing.length >= grantLimits.perKey) {
        throw Errors.limitExceeded(`A KMS key can have at most ${grantLimits.perKey} grants.`);
      }
      const grantId = newGrantId();
      const grant: GrantRecord = {
        grantId,
        keyId: key.keyId,
        ...params,
        issuingAccount: key.accountId,
        createdAt: deps.clock.now().getTime(),
        token: newGrantToken(grantId),
      };
      deps.store.createGrant(grant);
      return { GrantToken: grant.token, GrantId: grantId };
    });
  },
);

export const ListGrants = operation(
  z.object({
    KeyId: KEY_ID,
    Limit: LIMIT,
    Marker: MARKER,
    GrantId: GRANT_ID_PARAM.optional(),
    GranteePrincipal: PRINCIPAL.optional(),
  }),
  (deps, ctx, input) => {
    const key = resolveKey(deps, ctx, input.KeyId, false);
    if (input.GrantId !== undefined && !GRANT_ID.test(input.GrantId)) throw invalidGrantId(input.GrantId);
    authorize(ctx, 'ListGrants', key);
    const limit = Math.min(input.Limit ?? 50, 100);
    const page = deps.store.listGrants(key.keyId, limit, input.Marker, {
      grantId: input.GrantId,
      granteePrincipal: input.GranteePrincipal,
    });
    return {
      Grants: page.items.map((g) => grantEntry(deps, g)),
      NextMarker: page.nextMarker,
      Truncated: page.nextMarker !== undefined,
    };
  },
);

export const ListRetirableGrants = operation(
  z.object({ Limit: LIMIT, Marker: MARKER, RetiringPrincipal: PRINCIPAL }),
  (deps, ctx, input) => {
    checkPrincipal(input.RetiringPrincipal, 'RetiringPrincipal');
    authorize(ctx, 'ListRetirableGrants');
    const limit = Math.min(input.Limit ?? 50, 100);
    // Only principals of the caller's own account can be asked about (as in AWS).
    const owner = parsePrincipal(input.RetiringPrincipal)?.account;
    const page = owner === ctx.principal.accountId
      ? deps.store.listRetirableGrants(input.RetiringPrincipal, limit, input.Marker)
      : { items: [], nextMarker: undefined };
    return {
      Grants: page.items.map((g) => grantEntry(deps, g)),
      NextMarker: page.nextMarker,
      Truncated: page.nextMarker !== undefined,
    };
  },
);

function authorizeRetire(ctx: RequestContext, grant: GrantRecord, key: KeyRecord): void {
  if (ctx.authz) ctx.authz.checkRetire(ctx, grant, key);
  else authorize(ctx, 'RetireGrant', key);
}

export const RetireGrant = operation(
  z.object({
    GrantToken: str(1, 8192).optional(),
    KeyId: KEY_ID.optional(),
    GrantId: GRANT_ID_PARAM.optional(),
    DryRun: DRY_RUN,
  }),
  (deps, ctx, input) => {
    let grant: GrantRecord | undefined;
    let key: KeyRecord | undefined;
    if (input.GrantToken !== undefined) {
      const id = grantIdOfToken(input.GrantToken);
      if (!id) throw Errors.invalidGrantToken('The grant token in the request is not valid.');
      if (input.GrantId !== undefined && input.GrantId !== id) {
        throw Errors.validation('The GrantId does not identify the grant of the GrantToken.');
      }
      grant = deps.store.getGrant(id);
      if (!grant || grant.token !== input.GrantToken) throw Errors.notFound('Grant not found.');
      if (input.KeyId !== undefined) {
        key = resolveKey(deps, ctx, input.KeyId, false);
        if (key.keyId !== grant.keyId) throw Errors.notFound('Grant not found.');
      }
    } else if (input.KeyId !== undefined && input.GrantId !== undefined) {
      key = resolveKey(deps, ctx, input.KeyId, false);
      if (!GRANT_ID.test(input.GrantId)) throw invalidGrantId(input.GrantId);
      grant = deps.store.getGrant(input.GrantId);
      if (!grant || grant.keyId !== key.keyId) throw Errors.notFound(`Grant ${input.GrantId} not found.`);
    } else {
      throw Errors.validation('Specify either a GrantToken, or a KeyId and a GrantId.');
    }
    key ??= deps.store.getKey(grant.keyId);
    if (!key) throw Errors.notFound('Grant not found.');
    authorizeRetire(ctx, grant, key);
    dryRunStop(input.DryRun);
    deps.store.deleteGrant(grant.grantId);
    return {};
  },
);

export const RevokeGrant = operation(
  z.object({ KeyId: KEY_ID, GrantId: GRANT_ID_PARAM, DryRun: DRY_RUN }),
  (deps, ctx, input) => {
    const key = resolveKey(deps, ctx, input.KeyId, false);
    if (!GRANT_ID.test(input.GrantId)) throw invalidGrantId(input.GrantId);
    authorize(ctx, 'RevokeGrant', key);
    const grant = deps.store.getGrant(input.GrantId);
    if (!grant || grant.keyId !== key.keyId) throw Errors.notFound(`Grant ${input.GrantId} not found.`);
    dryRunStop(input.DryRun);
    deps.store.deleteGrant(grant.grantId);
    return {};
  },
);
