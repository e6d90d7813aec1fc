import { CreateAlias, DeleteAlias, ListAliases, UpdateAlias } from './aliases.js';
import type { Operation } from './context.js';
import {
  Decrypt, Encrypt, GenerateDataKey, GenerateDataKeyWithoutPlaintext, GenerateRandom, ReEncrypt,
} from './crypto.js';
import { CreateGrant, ListGrants, ListRetirableGrants, RetireGrant, RevokeGrant } from './grants.js';
import { CreateKey, DescribeKey, DisableKey, EnableKey, ListKeys, UpdateKeyDescription } from './keys.js';
import { GetKeyPolicy, ListKeyPolicies, PutKeyPolicy } from './policies.js';
import { ListResourceTags, TagResource, UntagResource } from './tags.js';

/** Every operation the core serves, by its AWS name. Front doors dispatch through this table. */
export const operations: Readonly<Record<string, Operation>> = {
  CreateKey, DescribeKey, ListKeys, EnableKey, DisableKey, UpdateKeyDescription,
  Encrypt, Decrypt, ReEncrypt, GenerateDataKey, GenerateDataKeyWithoutPlaintext, GenerateRandom,
  CreateAlias, UpdateAlias, DeleteAlias, ListAliases,
  TagResource, UntagResource, ListResourceTags,
  PutKeyPolicy, GetKeyPolicy, ListKeyPolicies,
  CreateGrant, ListGrants, ListRetirableGrants, RetireGrant, RevokeGrant,
} as Record<string, Operation>;
