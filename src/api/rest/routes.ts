import { z } from 'zod';
import type { Operation } from '../../kms/context.js';
import { operations } from '../../kms/operations.js';
import { camel } from './names.js';
import * as R from './schemas.js';

/**
 * The REST door's routes: each is one core operation (no KMS semantics of its own), its path,
 * which member the `{key}` path segment fills, and the members it does not offer. The request
 * schema is the core operation's own zod schema with its members renamed to camel case, so the
 * validation, its messages and the OpenAPI document come from the same source.
 */
export interface Route {
  method: 'GET' | 'POST';
  /** OpenAPI path template. */
  path: string;
  /** The core operation, by its AWS name. */
  operation: string;
  summary: string;
  /** The core member the `{key}` path parameter fills. */
  keyMember?: string;
  /** Core members this door does not offer (attestation needs a Nitro enclave; the door has nothing to say about it). */
  omit?: readonly string[];
  /** GET routes take their members from the query string. */
  fromQuery?: boolean;
  /** Raw bytes instead of JSON: the member an application/octet-stream body fills, and the member answered as bytes. */
  octet?: { request: string; response: string };
  response: z.ZodObject;
}

const NO_RECIPIENT = ['Recipient'] as const;

export const routes: readonly Route[] = [
  {
    method: 'POST', path: '/v1/keys/{key}/encrypt', operation: 'Encrypt', keyMember: 'KeyId',
    octet: { request: 'Plaintext', response: 'CiphertextBlob' }, response: R.EncryptResponse,
    summary: 'Encrypts up to 4096 bytes under a symmetric or RSA key',
  },
  {
    method: 'POST', path: '/v1/keys/{key}/decrypt', operation: 'Decrypt', keyMember: 'KeyId', omit: NO_RECIPIENT,
    octet: { request: 'CiphertextBlob', response: 'Plaintext' }, response: R.DecryptResponse,
    summary: 'Decrypts a ciphertext of this key',
  },
  {
    method: 'POST', path: '/v1/keys/{key}/generate-data-key', operation: 'GenerateDataKey', keyMember: 'KeyId',
    omit: NO_RECIPIENT, response: R.GenerateDataKeyResponse, summary: 'A data key, in plaintext and encrypted under this key',
  },
  {
    method: 'POST', path: '/v1/keys/{key}/generate-data-key-without-plaintext', operation: 'GenerateDataKeyWithoutPlaintext',
    keyMember: 'KeyId', response: R.GenerateDataKeyWithoutPlaintextResponse, summary: 'A data key, encrypted under this key only',
  },
  {
    method: 'POST', path: '/v1/keys/{key}/re-encrypt', operation: 'ReEncrypt', keyMember: 'DestinationKeyId',
    response: R.ReEncryptResponse, summary: 'Decrypts a ciphertext and encrypts it again under this (destination) key',
  },
  {
    method: 'POST', path: '/v1/keys/{key}/sign', operation: 'Sign', keyMember: 'KeyId', response: R.SignResponse,
    summary: 'Signs a message or digest with an asymmetric key',
  },
  {
    method: 'POST', path: '/v1/keys/{key}/verify', operation: 'Verify', keyMember: 'KeyId', response: R.VerifyResponse,
    summary: 'Verifies a signature (an invalid one is a 422 KMSInvalidSignatureException)',
  },
  {
    method: 'POST', path: '/v1/keys/{key}/generate-mac', operation: 'GenerateMac', keyMember: 'KeyId',
    response: R.GenerateMacResponse, summary: 'An HMAC of a message with an HMAC key',
  },
  {
    method: 'POST', path: '/v1/keys/{key}/verify-mac', operation: 'VerifyMac', keyMember: 'KeyId',
    response: R.VerifyMacResponse, summary: 'Verifies an HMAC (an invalid one is a 422 KMSInvalidMacException)',
  },
  {
    method: 'POST', path: '/v1/keys/{key}/public-key', operation: 'GetPublicKey', keyMember: 'KeyId',
    response: R.GetPublicKeyResponse, summary: 'The public half of an asymmetric key',
  },
  {
    method: 'POST', path: '/v1/random', operation: 'GenerateRandom', omit: NO_RECIPIENT,
    response: R.GenerateRandomResponse, summary: 'Random bytes from the token',
  },
  {
    method: 'POST', path: '/v1/keys', operation: 'CreateKey', omit: ['Tags', 'CustomerMasterKeySpec'],
    response: R.DescribeKeyResponse, summary: 'Creates a key (tags: through the AWS API)',
  },
  {
    method: 'POST', path: '/v1/aliases', operation: 'CreateAlias', response: R.CreateAliasResponse,
    summary: 'Points a new alias (aliasName: alias/<name>) at a key',
  },
  { method: 'GET', path: '/v1/keys', operation: 'ListKeys', fromQuery: true, response: R.ListKeysResponse, summary: 'Keys of the account' },
  {
    method: 'GET', path: '/v1/keys/{key}', operation: 'DescribeKey', keyMember: 'KeyId', fromQuery: true,
    response: R.DescribeKeyResponse, summary: "A key's metadata",
  },
  {
    method: 'GET', path: '/v1/aliases', operation: 'ListAliases', fromQuery: true, response: R.ListAliasesResponse,
    summary: 'Aliases of the account (keyId: of one key)',
  },
];

/** A route with what the door needs at run time: the core operation and the member names both ways. */
export interface CompiledRoute extends Route {
  segments: readonly string[];
  core: Operation;
  /** camel-case wire name → core member name, for the members this route accepts. */
  members: ReadonlyMap<string, string>;
  /** The request schema as the OpenAPI document shows it (camel-case members, no path member). */
  requestSchema: z.ZodObject;
}

function compile(route: Route): CompiledRoute {
  const core = operations[route.operation];
  if (!core || !(core.schema instanceof z.ZodObject)) throw new Error(`REST route ${route.path}: no object-schema operation ${route.operation}`);
  const shape = core.schema.shape as Record<string, z.ZodType>;
  const members = new Map<string, string>();
  const renamed: Record<string, z.ZodType> = {};
  for (const [name, schema] of Object.entries(shape)) {
    if (name === route.keyMember || route.omit?.includes(name)) continue;
    members.set(camel(name), name);
    renamed[camel(name)] = schema;
  }
  return { ...route, segments: route.path.split('/').slice(1), core, members, requestSchema: z.object(renamed).strict() };
}

export const compiledRoutes: readonly CompiledRoute[] = routes.map(compile);

export interface Match {
  route: CompiledRoute;
  /** The `{key}` segment, URL-decoded. */
  key?: string;
}

/** Finds the route of a path; `allowed` lists the methods the path has when the method does not match. */
export function match(method: string, path: string): { found?: Match; allowed: string[] } {
  const segments = path.split('/').slice(1);
  const allowed: string[] = [];
  for (const route of compiledRoutes) {
    if (route.segments.length !== segments.length) continue;
    let key: string | undefined;
    let ok = true;
    for (let i = 0; i < segments.length && ok; i++) {
      if (route.segments[i] === '{key}') {
        try {
          key = decodeURIComponent(segments[i]!);
        } catch {
          ok = false;
        }
        ok &&= key !== '';
      } else ok = route.segments[i] === segments[i];
    }
    if (!ok) continue;
    if (route.method === method) return { found: { route, key }, allowed };
    allowed.push(route.method);
  }
  return { allowed };
}

const KEY_ID = /^(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;

/** `{key}`: a key id or ARN as given; anything else is an alias name, with or without `alias/`. */
export function keyRef(segment: string): string {
  if (segment.startsWith('arn:') || segment.startsWith('alias/') || KEY_ID.test(segment)) return segment;
  return `alias/${segment}`;
}
