import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { parseRegistryArn, principalArn } from '../../authz/credentials.js';
import type { Principal } from '../../model/identity.js';

/**
 * Sidecar sockets (README "REST API"): each is a Unix socket whose file permissions are the
 * authentication, speaking for one principal. Configured as `sidecars` in the file; the
 * environment's P11KMS_SIDECAR_SOCKET adds one for the account root, mode 0600 (development).
 */
export const SidecarsSchema = z
  .array(
    z
      .object({
        $comment: z.string().optional(),
        path: z.string().min(1),
        /** 'root' (the account root) or an IAM user or role ARN of the account: arn:aws:iam::<account>:user/<name>. */
        principal: z.string().min(1),
        /** Octal file mode of the socket, e.g. "0660" for the owner and one application's group. */
        mode: z.string().regex(/^0?[0-7]{3}$/, { message: 'an octal mode such as "0600" or "0660"' }).default('0600'),
        owner: z.object({ uid: z.number().int().min(0).optional(), gid: z.number().int().min(0).optional() }).strict().optional(),
      })
      .strict(),
  )
  .default([]);

export interface Sidecar {
  path: string;
  principal: Principal;
  mode: number;
  uid?: number | undefined;
  gid?: number | undefined;
}

const TYPES = { root: 'Root', user: 'IAMUser', role: 'AssumedRole' } as const;

export function resolveSidecars(
  file: z.output<typeof SidecarsSchema>,
  opts: { env: NodeJS.ProcessEnv; cwd: string; accountId: string; fail: (message: string) => never },
): Sidecar[] {
  const entries = [...file];
  if (opts.env.P11KMS_SIDECAR_SOCKET) entries.push({ path: opts.env.P11KMS_SIDECAR_SOCKET, principal: 'root', mode: '0600' });
  const seen = new Set<string>();
  return entries.map((s, i) => {
    const path = isAbsolute(s.path) ? s.path : resolve(opts.cwd, s.path);
    if (seen.has(path)) opts.fail(`sidecars[${i}]: socket ${path} is configured twice`);
    seen.add(path);
    const arn = s.principal === 'root' ? principalArn('root', opts.accountId) : s.principal;
    const parsed = parseRegistryArn(arn);
    if (!parsed) {
      opts.fail(`sidecars[${i}].principal: '${s.principal}' is neither 'root' nor an IAM user, role or root ARN (arn:aws:iam::<account>:user/<name>)`);
    }
    const principal: Principal = { type: TYPES[parsed!.kind], arn, accountId: parsed!.accountId, accessKeyId: '' };
    return { path, principal, mode: parseInt(s.mode, 8), uid: s.owner?.uid, gid: s.owner?.gid };
  });
}
