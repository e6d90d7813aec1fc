import {
  CreateAliasCommand, CreateKeyCommand, DecryptCommand, DeleteAliasCommand, DescribeKeyCommand, DisableKeyCommand,
  EnableKeyCommand, EncryptCommand, GenerateDataKeyCommand, ListAliasesCommand, ListResourceTagsCommand,
  TagResourceCommand, UntagResourceCommand, UpdateAliasCommand, type AliasListEntry, type KeyMetadata, type Tag,
} from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACCOUNT, failure, REGION, startHarness, type Harness } from '../helpers/daemon.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array | undefined) => new TextDecoder().decode(b);
const newKey = async (Tags?: Tag[]): Promise<KeyMetadata> =>
  (await h.kms.send(new CreateKeyCommand({ Description: 'aliases-tags test key', Tags }))).KeyMetadata!;
const aliasArnOf = (name: string) => `arn:aws:kms:${REGION}:${ACCOUNT}:${name}`;
const keyArnOf = (keyId: string) => `arn:aws:kms:${REGION}:${ACCOUNT}:key/${keyId}`;
let seq = 0;
/** A fresh alias name per call, so tests never collide inside the shared token. */
const uniqueAlias = (stem = 'test') => `alias/${stem}-${process.pid}-${Date.now()}-${seq++}`;

/** Asserts the SDK surfaced an AWS error of this name with HTTP 400; returns it for message checks. */
async function rejects(p: Promise<unknown>, name: string) {
  const e = await failure(p);
  expect(e.name, `${e.name}: ${e.message}`).toBe(name);
  expect(e.$metadata?.httpStatusCode).toBe(400);
  return e;
}

async function allAliases(KeyId?: string, Limit?: number): Promise<{ entries: AliasListEntry[]; pages: number }> {
  const entries: AliasListEntry[] = [];
  let Marker: string | undefined;
  let pages = 0;
  do {
    const page = await h.kms.send(new ListAliasesCommand({ KeyId, Limit, Marker }));
    if (Limit !== undefined) expect(page.Aliases!.length).toBeLessThanOrEqual(Limit);
    entries.push(...page.Aliases!);
    expect(page.Truncated ?? false).toBe(page.NextMarker !== undefined);
    Marker = page.NextMarker;
    pages++;
    expect(pages).toBeLessThan(1000);
  } while (Marker);
  return { entries, pages };
}

async function allTags(KeyId: string, Limit?: number): Promise<{ tags: Tag[]; pages: number }> {
  const tags: Tag[] = [];
  let Marker: string | undefined;
  let pages = 0;
  do {
    const page = await h.kms.send(new ListResourceTagsCommand({ KeyId, Limit, Marker }));
    if (Limit !== undefined) expect(page.Tags!.length).toBeLessThanOrEqual(Limit);
    tags.push(...page.Tags!);
    expect(page.Truncated ?? false).toBe(page.NextMarker !== undefined);
    Marker = page.NextMarker;
    pages++;
    expect(pages).toBeLessThan(1000);
  } while (Marker);
  return { tags, pages };
}

const sortTags = (tags: Tag[]) => [...tags].sort((a, b) => a.TagKey!.localeCompare(b.TagKey!));
const tagMap = (tags: Tag[]) => Object.fromEntries(tags.map((t) => [t.TagKey!, t.TagValue!]));

describe('aliases as KeyId', () => {
  it('resolves alias name and alias ARN in Encrypt, Decrypt, GenerateDataKey and DescribeKey', async () => {
    const key = await newKey();
    const AliasName = uniqueAlias('use');
    const created = await h.kms.send(new CreateAliasCommand({ AliasName, TargetKeyId: key.KeyId }));
    expect(created.$metadata.httpStatusCode).toBe(200);

    for (const ref of [AliasName, aliasArnOf(AliasName)]) {
      const enc = await h.kms.send(new EncryptCommand({ KeyId: ref, Plaintext: bytes(`via ${ref}`) }));
      expect(enc.KeyId).toBe(key.Arn);

      const dec = await h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, KeyId: ref }));
      expect(text(dec.Plaintext)).toBe(`via ${ref}`);
      expect(dec.KeyId).toBe(key.Arn);

      const dk = await h.kms.send(new GenerateDataKeyCommand({ KeyId: ref, KeySpec: 'AES_256' }));
      expect(dk.KeyId).toBe(key.Arn);
      expect(dk.Plaintext!.length).toBe(32);
      const dkDec = await h.kms.send(new DecryptCommand({ CiphertextBlob: dk.CiphertextBlob, KeyId: ref }));
      expect(Buffer.from(dkDec.Plaintext!).equals(Buffer.from(dk.Plaintext!))).toBe(true);

      const described = await h.kms.send(new DescribeKeyCommand({ KeyId: ref }));
      expect(described.KeyMetadata).toEqual(key);
    }
  });

  it('Decrypt with an alias of a different key answers IncorrectKeyException', async () => {
    const a = await newKey();
    const b = await newKey();
    const aliasB = uniqueAlias('other');
    await h.kms.send(new CreateAliasCommand({ AliasName: aliasB, TargetKeyId: b.KeyId }));
    const enc = await h.kms.send(new EncryptCommand({ KeyId: a.KeyId, Plaintext: bytes('x') }));
    await rejects(h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, KeyId: aliasB })), 'IncorrectKeyException');
  });
});

describe('ListAliases', () => {
  it('returns AWS-shaped entries and filters by KeyId (key id or key ARN)', async () => {
    const key = await newKey();
    const other = await newKey();
    const names = [uniqueAlias('list-a'), uniqueAlias('list-b')];
    for (const AliasName of names) await h.kms.send(new CreateAliasCommand({ AliasName, TargetKeyId: key.Arn }));
    const otherAlias = uniqueAlias('list-other');
    await h.kms.send(new CreateAliasCommand({ AliasName: otherAlias, TargetKeyId: other.KeyId }));

    for (const KeyId of [key.KeyId!, key.Arn!]) {
      const res = await h.kms.send(new ListAliasesCommand({ KeyId }));
      expect(res.$metadata.httpStatusCode).toBe(200);
      expect(res.Truncated ?? false).toBe(false);
      expect(res.Aliases!.map((a) => a.AliasName).sort()).toEqual([...names].sort());
      for (const a of res.Aliases!) {
        expect(a.AliasArn).toBe(aliasArnOf(a.AliasName!));
        expect(a.TargetKeyId).toBe(key.KeyId);
        expect(a.CreationDate).toBeInstanceOf(Date);
        expect(a.LastUpdatedDate).toBeInstanceOf(Date);
        expect(Math.abs(a.CreationDate!.getTime() - Date.now())).toBeLessThan(60_000);
        expect(a.LastUpdatedDate!.getTime()).toBeGreaterThanOrEqual(a.CreationDate!.getTime());
      }
    }

    const everything = await allAliases();
    const byName = new Map(everything.entries.map((a) => [a.AliasName!, a]));
    for (const n of names) expect(byName.get(n)?.TargetKeyId).toBe(key.KeyId);
    expect(byName.get(otherAlias)?.TargetKeyId).toBe(other.KeyId);
  });

  it('pages with Limit 1 and 2 and Marker over many aliases, without duplicates or gaps', async () => {
    const key = await newKey();
    const names = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const AliasName = uniqueAlias(`page${i}`);
      await h.kms.send(new CreateAliasCommand({ AliasName, TargetKeyId: key.KeyId }));
      names.add(AliasName);
    }
    for (const Limit of [1, 2]) {
      const filtered = await allAliases(key.KeyId, Limit);
      const seen = filtered.entries.map((a) => a.AliasName!);
      expect(new Set(seen).size).toBe(seen.length);
      expect(new Set(seen)).toEqual(names);
      expect(filtered.pages).toBeGreaterThanOrEqual(Math.ceil(names.size / Limit));

      const unfiltered = await allAliases(undefined, Limit);
      const all = unfiltered.entries.map((a) => a.AliasName!);
      expect(new Set(all).size).toBe(all.length);
      for (const n of names) expect(all).toContain(n);
    }
    const first = await h.kms.send(new ListAliasesCommand({ KeyId: key.KeyId, Limit: 2 }));
    expect(first.Aliases!.length).toBe(2);
    expect(first.Truncated).toBe(true);
    expect(typeof first.NextMarker).toBe('string');
  });

  it('rejects an alias as the KeyId filter with NotFoundException (key id or key ARN only)', async () => {
    const key = await newKey();
    const AliasName = uniqueAlias('filter');
    await h.kms.send(new CreateAliasCommand({ AliasName, TargetKeyId: key.KeyId }));
    await rejects(h.kms.send(new ListAliasesCommand({ KeyId: AliasName })), 'NotFoundException');
  });
});

describe('UpdateAlias', () => {
  it('moves an alias to another key', async () => {
    const a = await newKey();
    const b = await newKey();
    const AliasName = uniqueAlias('move');
    await h.kms.send(new CreateAliasCommand({ AliasName, TargetKeyId: a.KeyId }));
    const before = (await h.kms.send(new ListAliasesCommand({ KeyId: a.KeyId }))).Aliases!.find((x) => x.AliasName === AliasName)!;
    expect((await h.kms.send(new EncryptCommand({ KeyId: AliasName, Plaintext: bytes('x') }))).KeyId).toBe(a.Arn);
    const oldCiphertext = (await h.kms.send(new EncryptCommand({ KeyId: a.KeyId, Plaintext: bytes('old') }))).CiphertextBlob;

    await new Promise((r) => setTimeout(r, 20));
    const updated = await h.kms.send(new UpdateAliasCommand({ AliasName, TargetKeyId: b.Arn }));
    expect(updated.$metadata.httpStatusCode).toBe(200);

    const enc = await h.kms.send(new EncryptCommand({ KeyId: AliasName, Plaintext: bytes('new') }));
    expect(enc.KeyId).toBe(b.Arn);
    expect((await h.kms.send(new EncryptCommand({ KeyId: aliasArnOf(AliasName), Plaintext: bytes('new') }))).KeyId).toBe(b.Arn);
    const dec = await h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob }));
    expect(dec.KeyId).toBe(b.Arn);
    expect((await h.kms.send(new DescribeKeyCommand({ KeyId: AliasName }))).KeyMetadata!.KeyId).toBe(b.KeyId);
    // A ciphertext of the old key no longer matches the alias.
    await rejects(h.kms.send(new DecryptCommand({ CiphertextBlob: oldCiphertext, KeyId: AliasName })), 'IncorrectKeyException');

    expect((await h.kms.send(new ListAliasesCommand({ KeyId: a.KeyId }))).Aliases!.map((x) => x.AliasName)).not.toContain(AliasName);
    const after = (await h.kms.send(new ListAliasesCommand({ KeyId: b.KeyId }))).Aliases!.find((x) => x.AliasName === AliasName)!;
    expect(after.TargetKeyId).toBe(b.KeyId);
    expect(after.CreationDate!.getTime()).toBe(before.CreationDate!.getTime());
    expect(after.LastUpdatedDate!.getTime()).toBeGreaterThanOrEqual(after.CreationDate!.getTime());
    expect(after.LastUpdatedDate!.getTime()).toBeGreaterThanOrEqual(before.LastUpdatedDate!.getTime());
  });

  it('answers NotFoundException for a missing alias', async () => {
    const key = await newKey();
    const AliasName = uniqueAlias('missing');
    const e = await rejects(h.kms.send(new UpdateAliasCommand({ AliasName, TargetKeyId: key.KeyId })), 'NotFoundException');
    expect(e.message).toContain(aliasArnOf(AliasName));
  });

  it('answers NotFoundException when the new target key does not exist', async () => {
    const key = await newKey();
    const AliasName = uniqueAlias('badtarget');
    await h.kms.send(new CreateAliasCommand({ AliasName, TargetKeyId: key.KeyId }));
    const ghost = '00000000-0000-4000-8000-000000000000';
    await rejects(h.kms.send(new UpdateAliasCommand({ AliasName, TargetKeyId: ghost })), 'NotFoundException');
    expect((await h.kms.send(new DescribeKeyCommand({ KeyId: AliasName }))).KeyMetadata!.KeyId).toBe(key.KeyId);
  });
});

describe('DeleteAlias', () => {
  it('removes the alias: using it or deleting it again answers NotFoundException', async () => {
    const key = await newKey();
    const AliasName = uniqueAlias('delete');
    await h.kms.send(new CreateAliasCommand({ AliasName, TargetKeyId: key.KeyId }));
    const enc = await h.kms.send(new EncryptCommand({ KeyId: AliasName, Plaintext: bytes('x') }));

    const deleted = await h.kms.send(new DeleteAliasCommand({ AliasName }));
    expect(deleted.$metadata.httpStatusCode).toBe(200);

    for (const ref of [AliasName, aliasArnOf(AliasName)]) {
      for (const call of [
        h.kms.send(new EncryptCommand({ KeyId: ref, Plaintext: bytes('x') })),
        h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, KeyId: ref })),
        h.kms.send(new GenerateDataKeyCommand({ KeyId: ref, KeySpec: 'AES_256' })),
        h.kms.send(new DescribeKeyCommand({ KeyId: ref })),
      ]) {
        const e = await rejects(call, 'NotFoundException');
        expect(e.message).toContain(aliasArnOf(AliasName));
      }
    }
    const again = await rejects(h.kms.send(new DeleteAliasCommand({ AliasName })), 'NotFoundException');
    expect(again.message).toContain(aliasArnOf(AliasName));

    // The key itself is untouched, and the name can be reused.
    expect((await h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob }))).KeyId).toBe(key.Arn);
    expect((await h.kms.send(new ListAliasesCommand({ KeyId: key.KeyId }))).Aliases).toEqual([]);
    await h.kms.send(new CreateAliasCommand({ AliasName, TargetKeyId: key.KeyId }));
    expect((await h.kms.send(new DescribeKeyCommand({ KeyId: AliasName }))).KeyMetadata!.KeyId).toBe(key.KeyId);
  });
});

describe('CreateAlias validation', () => {
  it('answers AlreadyExistsException for a duplicate name, even when targeting another key', async () => {
    const a = await newKey();
    const b = await newKey();
    const AliasName = uniqueAlias('dup');
    await h.kms.send(new CreateAliasCommand({ AliasName, TargetKeyId: a.KeyId }));
    for (const TargetKeyId of [a.KeyId, b.KeyId]) {
      const e = await rejects(h.kms.send(new CreateAliasCommand({ AliasName, TargetKeyId })), 'AlreadyExistsException');
      expect(e.message).toContain(aliasArnOf(AliasName));
    }
    expect((await h.kms.send(new DescribeKeyCommand({ KeyId: AliasName }))).KeyMetadata!.KeyId).toBe(a.KeyId);
  });

  it('requires the alias/ prefix (ValidationException)', async () => {
    const key = await newKey();
    for (const AliasName of ['no-prefix', 'aliasfoo', 'Alias/upper']) {
      const e = await rejects(h.kms.send(new CreateAliasCommand({ AliasName, TargetKeyId: key.KeyId })), 'ValidationException');
      expect(e.message).toContain('alias/');
    }
  });

  it('reserves the alias/aws/ prefix for AWS managed keys (InvalidAliasNameException)', async () => {
    const key = await newKey();
    await rejects(h.kms.send(new CreateAliasCommand({ AliasName: 'alias/aws/foo', TargetKeyId: key.KeyId })), 'InvalidAliasNameException');
    await rejects(h.kms.send(new DescribeKeyCommand({ KeyId: 'alias/aws/foo' })), 'NotFoundException');
  });

  it('rejects characters outside the alias pattern with ValidationException', async () => {
    const key = await newKey();
    for (const AliasName of ['alias/has space', 'alias/semi;colon', 'alias/ünïcode', 'alias/star*']) {
      const e = await rejects(h.kms.send(new CreateAliasCommand({ AliasName, TargetKeyId: key.KeyId })), 'ValidationException');
      expect(e.message).toMatch(/regular expression pattern/);
    }
    const tooLong = `alias/${'a'.repeat(251)}`;
    expect(tooLong.length).toBe(257);
    await rejects(h.kms.send(new CreateAliasCommand({ AliasName: tooLong, TargetKeyId: key.KeyId })), 'ValidationException');
  });

  it('requires TargetKeyId to be a key id or key ARN, not an alias (NotFoundException)', async () => {
    const key = await newKey();
    const existing = uniqueAlias('target');
    await h.kms.send(new CreateAliasCommand({ AliasName: existing, TargetKeyId: key.KeyId }));
    for (const TargetKeyId of [existing, aliasArnOf(existing)]) {
      const AliasName = uniqueAlias('chained');
      await rejects(h.kms.send(new CreateAliasCommand({ AliasName, TargetKeyId })), 'NotFoundException');
      await rejects(h.kms.send(new DescribeKeyCommand({ KeyId: AliasName })), 'NotFoundException');
    }
  });

  it('answers NotFoundException for a non-existent target key', async () => {
    const ghost = '11111111-2222-4333-8444-555555555555';
    for (const TargetKeyId of [ghost, keyArnOf(ghost)]) {
      const e = await rejects(h.kms.send(new CreateAliasCommand({ AliasName: uniqueAlias('ghost'), TargetKeyId })), 'NotFoundException');
      expect(e.message).toContain(keyArnOf(ghost));
    }
  });

  it('allows an alias for a disabled key; crypto through it then reports DisabledException', async () => {
    const key = await newKey();
    await h.kms.send(new DisableKeyCommand({ KeyId: key.KeyId }));
    const AliasName = uniqueAlias('disabled');
    const res = await h.kms.send(new CreateAliasCommand({ AliasName, TargetKeyId: key.KeyId }));
    expect(res.$metadata.httpStatusCode).toBe(200);
    const d = await h.kms.send(new DescribeKeyCommand({ KeyId: AliasName }));
    expect(d.KeyMetadata).toMatchObject({ KeyId: key.KeyId, KeyState: 'Disabled', Enabled: false });
    const e = await rejects(h.kms.send(new EncryptCommand({ KeyId: AliasName, Plaintext: bytes('x') })), 'DisabledException');
    expect(e.message).toContain(key.Arn);
    await h.kms.send(new EnableKeyCommand({ KeyId: key.KeyId }));
    expect((await h.kms.send(new EncryptCommand({ KeyId: AliasName, Plaintext: bytes('x') }))).KeyId).toBe(key.Arn);
  });

  it('EnableKey and DisableKey take a key id or key ARN only: an alias answers NotFoundException', async () => {
    const key = await newKey();
    const AliasName = uniqueAlias('state');
    await h.kms.send(new CreateAliasCommand({ AliasName, TargetKeyId: key.KeyId }));
    for (const ref of [AliasName, aliasArnOf(AliasName)]) {
      await rejects(h.kms.send(new DisableKeyCommand({ KeyId: ref })), 'NotFoundException');
      await rejects(h.kms.send(new EnableKeyCommand({ KeyId: ref })), 'NotFoundException');
    }
    expect((await h.kms.send(new DescribeKeyCommand({ KeyId: key.KeyId }))).KeyMetadata!.KeyState).toBe('Enabled');
  });
});

describe('tags', () => {
  it('CreateKey stores Tags; TagResource adds and overwrites; UntagResource removes', async () => {
    const key = await newKey([
      { TagKey: 'team', TagValue: 'payments' },
      { TagKey: 'env', TagValue: 'prod' },
      { TagKey: 'empty', TagValue: '' },
    ]);
    const initial = await h.kms.send(new ListResourceTagsCommand({ KeyId: key.KeyId }));
    expect(initial.$metadata.httpStatusCode).toBe(200);
    expect(initial.Truncated ?? false).toBe(false);
    expect(tagMap(initial.Tags!)).toEqual({ team: 'payments', env: 'prod', empty: '' });

    const tagged = await h.kms.send(new TagResourceCommand({
      KeyId: key.Arn, Tags: [{ TagKey: 'env', TagValue: 'staging' }, { TagKey: 'owner', TagValue: 'alice' }],
    }));
    expect(tagged.$metadata.httpStatusCode).toBe(200);
    expect(tagMap((await allTags(key.KeyId!)).tags)).toEqual({ team: 'payments', env: 'staging', empty: '', owner: 'alice' });

    // Same TagKey again: its value is replaced, not duplicated.
    await h.kms.send(new TagResourceCommand({ KeyId: key.KeyId, Tags: [{ TagKey: 'owner', TagValue: 'bob' }] }));
    const afterOverwrite = (await allTags(key.KeyId!)).tags;
    expect(afterOverwrite.filter((t) => t.TagKey === 'owner')).toEqual([{ TagKey: 'owner', TagValue: 'bob' }]);
    expect(afterOverwrite.length).toBe(4);

    // Tag keys are case-sensitive.
    await h.kms.send(new TagResourceCommand({ KeyId: key.KeyId, Tags: [{ TagKey: 'Owner', TagValue: 'carol' }] }));
    expect(tagMap((await allTags(key.KeyId!)).tags)).toMatchObject({ owner: 'bob', Owner: 'carol' });

    const untagged = await h.kms.send(new UntagResourceCommand({ KeyId: key.Arn, TagKeys: ['team', 'Owner'] }));
    expect(untagged.$metadata.httpStatusCode).toBe(200);
    expect(tagMap((await allTags(key.KeyId!)).tags)).toEqual({ env: 'staging', empty: '', owner: 'bob' });
  });

  it('untagging a tag key the key does not have is a no-op', async () => {
    const key = await newKey([{ TagKey: 'keep', TagValue: 'me' }]);
    const res = await h.kms.send(new UntagResourceCommand({ KeyId: key.KeyId, TagKeys: ['never-set', 'also-missing'] }));
    expect(res.$metadata.httpStatusCode).toBe(200);
    expect((await allTags(key.KeyId!)).tags).toEqual([{ TagKey: 'keep', TagValue: 'me' }]);
  });

  it('a new key without tags lists none', async () => {
    const key = await newKey();
    const res = await h.kms.send(new ListResourceTagsCommand({ KeyId: key.KeyId }));
    expect(res.Tags).toEqual([]);
    expect(res.Truncated ?? false).toBe(false);
  });

  it('rejects aws: tag keys with TagException and changes nothing', async () => {
    const key = await newKey([{ TagKey: 'a', TagValue: '1' }]);
    const e = await rejects(h.kms.send(new TagResourceCommand({
      KeyId: key.KeyId, Tags: [{ TagKey: 'fine', TagValue: 'x' }, { TagKey: 'aws:reserved', TagValue: 'x' }],
    })), 'TagException');
    expect(e.message).toMatch(/aws:/);
    expect((await allTags(key.KeyId!)).tags).toEqual([{ TagKey: 'a', TagValue: '1' }]);
    await rejects(h.kms.send(new CreateKeyCommand({ Tags: [{ TagKey: 'aws:createdBy', TagValue: 'me' }] })), 'TagException');
  });

  it('treats the aws: prefix case-insensitively (AWS:, Aws:) as reserved', async () => {
    const key = await newKey([{ TagKey: 'a', TagValue: '1' }]);
    for (const TagKey of ['AWS:upper', 'Aws:mixed']) {
      await rejects(h.kms.send(new TagResourceCommand({ KeyId: key.KeyId, Tags: [{ TagKey, TagValue: 'x' }] })), 'TagException');
    }
    expect((await allTags(key.KeyId!)).tags).toEqual([{ TagKey: 'a', TagValue: '1' }]);
  });

  it('enforces the 50-tags-per-key quota with LimitExceededException, atomically', async () => {
    const fifty = Array.from({ length: 50 }, (_, i) => ({ TagKey: `k${String(i).padStart(2, '0')}`, TagValue: `v${i}` }));
    // At CreateKey: 51 tags are too many, 50 are fine.
    await rejects(h.kms.send(new CreateKeyCommand({ Tags: [...fifty, { TagKey: 'k50', TagValue: 'v50' }] })), 'LimitExceededException');

    const key = await newKey(fifty.slice(0, 48));
    // Reaching exactly 50 is allowed.
    await h.kms.send(new TagResourceCommand({ KeyId: key.KeyId, Tags: fifty.slice(48) }));
    const full = sortTags((await allTags(key.KeyId!)).tags);
    expect(full).toEqual(sortTags(fifty));

    // A 51st tag is refused, alone or mixed with an overwrite, and nothing changes.
    await rejects(h.kms.send(new TagResourceCommand({ KeyId: key.KeyId, Tags: [{ TagKey: 'extra', TagValue: 'x' }] })), 'LimitExceededException');
    await rejects(h.kms.send(new TagResourceCommand({
      KeyId: key.KeyId, Tags: [{ TagKey: 'k00', TagValue: 'changed' }, { TagKey: 'extra', TagValue: 'x' }],
    })), 'LimitExceededException');
    expect(sortTags((await allTags(key.KeyId!)).tags)).toEqual(full);

    // Overwriting values of existing keys at the limit is still allowed.
    await h.kms.send(new TagResourceCommand({ KeyId: key.KeyId, Tags: [{ TagKey: 'k00', TagValue: 'changed' }] }));
    const after = tagMap((await allTags(key.KeyId!)).tags);
    expect(Object.keys(after).length).toBe(50);
    expect(after.k00).toBe('changed');
  });

  it('pages ListResourceTags with Limit and Marker; a bad Marker answers InvalidMarkerException', async () => {
    const tags = Array.from({ length: 7 }, (_, i) => ({ TagKey: `page-${i}`, TagValue: `value-${i}` }));
    const key = await newKey(tags);
    for (const Limit of [1, 2, 3]) {
      const { tags: seen, pages } = await allTags(key.KeyId!, Limit);
      expect(pages).toBe(Math.ceil(tags.length / Limit));
      expect(new Set(seen.map((t) => t.TagKey)).size).toBe(seen.length);
      expect(sortTags(seen)).toEqual(sortTags(tags));
    }
    const first = await h.kms.send(new ListResourceTagsCommand({ KeyId: key.KeyId, Limit: 2 }));
    expect(first.Tags!.length).toBe(2);
    expect(first.Truncated).toBe(true);
    expect(typeof first.NextMarker).toBe('string');

    for (const Marker of ['not-a-marker', 'zzzz', '-1']) {
      await rejects(h.kms.send(new ListResourceTagsCommand({ KeyId: key.KeyId, Marker })), 'InvalidMarkerException');
    }
  });

  it('TagResource, UntagResource and ListResourceTags take a key id or key ARN only: an alias answers NotFoundException', async () => {
    const key = await newKey([{ TagKey: 'a', TagValue: '1' }]);
    const AliasName = uniqueAlias('tags');
    await h.kms.send(new CreateAliasCommand({ AliasName, TargetKeyId: key.KeyId }));
    for (const ref of [AliasName, aliasArnOf(AliasName)]) {
      await rejects(h.kms.send(new TagResourceCommand({ KeyId: ref, Tags: [{ TagKey: 'b', TagValue: '2' }] })), 'NotFoundException');
      await rejects(h.kms.send(new ListResourceTagsCommand({ KeyId: ref })), 'NotFoundException');
      await rejects(h.kms.send(new UntagResourceCommand({ KeyId: ref, TagKeys: ['a'] })), 'NotFoundException');
    }
    expect((await allTags(key.KeyId!)).tags).toEqual([{ TagKey: 'a', TagValue: '1' }]);
  });

  it('answers NotFoundException for tag operations on a non-existent key', async () => {
    const ghost = '99999999-8888-4777-8666-555555555555';
    for (const KeyId of [ghost, keyArnOf(ghost)]) {
      const e = await rejects(h.kms.send(new TagResourceCommand({ KeyId, Tags: [{ TagKey: 'a', TagValue: '1' }] })), 'NotFoundException');
      expect(e.message).toContain(keyArnOf(ghost));
      await rejects(h.kms.send(new ListResourceTagsCommand({ KeyId })), 'NotFoundException');
      await rejects(h.kms.send(new UntagResourceCommand({ KeyId, TagKeys: ['a'] })), 'NotFoundException');
    }
  });
});
