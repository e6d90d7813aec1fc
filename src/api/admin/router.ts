import express, { type Request, type Response } from 'express';
import { AdminError, type CredentialRegistry, type PrincipalKind } from '../../authz/credentials.js';
import type { Logger } from '../../log.js';

/**
 * The admin interface: credentials and identity policies. Served only on the Unix socket
 * (mode 0600), so the file system decides who may use it: the daemon's own user. The command
 * line (`p11kms credentials ...`, src/cli/credentials.ts) is its client.
 *
 *   POST /admin/v1/<Action> with a JSON body; answers JSON, errors as {"error": "..."}.
 */
export interface AdminOptions {
  credentials: CredentialRegistry;
  defaultAccountId: string;
  log: Logger;
}

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
    Promise.resolve()
      .then(() => run(body))
      .then(
        (out) => res.status(200).json(out),
        (e: unknown) => {
          if (e instanceof AdminError) res.status(e.status).json({ error: e.message });
          else {
            opts.log.error({ action, err: (e as Error).message }, 'admin action failed');
            res.status(500).json({ error: 'The admin action failed; see the daemon log.' });
          }
        },
      );
  });
  router.use('/admin', (err: unknown, _req: Request, res: Response, _next: express.NextFunction) => {
    res.status(400).json({ error: `Could not read the request: ${(err as Error).message}` });
  });
  return router;
}
