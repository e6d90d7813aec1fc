import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config.js';

/**
 * `p11kms credentials ...`: manages access keys and identity policies of a running daemon
 * through its admin interface on the Unix socket (which only the daemon's user can open).
 */

export const USAGE = `Usage: p11kms credentials <command> [options]

Commands:
  create --user NAME | --role NAME | --root   Create an access key; prints the secret once.
         [--account ID] [--description TEXT]
         [--policy-file FILE | --policy JSON] [--policy-name NAME]
  list [--json]                               List access keys (never secrets).
  disable ACCESS_KEY_ID                       Refuse requests signed with this key.
  enable ACCESS_KEY_ID                        Accept them again.
  delete ACCESS_KEY_ID                        Delete the key.
  put-policy --arn ARN --policy-name NAME (--policy-file FILE | --policy JSON)
                                              Attach or replace an identity policy.
  delete-policy --arn ARN --policy-name NAME  Remove an identity policy.
  get-policies --arn ARN                      Print a principal's identity policies.

Options:
  --socket PATH   the daemon's Unix socket (default: P11KMS_SOCKET, the configuration, or
                  <P11KMS_DATA_DIR or ./var>/p11kms.sock)
`;

export class AdminCallError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** One admin call over the Unix socket. */
export function adminCall(socketPath: string, action: string, body: object = {}): Promise<Record<string, unknown>> {
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise((resolvePromise, reject) => {
    const req = request(
      {
        socketPath,
        method: 'POST',
        path: `/admin/v1/${action}`,
        headers: { 'content-type': 'application/json', 'content-length': payload.length },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let out: Record<string, unknown> = {};
          try {
            out = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
          } catch {
            /* not JSON */
          }
          if (res.statusCode === 200) resolvePromise(out);
          else reject(new AdminCallError(String(out.error ?? `HTTP ${res.statusCode}`), res.statusCode ?? 0));
        });
      },
    );
    req.on('error', (e) => reject(new AdminCallError(`Cannot reach the daemon at ${socketPath}: ${e.message}`, 0)));
    req.end(payload);
  });
}

/** The daemon's admin socket: --socket, P11KMS_SOCKET, the configuration, or <P11KMS_DATA_DIR or ./var>/p11kms.sock. */
export function socketFrom(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  if (flag) return resolve(flag);
  if (env.P11KMS_SOCKET) return resolve(env.P11KMS_SOCKET);
  try {
    return loadConfig(env).socketPath;
  } catch {
    return resolve(env.P11KMS_DATA_DIR || './var', 'p11kms.sock');
  }
}

function policyArg(file: string | undefined, inline: string | undefined): string | undefined {
  if (file !== undefined && inline !== undefined) throw new Error('Give --policy-file or --policy, not both.');
  if (file !== undefined) return readFileSync(file, 'utf8');
  return inline;
}

export interface CliIo {
  out: (s: string) => void;
  err: (s: string) => void;
}

/** Runs the command line; returns the process exit code. */
export async function runCredentialsCli(argv: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        user: { type: 'string' },
        role: { type: 'string' },
        root: { type: 'boolean' },
        account: { type: 'string' },
        description: { type: 'string' },
        'policy-file': { type: 'string' },
        policy: { type: 'string' },
        'policy-name': { type: 'string' },
        arn: { type: 'string' },
        json: { type: 'boolean' },
        socket: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    io.err(`${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values: o, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (o.help || !command) {
    (o.help ? io.out : io.err)(USAGE);
    return o.help ? 0 : 2;
  }
  const socket = socketFrom(o.socket, env);
  const call = (action: string, body: object = {}) => adminCall(socket, action, body);
  const one = (what: string): string => {
    if (rest.length !== 1) throw new UsageError(`${command} takes exactly one ${what}.`);
    return rest[0] as string;
  };
  try {
    switch (command) {
      case 'create': {
        const kinds = [o.user !== undefined, o.role !== undefined, o.root === true].filter(Boolean).length;
        if (kinds !== 1) throw new UsageError('create needs exactly one of --user NAME, --role NAME or --root.');
        const policy = policyArg(o['policy-file'], o.policy);
        const created = await call('CreateCredential', {
          Type: o.root ? 'root' : o.user !== undefined ? 'user' : 'role',
          Name: o.user ?? o.role,
          AccountId: o.account,
          Description: o.description,
          Policies: policy === undefined ? undefined : { [o['policy-name'] ?? 'default']: policy },
        });
        io.out(`${JSON.stringify(created, null, 2)}\n`);
        io.err('The secret access key is shown only this once; store it now.\n');
        return 0;
      }
      case 'list': {
        const { Credentials } = (await call('ListCredentials')) as { Credentials: Record<string, unknown>[] };
        if (o.json) {
          io.out(`${JSON.stringify(Credentials, null, 2)}\n`);
          return 0;
        }
        const rows = Credentials.map((c) => [
          String(c.AccessKeyId), c.Enabled ? 'enabled' : 'disabled', String(c.PrincipalArn),
          ((c.PolicyNames as string[] | undefined) ?? []).join(',') || '-', c.FromConfig ? 'config' : String(c.CreatedAt),
        ]);
        const header = ['ACCESS KEY ID', 'STATE', 'PRINCIPAL', 'POLICIES', 'CREATED'];
        const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
        for (const r of [header, ...rows]) io.out(`${r.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd()}\n`);
        return 0;
      }
      case 'disable':
      case 'enable':
      case 'delete': {
        const action = { disable: 'DisableCredential', enable: 'EnableCredential', delete: 'DeleteCredential' }[command];
        await call(action, { AccessKeyId: one('ACCESS_KEY_ID') });
        io.out(`${command}d ${rest[0]}\n`);
        return 0;
      }
      case 'put-policy': {
        const policy = policyArg(o['policy-file'], o.policy);
        if (!o.arn || !o['policy-name'] || policy === undefined) {
          throw new UsageError('put-policy needs --arn, --policy-name and --policy-file or --policy.');
        }
        await call('PutPrincipalPolicy', { PrincipalArn: o.arn, PolicyName: o['policy-name'], PolicyDocument: policy });
        return 0;
      }
      case 'delete-policy': {
        if (!o.arn || !o['policy-name']) throw new UsageError('delete-policy needs --arn and --policy-name.');
        await call('DeletePrincipalPolicy', { PrincipalArn: o.arn, PolicyName: o['policy-name'] });
        return 0;
      }
      case 'get-policies': {
        if (!o.arn) throw new UsageError('get-policies needs --arn.');
        const { Policies } = await call('GetPrincipalPolicies', { PrincipalArn: o.arn });
        io.out(`${JSON.stringify(Policies, null, 2)}\n`);
        return 0;
      }
      default:
        throw new UsageError(`Unknown command '${command}'.`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`${e.message}\n\n${USAGE}`);
      return 2;
    }
    io.err(`p11kms credentials ${command}: ${(e as Error).message}\n`);
    return 1;
  }
}

class UsageError extends Error {}
