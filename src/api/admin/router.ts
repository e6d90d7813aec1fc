import express, { type Request, type Response } from 'express';
import type { Audit, AuditEventInput } from '../../audit/types.js';
import { AdminError, type CredentialRegistry, type PrincipalKind } from '../../authz/credentials.js';
import type { Logger } from '../../log.js';

/**
 * The admin interface: credentials and identity policies. Served only on the Unix socket
 * (mode 0600), so the file system decides who may use it: the daemon's own user. The command
 * line (`p11kms credentials ...`, src/cli/credentials.ts) is its client.
 *
 *   POST /admin/v1/<Action> with a JSON body; answers JSON, errors as {"error": "..."}.
 *
 * Every call is recorded in the audit trail (eventSource 'p11kms-admin', eventName the action,
 * the body as request parameters) before it is answered; the SecretAccessKey of a new
 * credential is never part of the event. In fail-closed mode calls are refused while the trail
 * cannot be written.
 */
export interface AdminOptions {
  credentials: CredentialRegistry;
  defaultAccountId: string;
  log: Logger;
  /** The audit trail (disabledAudit when there is none). */
  audit: Audit;
}

export const ADMIN_EVENT_SOURCE = 'p11kms-admin';

type Body = Record<string, unknown>;
const str = (b: Body, name: string, required = true): string | undefined => {
  const v = b[name];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string' || v.length === 0) throw new AdminError(`${name} must be a non-empty string.`);
  return v;
};
const doc = (v: unknown): string => (typeof v === 'string' ? v : JSON.stringify(v));

export function adminRouter(opts: AdminOptions): express.Router {
  const reg = opts.credentials;
  const actions: Record<string, (b: Body) => Promise<unknown> | unknown> = {
    CreateCredential: async (b) => {
      const kind = str(b, 'Type') as PrincipalKind;
      if (!['root', 'user', 'role'].includes(kind)) throw new AdminError('Type must be root, user or role.');
      const policies = b.Policies === undefined ? undefined : b.Policies;
      if (policies !== undefined && (typeof policies !== 'object' || policies === null || Array.isArray(policies))) {
        throw new AdminError('Policies must map policy names to policy documents.');
      }
      const created = await reg.create({
        kind,
        accountId: str(b, 'AccountId', false) ?? opts.defaultAccountId,
        name: str(b, 'Name', false),
        description: str(b, 'Description', false),
        policies: policies && Object.fromEntries(Object.entries(policies).map(([n, d]) => [n, doc(d)])),
      });
      opts.log.info({ accessKeyId: created.AccessKeyId, principal: created.PrincipalArn }, 'credential created');
      return created;
    },
    ListCredentials: () => ({
      Credentials: reg.list().map((c) => ({ ...c, PolicyNames: Object.keys(reg.policiesOf(c.PrincipalArn)) })),
    }),
    DisableCredential: (b) => {
      reg.setEnabled(str(b, 'AccessKeyId') as string, false);
      opts.log.info({ accessKeyId: b.AccessKeyId }, 'credential disabled');
      return {};
    },
    EnableCredential: (b) => {
      reg.setEnabled(str(b, 'AccessKeyId') as string, true);
      opts.log.info({ accessKeyId: b.AccessKeyId }, 'credential enabled');
      return {};
    },
    DeleteCredential: (b) => {
      reg.delete(str(b, 'AccessKeyId') as string);
      opts.log.info({ accessKeyId: b.AccessKeyId }, 'credential deleted');
      return {};
    },
    PutPrincipalPolicy: (b) => {
      if (b.PolicyDocument === undefined) throw new AdminError('PolicyDocument is required.');
      reg.putPolicy(str(b, 'PrincipalArn') as string, str(b, 'PolicyName') as string, doc(b.PolicyDocument));
      opts.log.info({ principal: b.PrincipalArn, policy: b.PolicyName }, 'identity policy set');
      return {};
    },
    DeletePrincipalPolicy: (b) => {
      reg.deletePolicy(str(b, 'PrincipalArn') as string, str(b, 'PolicyName') as string);
      opts.log.info({ principal: b.PrincipalArn, policy: b.PolicyName }, 'identity policy deleted');
      return {};
    },
    GetPrincipalPolicies: (b) => ({ Policies: reg.policiesOf(str(b, 'PrincipalArn') as string) }),
  };

  const router = express.Router();
  router.post('/admin/v1/:action', express.json({ limit: '256kb', type: () => true }), (req: Request, res: Response) => {
    const action = String(req.params.action);
    const run = Object.hasOwn(actions, action) ? actions[action] : undefined;
    if (!run) {
      res.status(404).json({ error: `Unknown admin action ${action}.` });
      return;
    }
    const body = (req.body && typeof req.body === 'object' ? req.body : {}) as Body;
    const { audit } = opts;
    Promise.resolve()
      .then(async () => {
        if (audit.failClosed && !(await audit.ready())) throw new AuditRefused();
        return run(body);
      })
      .then(
        (out) => ({ status: 200, out: out as Record<string, unknown> | undefined, error: undefined }),
        (e: unknown) => {
          if (e instanceof AdminError) return { status: e.status, out: undefined, error: { code: errorCode(e.status), message: e.message } };
          if (!(e instanceof AuditRefused)) opts.log.error({ action, err: (e as Error).message }, 'admin action failed');
          return {
            status: 500,
            out: undefined,
            error: { code: e instanceof AuditRefused ? 'AuditUnavailable' : 'InternalError', message: (e as Error).message },
          };
        },
      )
      .then(async (result) => {
        const event = adminEvent(action, req, body, result.out, result.error);
        try {
          await audit.record(event);
        } catch (e) {
          opts.log.error({ action, err: (e as Error).message }, 'admin audit event not written');
          // As for the AWS API: the change is made, but nothing is answered without its event (a
          // new credential's secret is withheld).
          if (audit.failClosed) return { status: 500, out: undefined, error: { code: 'AuditUnavailable', message: new AuditRefused().message } };
        }
        return result;
      })
      .then((result) => {
        if (result.status === 200) res.status(200).json(result.out);
        else if (result.status === 500) {
          res.status(500).json({ error: result.error?.code === 'AuditUnavailable' ? result.error.message : 'The admin action failed; see the daemon log.' });
        } else res.status(result.status).json({ error: result.error?.message });
      })
      .catch((e: unknown) => opts.log.error({ action, err: (e as Error).message }, 'admin response not sent'));
  });
  router.use('/admin', (err: unknown, _req: Request, res: Response, _next: express.NextFunction) => {
    res.status(400).json({ error: `Could not read the request: ${(err as Error).message}` });
  });
  return router;
}

class AuditRefused extends Error {
  constructor() {
    super('The audit trail cannot be written, so the admin action was refused (or its result withheld). Retry later.');
  }
}

const errorCode = (status: number): string => (status === 404 ? 'NotFoundException' : status === 409 ? 'ConflictException' : 'ValidationException');

/** The CloudTrail-shaped event of one admin call; never holds a secret access key. */
function adminEvent(
  action: string,
  req: Request,
  body: Body,
  out: Record<string, unknown> | undefined,
  error: { code: string; message: string } | undefined,
): AuditEventInput {
  const readOnly = /^(List|Get)/.test(action);
  let responseElements: Record<string, unknown> | null = null;
  if (!error && !readOnly && out) {
    // Only what identifies the result: CreateCredential's secret stays out by construction.
    const { AccessKeyId, PrincipalArn } = out;
    responseElements = { AccessKeyId, PrincipalArn };
  }
  return {
    eventName: action.replace(/[^A-Za-z0-9]/g, '').slice(0, 64) || 'Unknown',
    eventSource: ADMIN_EVENT_SOURCE,
    principal: { type: 'AWSService', invokedBy: ADMIN_EVENT_SOURCE },
    sourceIp: 'unix-socket',
    userAgent: req.headers['user-agent']?.slice(0, 1024),
    requestParameters: body,
    responseElements,
    readOnly,
    errorCode: error?.code,
    errorMessage: error?.message,
  };
}
