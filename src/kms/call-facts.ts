import type { CallInfo, CallKeyFacts } from '../audit/aws-event.js';
import type { AuditResource } from '../audit/types.js';
import { parseCiphertext } from './ciphertext.js';
import type { KmsDeps, RequestContext } from './context.js';
import { resolveKey } from './key-ref.js';

const KEY_TYPE = 'AWS::KMS::Key';
const ARN = /^arn:aws[a-z-]*:kms:[^:]*:\d{12}:key\/(?:mrk-[0-9a-f]{32}|[0-9a-f-]{36})$/;

/**
 * The keys one AWS API call involved, for its audit event: the core resolves key references and
 * reads ciphertext headers, so audit (beside the core) only records what it is handed. Front
 * doors call this once the call is answered, with its output (undefined when it failed).
 */
export function callKeyFacts(deps: KmsDeps, call: CallInfo, output: Record<string, unknown> | undefined): CallKeyFacts {
  return { resources: resourcesOf(deps, call, output), keyMaterialId: materialIdOf(deps, output) };
}

function resourcesOf(deps: KmsDeps, call: CallInfo, output: Record<string, unknown> | undefined): AuditResource[] | undefined {
  const arns = new Set<string>();
  const meta = output?.KeyMetadata as { Arn?: unknown } | undefined;
  for (const v of [output?.KeyId, output?.SourceKeyId, meta?.Arn]) if (typeof v === 'string' && ARN.test(v)) arns.add(v);
  const input = call.input;
  if (!arns.size && input && call.principal) {
    // A failed call: name the key it asked for when it resolves (metadata lookups are cached).
    const ctx: RequestContext = { principal: call.principal, requestId: call.requestId };
    for (const ref of [input.KeyId, input.TargetKeyId, input.SourceKeyId, input.DestinationKeyId]) {
      if (typeof ref !== 'string') continue;
      try {
        arns.add(resolveKey(deps, ctx, ref).arn);
      } catch {
        /* not a key we can name */
      }
    }
    if (!arns.size && Buffer.isBuffer(input.CiphertextBlob)) {
      try {
        const key = deps.store.getKey(parseCiphertext(input.CiphertextBlob).keyId);
        if (key && key.accountId === call.principal.accountId) arns.add(key.arn);
      } catch {
        /* not our blob */
      }
    }
  }
  if (!arns.size) return undefined;
  return [...arns].map((ARN) => ({ ARN, type: KEY_TYPE, accountId: ARN.split(':')[4] }));
}

function materialIdOf(deps: KmsDeps, output: Record<string, unknown> | undefined): string | undefined {
  if (!output) return undefined;
  for (const v of [output.KeyMaterialId, output.DestinationKeyMaterialId]) if (typeof v === 'string') return v;
  // Encrypt does not return it: the symmetric blob names the key and material version.
  const blob = output.CiphertextBlob;
  if (!Buffer.isBuffer(blob)) return undefined;
  try {
    const parsed = parseCiphertext(blob);
    const key = deps.store.getKey(parsed.keyId);
    if (!key || key.keySpec !== 'SYMMETRIC_DEFAULT') return undefined;
    return deps.store.getMaterial(parsed.keyId, parsed.version)?.materialId;
  } catch {
    return undefined;
  }
}
