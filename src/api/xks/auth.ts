import { authorize } from '../../authz/authorize.js';
import type { Authz } from '../../authz/engine.js';
import type { Clock } from '../../clock.js';
import type { Principal } from '../../kms/context.js';
import type { XksDaemonKey } from '../../kms/xks.js';
import { SigV4Verifier, type IncomingSignedRequest, type SigningCredential } from '../aws-json/sigv4.js';
import type { XksCredential } from './config.js';
import { XksError } from './errors.js';
import type { KeyRequestMetadata } from './schemas.js';

export const XKS_SIGNING_SERVICE = 'kms-xks-proxy';
const REGION = /^[a-z]{2}(-[a-z]+)+-\d+$/;
/** Credential=<id>/<date>/<region>/<service>/aws4_request: only the region is needed before verifying. */
const SCOPE_REGION = /Credential=[^/\s,]*\/[^/\s,]*\/([^/\s,]*)\//;
const MAX_VERIFIERS = 64;

/**
 * SigV4 for one URI prefix: its (at most two) credentials, service `kms-xks-proxy`, and the
 * region the request is signed for. The spec says the region in the credential scope is the
 * one KMS calls from, so any well-formed region is accepted unless the configuration lists the
 * regions to accept. The shared verifier (src/api/aws-json/sigv4.ts) checks one region, so one
 * verifier is kept per region seen (bounded), each with its own signing-key cache.
 */
export class XksAuthenticator {
  private readonly byAccessKey = new Map<string, XksCredential>();
  private readonly verifiers = new Map<string, SigV4Verifier>();
  private readonly fallbackRegion: string;

  constructor(
    credentials: XksCredential[],
    private readonly regions: string[] | undefined,
    private readonly clock: Clock,
  ) {
    for (const c of credentials) this.byAccessKey.set(c.accessKeyId, c);
    this.fallbackRegion = regions?.[0] ?? 'us-east-1';
  }

  /** The access key id that signed the request; throws AuthenticationFailedException otherwise. */
  authenticate(req: IncomingSignedRequest): string {
    const header = req.headers['authorization'];
    const region = typeof header === 'string' ? SCOPE_REGION.exec(header)?.[1] : undefined;
    let verifierRegion = this.fallbackRegion;
    if (region !== undefined) {
      const allowed = this.regions ? this.regions.includes(region) : REGION.test(region);
      if (!allowed) {
        throw new XksError('AuthenticationFailedException', `Credential should be scoped to a valid region, not '${region.slice(0, 64)}'.`);
      }
      verifierRegion = region;
    }
    return this.verifier(verifierRegion).verify(req).accessKeyId;
  }

  private verifier(region: string): SigV4Verifier {
    let v = this.verifiers.get(region);
    if (!v) {
      if (this.verifiers.size >= MAX_VERIFIERS) this.verifiers.clear();
      v = new SigV4Verifier({
        service: XKS_SIGNING_SERVICE,
        region,
        clock: this.clock,
        lookup: (id): SigningCredential | undefined => {
          const c = this.byAccessKey.get(id);
          return c && { accessKeyId: id, secretAccessKey: c.secretAccessKey.reveal() };
        },
      });
      this.verifiers.set(region, v);
    }
    return v;
  }
}

export type XksKeyOperation = 'GetKeyMetadata' | 'Encrypt' | 'Decrypt';

/**
 * The KMS operations expected behind each XKS operation, and the key-policy action each is
 * evaluated as. CreateKey reaches GetKeyMetadata before the KMS key exists, so it is checked as
 * DescribeKey of the daemon key. Anything else is refused: the spec lets a proxy with secondary
 * authorization fail KMS operations it does not know yet.
 */
const ACTIONS: Record<XksKeyOperation, Readonly<Record<string, string>>> = {
  GetKeyMetadata: { DescribeKey: 'DescribeKey', CreateKey: 'DescribeKey' },
  Encrypt: {
    Encrypt: 'Encrypt',
    GenerateDataKey: 'GenerateDataKey',
    GenerateDataKeyWithoutPlaintext: 'GenerateDataKeyWithoutPlaintext',
    GenerateDataKeyPair: 'GenerateDataKeyPair',
    GenerateDataKeyPairWithoutPlaintext: 'GenerateDataKeyPairWithoutPlaintext',
    ReEncrypt: 'ReEncryptTo',
  },
  Decrypt: { Decrypt: 'Decrypt', ReEncrypt: 'ReEncryptFrom' },
};

/** aws:PrincipalArn forms the daemon has principal types for; service principals and "AWS Internal" have none. */
export function principalFromArn(arn: string, accessKeyId: string): Principal | undefined {
  const m = /^arn:aws[a-z-]*:(iam|sts)::(\d{12}):(root|user\/.+|role\/.+|assumed-role\/.+)$/.exec(arn);
  if (!m) return undefined;
  const [, service, accountId, resource] = m as unknown as [string, string, string, string];
  let type: Principal['type'];
  if (resource === 'root' && service === 'iam') type = 'Root';
  else if (resource.startsWith('user/') && service === 'iam') type = 'IAMUser';
  else if ((resource.startsWith('role/') && service === 'iam') || (resource.startsWith('assumed-role/') && service === 'sts')) {
    type = 'AssumedRole';
  } else return undefined;
  return { type, arn, accountId, accessKeyId };
}

/**
 * Optional secondary authorization: the daemon's authorize() for the daemon key (its key policy
 * and grants, through the engine when the daemon has one), with the AWS principal and the KMS
 * operation from requestMetadata. GetHealthStatus never comes here.
 */
export function secondaryAuthorize(
  op: XksKeyOperation,
  meta: KeyRequestMetadata | { awsPrincipalArn: string; kmsOperation: string },
  key: XksDaemonKey,
  ctx: { accessKeyId: string; requestId: string; sourceIp?: string | undefined; authz?: Authz | undefined; secureTransport: boolean },
): void {
  const action = ACTIONS[op][meta.kmsOperation];
  if (action === undefined) {
    throw new XksError('AccessDeniedException', `kmsOperation ${meta.kmsOperation.slice(0, 64)} is not authorized for XKS ${op}.`);
  }
  const principal = principalFromArn(meta.awsPrincipalArn, ctx.accessKeyId);
  if (!principal) {
    throw new XksError('AccessDeniedException', `Principal ${meta.awsPrincipalArn.slice(0, 256)} is not authorized to use this key.`);
  }
  authorize(
    { principal, requestId: ctx.requestId, sourceIp: ctx.sourceIp, authz: ctx.authz, secureTransport: ctx.secureTransport, input: {} },
    action,
    key,
  );
}
