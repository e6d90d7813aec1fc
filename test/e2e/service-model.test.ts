/**
 * The whole AWS KMS service model (botocore's service-2.json) against the real daemon, over raw
 * signed HTTP:
 *  - every operation is served (never UnknownOperationException);
 *  - a plausible request of every operation answers success or an error the model documents
 *    for that operation (or one of AWS's common errors);
 *  - for every operation and every input member, a value that breaks the model's constraint
 *    (length, enum, range, list size) or its JSON type is refused with ValidationException /
 *    SerializationException, and the state seen through the API and in the token is exactly as
 *    before ("a rejected request changes nothing", as a property over the whole model).
 */
import {
  CreateAliasCommand, CreateGrantCommand, CreateKeyCommand, DescribeKeyCommand, GetKeyPolicyCommand, ListAliasesCommand,
  ListGrantsCommand, ListKeysCommand, ListResourceTagsCommand, type KeyMetadata,
} from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACCOUNT, startHarness, type Harness } from '../helpers/daemon.js';
import { inspectToken } from '../helpers/inspect.js';
import { op, signedPost } from '../helpers/raw-request.js';
import { loadKmsModel, type ServiceModel, type Shape } from '../helpers/service-model.js';

/**
 * Operations of the model not served yet, each with its reason. Only these may answer
 * UnknownOperationException; anything else doing so fails the walk.
 */
const PENDING: Record<string, string> = {};

const model: ServiceModel = loadKmsModel();
const operationNames = Object.keys(model.operations).sort();

/** A value that satisfies the shape's constraints as far as a generator can know (KeyIds name a real key). */
function plausible(m: ServiceModel, shapeName: string, keyId: string, depth = 0): unknown {
  const s = m.shapes[shapeName] as Shape;
  switch (s.type) {
    case 'string':
      if (s.enum) return s.enum[0];
      if (shapeName === 'KeyIdType') return keyId;
      return 'a'.repeat(Math.max(s.min ?? 1, 1));
    case 'integer':
    case 'long':
      return s.min ?? 1;
    case 'boolean':
      return false;
    case 'timestamp':
      return 1_700_000_000;
    case 'blob':
      return Buffer.alloc(Math.max(s.min ?? 1, 1), 1).toString('base64');
    case 'list':
      return (s.min ?? 0) > 0 ? [plausible(m, s.member!.shape, keyId, depth + 1)] : [];
    case 'map':
      return {};
    case 'structure': {
      const out: Record<string, unknown> = {};
      if (depth < 3) for (const r of s.required ?? []) out[r] = plausible(m, s.members![r]!.shape, keyId, depth + 1);
      return out;
    }
  }
}

interface Violation {
  label: string;
  value: unknown;
  error: 'ValidationException' | 'SerializationException';
}

/** Values that break the member's model constraints, and one of the wrong JSON type. */
function violations(m: ServiceModel, shapeName: string): Violation[] {
  const s = m.shapes[shapeName] as Shape;
  const out: Violation[] = [];
  const bad = (label: string, value: unknown) => out.push({ label, value, error: 'ValidationException' });
  if (s.type === 'string') {
    if (s.enum) bad('not in enum', 'NOT_A_VALID_VALUE');
    else if (s.max !== undefined && s.max < 200_000) bad('too long', 'a'.repeat(s.max + 1));
    out.push({ label: 'number for string', value: 12345, error: 'SerializationException' });
  } else if (s.type === 'integer' || s.type === 'long') {
    if (s.max !== undefined) bad('above max', s.max + 1);
    if (s.min !== undefined) bad('below min', s.min - 1);
    out.push({ label: 'string for integer', value: '1', error: 'SerializationException' });
  } else if (s.type === 'blob') {
    if (s.max !== undefined && s.max < 200_000) bad('too long', Buffer.alloc(s.max + 1, 2).toString('base64'));
    out.push({ label: 'number for blob', value: 5, error: 'SerializationException' });
  } else if (s.type === 'list') {
    if (s.max !== undefined) bad('too many items', Array.from({ length: s.max + 1 }, () => 'a'));
    out.push({ label: 'object for list', value: { a: 1 }, error: 'SerializationException' });
  } else if (s.type === 'structure') {
    out.push({ label: 'string for structure', value: 'x', error: 'SerializationException' });
  } else if (s.type === 'map') {
    out.push({ label: 'list for map', value: ['x'], error: 'SerializationException' });
  } else if (s.type === 'boolean') {
    out.push({ label: 'string for boolean', value: 'yes', error: 'SerializationException' });
  } else if (s.type === 'timestamp') {
    out.push({ label: 'object for timestamp', value: { t: 1 }, error: 'SerializationException' });
  }
  return out;
}

describe('the AWS KMS service model', () => {
  let h: Harness;
  let key: KeyMetadata;

  beforeAll(async () => {
    h = await startHarness();
    key = (await h.kms.send(new CreateKeyCommand({ Description: 'model walk', Tags: [{ TagKey: 'team', TagValue: 'a' }] }))).KeyMetadata!;
    await h.kms.send(new CreateAliasCommand({ AliasName: 'alias/model-walk', TargetKeyId: key.KeyId }));
    await h.kms.send(new CreateGrantCommand({ KeyId: key.KeyId, GranteePrincipal: `arn:aws:iam::${ACCOUNT}:user/u`, Operations: ['Decrypt'] }));
  });
  afterAll(async () => {
    await h?.stop();
  });

  /** What a client can see of the deployment, plus the token's objects. */
  async function snapshot(): Promise<string> {
    const keys = (await h.kms.send(new ListKeysCommand({ Limit: 1000 }))).Keys ?? [];
    const perKey = [];
    for (const k of keys) {
      const KeyId = k.KeyId!;
      perKey.push({
        meta: (await h.kms.send(new DescribeKeyCommand({ KeyId }))).KeyMetadata,
        tags: (await h.kms.send(new ListResourceTagsCommand({ KeyId }))).Tags,
        policy: (await h.kms.send(new GetKeyPolicyCommand({ KeyId }))).Policy,
        grants: (await h.kms.send(new ListGrantsCommand({ KeyId }))).Grants,
      });
    }
    const aliases = (await h.kms.send(new ListAliasesCommand({}))).Aliases;
    const objects = inspectToken(h.token).map((o) => `${o.label}:${o.id}`).sort();
    return JSON.stringify({ perKey, aliases, objects });
  }

  it('serves every operation (only the listed pending ones may be unknown)', async () => {
    expect(operationNames.length).toBeGreaterThanOrEqual(54);
    const unknown: string[] = [];
    for (const name of operationNames) {
      const res = await signedPost(h, op(name), '{}');
      expect(res.status, `${name}: ${res.text}`).toBeLessThan(500);
      if (res.json?.__type === 'UnknownOperationException') unknown.push(name);
    }
    expect(unknown).toEqual(Object.keys(PENDING).filter((n) => operationNames.includes(n)).sort());
  });

  it("answers a plausible request of every operation with success or one of the operation's documented errors", async () => {
    // Errors every AWS JSON operation may answer (AWS's "Common Errors"), besides each operation's own list.
    const common = new Set([
      'ValidationException', 'SerializationException', 'AccessDeniedException', 'UnrecognizedClientException',
      'InvalidSignatureException', 'ThrottlingException', 'DryRunOperationException',
    ]);
    const undocumented: string[] = [];
    for (const name of operationNames) {
      if (PENDING[name]) continue;
      const op_ = model.operations[name]!;
      const body = op_.input ? plausible(model, op_.input.shape, key.KeyId!) : {};
      const res = await signedPost(h, op(name), JSON.stringify(body));
      expect(res.status, `${name}: ${res.text}`).toBeLessThan(500);
      const type = res.json?.__type as string | undefined;
      if (!type) continue;
      const documented = new Set((op_.errors ?? []).map((e) => e.shape));
      if (!documented.has(type) && !common.has(type)) undocumented.push(`${name}: ${type} (${res.json.message})`);
    }
    expect(undocumented).toEqual([]);
  });

  it('refuses a constraint or type violation in every member of every operation, and changes nothing', async () => {
    const before = await snapshot();
    let sent = 0;
    const wrong: string[] = [];
    for (const name of operationNames) {
      if (PENDING[name]) continue;
      const inputShape = model.operations[name]!.input?.shape;
      if (!inputShape) continue;
      const shape = model.shapes[inputShape] as Shape;
      const base = plausible(model, inputShape, key.KeyId!) as Record<string, unknown>;
      for (const [member, ref] of Object.entries(shape.members ?? {})) {
        const cases = violations(model, ref.shape).map((v) => ({ path: member, body: { ...base, [member]: v.value }, v }));
        // One level down: each member of a structure member (Recipient, XksProxyAuthenticationCredential, …).
        const inner = model.shapes[ref.shape] as Shape;
        if (inner.type === 'structure') {
          const innerBase = plausible(model, ref.shape, key.KeyId!) as Record<string, unknown>;
          for (const [sub, subRef] of Object.entries(inner.members ?? {})) {
            for (const v of violations(model, subRef.shape)) {
              cases.push({ path: `${member}.${sub}`, body: { ...base, [member]: { ...innerBase, [sub]: v.value } }, v });
            }
          }
        }
        for (const c of cases) {
          const res = await signedPost(h, op(name), JSON.stringify(c.body));
          sent++;
          if (res.status !== 400 || res.json?.__type !== c.v.error || /Invalid input|expected (an? )?(object|string|array|number|record|boolean)/.test(res.json?.message)) {
            wrong.push(`${name}.${c.path} (${c.v.label}): ${res.status} ${res.text.slice(0, 200)}`);
          }
        }
      }
    }
    expect(wrong).toEqual([]);
    expect(sent).toBeGreaterThan(300);
    expect(await snapshot()).toBe(before);
  });
});
