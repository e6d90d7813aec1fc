import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { authorize } from '../authz/authorize.js';
import { Errors } from '../errors.js';
import type { Token } from '../hsm/token.js';
import type { CustomKeyStoreRecord } from '../store/key-stores.js';
import { operation, type KmsDeps, type RequestContext } from './context.js';
import { sharedStatus, type KeyStoreConnections } from './key-store-connections.js';
import { notConnected } from './token-for.js';
import { LIMIT, MARKER, oneOf, str } from './validation.js';

/**
 * The AWS custom key store API for AWS_CLOUDHSM key stores (issue #6): each store is backed by
 * an HSM from configuration (`hsms`, named like CloudHSM cluster ids) and logs in to its token
 * with the store's KeyStorePassword. Connection state lives in the registry
 * (key-store-registry.ts); this file holds the six operations, their checks and their errors.
 * All six are identity-level: authorize(ctx, '<Operation>') with no key, like AWS's IAM-only
 * permissions for them. Cross-account use is refused by looking stores up in the caller's account.
 */

const CLUSTER_ID = str(19, 24, /^cluster-[2-7a-zA-Z]{11,16}$/);
const NAME = str(1, 256);
const PASSWORD = str(7, 32);
const STORE_ID = str(1, 64);
/** Members that belong to external key stores; accepted by the schema so they can be refused clearly. */
const XKS_MEMBERS = {
  XksProxyUriEndpoint: str(10, 128).optional(),
  XksProxyUriPath: str(10, 128).optional(),
  XksProxyVpcEndpointServiceName: str(20, 64).optional(),
  XksProxyVpcEndpointServiceOwner: str(12, 12).optional(),
  XksProxyAuthenticationCredential: z.object({ AccessKeyId: str(20, 30), RawSecretAccessKey: str(43, 64) }).optional(),
  XksProxyConnectivity: oneOf(['PUBLIC_ENDPOINT', 'VPC_ENDPOINT_SERVICE']).optional(),
};

function registryOf(deps: KmsDeps): KeyStoreConnections {
  if (!deps.keyStores) throw Errors.unsupported('Custom key stores are not enabled in this daemon.');
  return deps.keyStores;
}

/** The caller's store with this id, or CustomKeyStoreNotFoundException. */
function storeById(deps: KmsDeps, ctx: RequestContext, id: string): CustomKeyStoreRecord {
  const rec = deps.store.keyStores.get(id);
  if (!rec || rec.accountId !== ctx.principal.accountId) {
    throw Errors.customKeyStoreNotFound(`Custom key store ${id} does not exist in this account and Region.`);
  }
  return rec;
}

function refuseXks(input: Record<string, unknown>): void {
  const given = Object.keys(XKS_MEMBERS).filter((k) => input[k] !== undefined);
  if (given.length) {
    throw Errors.validation(`${given.join(', ')} ${given.length === 1 ? 'is' : 'are'} valid only for custom key stores of type EXTERNAL_KEY_STORE.`);
  }
}

function hsmNamed(deps: KmsDeps, name: string) {
  const hsm = registryOf(deps).hsms[name];
  if (!hsm) throw Errors.cloudHsmClusterNotFound(`KMS cannot find the CloudHSM cluster with the specified cluster ID: ${name}.`);
  return hsm;
}

/** PEM texts compared without their line breaks and surrounding blanks. */
const samePem = (a: string, b: string) => a.replace(/\s+/g, '') === b.replace(/\s+/g, '');

const newStoreId = () => `cks-${randomBytes(9).toString('hex').slice(0, 17)}`;

export const CreateCustomKeyStore = operation(
  z.object({
    CustomKeyStoreName: NAME,
    CloudHsmClusterId: CLUSTER_ID.optional(),
    TrustAnchorCertificate: str(1, 5000).optional(),
    KeyStorePassword: PASSWORD.optional(),
    CustomKeyStoreType: oneOf(['AWS_CLOUDHSM', 'EXTERNAL_KEY_STORE']).optional(),
    ...XKS_MEMBERS,
  }),
  async (deps, ctx, input) => {
    const registry = registryOf(deps);
    if (input.CustomKeyStoreType === 'EXTERNAL_KEY_STORE') {
      throw Errors.unsupported(
        'External key stores (EXTERNAL_KEY_STORE) are not supported: this daemon keeps keys in PKCS#11 tokens (AWS_CLOUDHSM key stores).',
      );
    }
    refuseXks(input);
    if (input.CloudHsmClusterId === undefined || input.KeyStorePassword === undefined) {
      throw Errors.validation('CloudHsmClusterId and KeyStorePassword are required for custom key stores of type AWS_CLOUDHSM.');
    }
    authorize(ctx, 'CreateCustomKeyStore');
    const hsm = hsmNamed(deps, input.CloudHsmClusterId);
    if (hsm.trustAnchorCertificate !== undefined) {
      if (input.TrustAnchorCertificate === undefined) {
        throw Errors.validation(`TrustAnchorCertificate is required: HSM ${input.CloudHsmClusterId} has a trust anchor certificate.`);
      }
      if (!samePem(hsm.trustAnchorCertificate, input.TrustAnchorCertificate)) {
        throw Errors.incorrectTrustAnchor(`The trust anchor certificate is not the trust anchor certificate of ${input.CloudHsmClusterId}.`);
      }
    }
    const id = newStoreId();
    // Sealed before the uniqueness checks: from here to the insert nothing awaits, so two
    // concurrent requests cannot both pass them.
    const sealedPassword = await registry.sealPassword(id, input.KeyStorePassword);
    const accountId = ctx.principal.accountId;
    if (deps.store.keyStores.getByName(accountId, input.CustomKeyStoreName)) {
      throw Errors.customKeyStoreNameInUse(`A custom key store named ${input.CustomKeyStoreName} already exists in this account and Region.`);
    }
    if (deps.store.keyStores.getByHsm(input.CloudHsmClusterId)) {
      throw Errors.cloudHsmClusterInUse(`The CloudHSM cluster ${input.CloudHsmClusterId} is already associated with a custom key store.`);
    }
    deps.store.keyStores.insert({
      id, accountId, name: input.CustomKeyStoreName, type: 'AWS_CLOUDHSM', hsmName: input.CloudHsmClusterId,
      trustAnchor: input.TrustAnchorCertificate ?? hsm.trustAnchorCertificate, sealedPassword,
      createdAt: deps.clock.now().getTime(), wantConnected: false, connectionState: 'DISCONNECTED', connectionEpoch: 0,
    });
    deps.log.info({ customKeyStoreId: id, hsm: input.CloudHsmClusterId }, 'custom key store created');
    return { CustomKeyStoreId: id };
  },
);

const encodeMarker = (id: string) => Buffer.from(id, 'utf8').toString('base64url');
function decodeMarker(marker: string | undefined): string {
  if (marker === undefined) return '';
  const id = Buffer.from(marker, 'base64url').toString('utf8');
  if (encodeMarker(id) !== marker) throw Errors.invalidMarker('The request contains an invalid marker.');
  return id;
}

function entry(deps: KmsDeps, rec: CustomKeyStoreRecord) {
  registryOf(deps);
  const status = sharedStatus(rec);
  return {
    CustomKeyStoreId: rec.id,
    CustomKeyStoreName: rec.name,
    CloudHsmClusterId: rec.hsmName,
    TrustAnchorCertificate: rec.trustAnchor,
    ConnectionState: status.state,
    ConnectionErrorCode: status.errorCode,
    CreationDate: new Date(rec.createdAt),
    CustomKeyStoreType: rec.type,
  };
}

export const DescribeCustomKeyStores = operation(
  z.object({ CustomKeyStoreId: STORE_ID.optional(), CustomKeyStoreName: NAME.optional(), Limit: LIMIT, Marker: MARKER }),
  (deps, ctx, input) => {
    registryOf(deps);
    if (input.CustomKeyStoreId !== undefined && input.CustomKeyStoreName !== undefined) {
      throw Errors.validation('Specify either CustomKeyStoreId or CustomKeyStoreName, not both.');
    }
    authorize(ctx, 'DescribeCustomKeyStores');
    const accountId = ctx.principal.accountId;
    if (input.CustomKeyStoreId !== undefined) {
      return { CustomKeyStores: [entry(deps, storeById(deps, ctx, input.CustomKeyStoreId))], Truncated: false };
    }
    if (input.CustomKeyStoreName !== undefined) {
      const rec = deps.store.keyStores.getByName(accountId, input.CustomKeyStoreName);
      if (!rec) throw Errors.customKeyStoreNotFound(`Custom key store ${input.CustomKeyStoreName} does not exist in this account and Region.`);
      return { CustomKeyStores: [entry(deps, rec)], Truncated: false };
    }
    const page = deps.store.keyStores.list(accountId, input.Limit ?? 100, decodeMarker(input.Marker));
    return {
      CustomKeyStores: page.items.map((r) => entry(deps, r)),
      NextMarker: page.nextMarker === undefined ? undefined : encodeMarker(page.nextMarker),
      Truncated: page.nextMarker !== undefined,
    };
  },
);

export const ConnectCustomKeyStore = operation(z.object({ CustomKeyStoreId: STORE_ID }), (deps, ctx, input) => {
  const registry = registryOf(deps);
  authorize(ctx, 'ConnectCustomKeyStore');
  const rec = storeById(deps, ctx, input.CustomKeyStoreId);
  const { state } = sharedStatus(rec);
  if (state === 'DISCONNECTING' || state === 'FAILED') {
    throw Errors.customKeyStoreInvalidState(
      `Custom key store ${rec.id} is ${state}. ${state === 'FAILED' ? 'Disconnect it (DisconnectCustomKeyStore), correct the error, then connect it again.' : 'Wait until it is DISCONNECTED.'}`,
    );
  }
  // Asynchronous, as in AWS: the store is CONNECTING now; DescribeCustomKeyStores shows the outcome.
  registry.connect(rec.id);
  return {};
});

export const DisconnectCustomKeyStore = operation(z.object({ CustomKeyStoreId: STORE_ID }), async (deps, ctx, input) => {
  const registry = registryOf(deps);
  authorize(ctx, 'DisconnectCustomKeyStore');
  const rec = storeById(deps, ctx, input.CustomKeyStoreId);
  const { state } = sharedStatus(rec);
  if (state === 'DISCONNECTING' || state === 'DISCONNECTED') {
    throw Errors.customKeyStoreInvalidState(`Custom key store ${rec.id} is already ${state}.`);
  }
  await registry.disconnect(rec.id);
  return {};
});

export const UpdateCustomKeyStore = operation(
  z.object({
    CustomKeyStoreId: STORE_ID,
    NewCustomKeyStoreName: NAME.optional(),
    KeyStorePassword: PASSWORD.optional(),
    CloudHsmClusterId: CLUSTER_ID.optional(),
    ...XKS_MEMBERS,
  }),
  async (deps, ctx, input) => {
    const registry = registryOf(deps);
    refuseXks(input);
    authorize(ctx, 'UpdateCustomKeyStore');
    const rec = storeById(deps, ctx, input.CustomKeyStoreId);
    // Sealed first, so that the checks below and the update run without an await in between.
    const sealedPassword = input.KeyStorePassword === undefined ? undefined : await registry.sealPassword(rec.id, input.KeyStorePassword);
    const current = storeById(deps, ctx, input.CustomKeyStoreId);
    const { state } = sharedStatus(current);
    if ((input.KeyStorePassword !== undefined || input.CloudHsmClusterId !== undefined) && state !== 'DISCONNECTED') {
      throw Errors.customKeyStoreInvalidState(
        `Custom key store ${current.id} is ${state}. KeyStorePassword and CloudHsmClusterId can be changed only while it is DISCONNECTED.`,
      );
    }
    if (input.NewCustomKeyStoreName !== undefined && state !== 'CONNECTED' && state !== 'DISCONNECTED') {
      throw Errors.customKeyStoreInvalidState(`Custom key store ${current.id} is ${state}; its name can be changed when it is CONNECTED or DISCONNECTED.`);
    }
    if (input.NewCustomKeyStoreName !== undefined && input.NewCustomKeyStoreName !== current.name) {
      const other = deps.store.keyStores.getByName(current.accountId, input.NewCustomKeyStoreName);
      if (other && other.id !== current.id) {
        throw Errors.customKeyStoreNameInUse(`A custom key store named ${input.NewCustomKeyStoreName} already exists in this account and Region.`);
      }
    }
    if (input.CloudHsmClusterId !== undefined && input.CloudHsmClusterId !== current.hsmName) {
      const next = hsmNamed(deps, input.CloudHsmClusterId);
      const other = deps.store.keyStores.getByHsm(input.CloudHsmClusterId);
      if (other && other.id !== current.id) {
        throw Errors.cloudHsmClusterInUse(`The CloudHSM cluster ${input.CloudHsmClusterId} is already associated with a custom key store.`);
      }
      // Related HSMs hold the same keys: like CloudHSM clusters that share a backup history, they
      // share a trust anchor. Only checkable when both HSMs have one configured.
      const previous = registry.hsms[current.hsmName];
      if (next.trustAnchorCertificate && previous?.trustAnchorCertificate && !samePem(next.trustAnchorCertificate, previous.trustAnchorCertificate)) {
        throw Errors.cloudHsmClusterNotRelated(
          `The CloudHSM cluster ${input.CloudHsmClusterId} has a different trust anchor than ${current.hsmName}; it cannot hold this key store's keys.`,
        );
      }
    }
    deps.store.keyStores.update(current.id, {
      ...(input.NewCustomKeyStoreName !== undefined ? { name: input.NewCustomKeyStoreName } : {}),
      ...(sealedPassword !== undefined ? { sealedPassword } : {}),
      ...(input.CloudHsmClusterId !== undefined ? { hsmName: input.CloudHsmClusterId } : {}),
    });
    deps.log.info(
      {
        customKeyStoreId: current.id,
        renamed: input.NewCustomKeyStoreName !== undefined,
        passwordChanged: sealedPassword !== undefined,
        hsm: input.CloudHsmClusterId,
      },
      'custom key store updated',
    );
    return {};
  },
);

export const DeleteCustomKeyStore = operation(z.object({ CustomKeyStoreId: STORE_ID }), (deps, ctx, input) => {
  const registry = registryOf(deps);
  authorize(ctx, 'DeleteCustomKeyStore');
  const rec = storeById(deps, ctx, input.CustomKeyStoreId);
  const { state } = sharedStatus(rec);
  if (state !== 'DISCONNECTED') {
    throw Errors.customKeyStoreInvalidState(`Custom key store ${rec.id} is ${state}; disconnect it before deleting it.`);
  }
  const keys = deps.store.keyStores.countKeys(rec.id);
  if (keys > 0) {
    throw Errors.customKeyStoreHasCMKs(
      `Custom key store ${rec.id} contains ${keys} KMS key${keys === 1 ? '' : 's'}. Delete them (ScheduleKeyDeletion) before deleting the key store.`,
    );
  }
  deps.store.keyStores.delete(rec.id);
  registry.forget(rec.id);
  deps.log.info({ customKeyStoreId: rec.id }, 'custom key store deleted');
  return {};
});

/** GenerateRandom with CustomKeyStoreId: the caller's store, which must be CONNECTED. */
export function connectedStoreToken(deps: KmsDeps, ctx: RequestContext, id: string): Token {
  const registry = registryOf(deps);
  const rec = storeById(deps, ctx, id);
  const token = registry.connectedToken(rec.id);
  if (!token) {
    const { state } = sharedStatus(rec);
    // CONNECTED but not reachable from this node: refused as for a lost token.
    if (state === 'CONNECTED') throw notConnected(rec.id);
    throw Errors.customKeyStoreInvalidState(`Custom key store ${rec.id} is ${state}; it must be CONNECTED.`);
  }
  return token;
}

/** CreateKey with CustomKeyStoreId: the caller's store, which must be CONNECTED. */
export function storeForNewKey(deps: KmsDeps, ctx: RequestContext, id: string): CustomKeyStoreRecord {
  registryOf(deps);
  const rec = storeById(deps, ctx, id);
  const { state } = sharedStatus(rec);
  if (state !== 'CONNECTED') {
    throw Errors.customKeyStoreInvalidState(`Custom key store ${rec.id} is ${state}; KMS keys can be created in it only when it is CONNECTED.`);
  }
  return rec;
}
