import type { KMSClient } from '@aws-sdk/client-kms';
import { adminCall } from '../../src/cli/credentials.js';
import { ACCOUNT, client, type Harness } from './daemon.js';

export const OTHER_ACCOUNT = '444455556666';

export interface TestPrincipal {
  arn: string;
  accountId: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** An SDK client signing with this principal's own credentials. */
  kms: KMSClient;
}

export const policyDoc = (statements: object[]) => JSON.stringify({ Version: '2012-10-17', Statement: statements });

/**
 * Creates a principal through the daemon's admin interface (the Unix socket the CLI uses),
 * with an optional identity policy, and returns a client that signs as it.
 */
export async function createPrincipal(
  h: Harness,
  opts: { type: 'user' | 'role' | 'root'; name?: string; account?: string; identity?: object[] },
): Promise<TestPrincipal> {
  const created = (await adminCall(h.daemon.socketPath, 'CreateCredential', {
    Type: opts.type,
    Name: opts.name,
    AccountId: opts.account ?? ACCOUNT,
    Policies: opts.identity ? { inline: policyDoc(opts.identity) } : undefined,
  })) as { AccessKeyId: string; SecretAccessKey: string; PrincipalArn: string };
  const credentials = { accessKeyId: created.AccessKeyId, secretAccessKey: created.SecretAccessKey };
  return {
    arn: created.PrincipalArn,
    accountId: opts.account ?? ACCOUNT,
    accessKeyId: created.AccessKeyId,
    secretAccessKey: created.SecretAccessKey,
    kms: client(h.endpoint, credentials),
  };
}

/** Replaces an identity policy of a principal (or removes it with `undefined`). */
export async function setIdentityPolicy(h: Harness, arn: string, statements: object[] | undefined, name = 'inline'): Promise<void> {
  if (statements) {
    await adminCall(h.daemon.socketPath, 'PutPrincipalPolicy', { PrincipalArn: arn, PolicyName: name, PolicyDocument: policyDoc(statements) });
  } else {
    await adminCall(h.daemon.socketPath, 'DeletePrincipalPolicy', { PrincipalArn: arn, PolicyName: name });
  }
}
