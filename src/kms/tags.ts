import { z } from 'zod';
import { authorize } from '../authz/authorize.js';
import { Errors } from '../errors.js';
import type { Tag } from '../store/types.js';
import { operation } from './context.js';
import { resolveKey } from './key-ref.js';
import { checkKeyState } from './key-states.js';
import { KEY_ID, LIMIT, list, MARKER, str, TAG } from './validation.js';

/** AWS's per-key tag limit. */
export const MAX_TAGS_PER_KEY = 50;

/**
 * AWS's user-defined tag restrictions (Billing and Cost Management User Guide): letters, digits,
 * whitespace and `_ . : / = + - @`, in keys and values; the `aws:` prefix is reserved.
 */
const TAG_CHARACTERS = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$/u;
const RESERVED = (tagKey: string) => tagKey.toLowerCase().startsWith('aws:');

/** Rejects reserved, malformed and duplicate tag keys (TagException), and tag sets beyond the per-key limit. */
export function checkTags(tags: Tag[], existing: number, existingKeys: Set<string> = new Set()): void {
  const seen = new Set<string>();
  for (const t of tags) {
    if (RESERVED(t.TagKey)) throw Errors.tag('Tags beginning with aws: are reserved.');
    if (!TAG_CHARACTERS.test(t.TagKey) || !TAG_CHARACTERS.test(t.TagValue)) {
      throw Errors.tag('Tag keys and values may contain only letters, digits, whitespace and _ . : / = + - @.');
    }
    if (seen.has(t.TagKey)) throw Errors.tag(`Duplicate tag key '${t.TagKey}' in the request.`);
    seen.add(t.TagKey);
  }
  const added = [...seen].filter((k) => !existingKeys.has(k)).length;
  if (existing + added > MAX_TAGS_PER_KEY) {
    throw Errors.limitExceeded(`A KMS key can have at most ${MAX_TAGS_PER_KEY} tags.`);
  }
}

export const TagResource = operation(
  z.object({ KeyId: KEY_ID, Tags: list(TAG, 0, 1000) }),
  (deps, ctx, input) => {
    const key = resolveKey(deps, ctx, input.KeyId, false);
    authorize(ctx, 'TagResource', key);
    checkKeyState(key, 'TagResource');
    const current = deps.store.getTags(key.keyId);
    checkTags(input.Tags, current.length, new Set(current.map((t) => t.TagKey)));
    deps.store.putTags(key.keyId, input.Tags);
    return {};
  },
);

export const UntagResource = operation(
  z.object({ KeyId: KEY_ID, TagKeys: list(str(1, 128), 0, 1000) }),
  (deps, ctx, input) => {
    const key = resolveKey(deps, ctx, input.KeyId, false);
    authorize(ctx, 'UntagResource', key);
    checkKeyState(key, 'UntagResource');
    if (input.TagKeys.some(RESERVED)) throw Errors.tag('Tags beginning with aws: are reserved.');
    deps.store.removeTags(key.keyId, input.TagKeys);
    return {};
  },
);

export const ListResourceTags = operation(
  z.object({ KeyId: KEY_ID, Limit: LIMIT, Marker: MARKER }),
  (deps, ctx, input) => {
    const key = resolveKey(deps, ctx, input.KeyId, false);
    authorize(ctx, 'ListResourceTags', key);
    const all = deps.store.getTags(key.keyId);
    // Tags per key are few (≤ 50): page in memory, the marker is the index as a decimal string.
    const start = input.Marker === undefined ? 0 : Number(input.Marker);
    if (!Number.isInteger(start) || start < 0 || start > all.length || String(start) !== (input.Marker ?? '0')) {
      throw Errors.invalidMarker('The request contains an invalid marker.');
    }
    const limit = Math.min(input.Limit ?? 50, 50);
    const end = start + limit;
    return {
      Tags: all.slice(start, end),
      NextMarker: end < all.length ? String(end) : undefined,
      Truncated: end < all.length,
    };
  },
);
