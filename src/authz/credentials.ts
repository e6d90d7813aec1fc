import type { SigningCredential } from '../api/aws-json/sigv4.js';
import type { Principal } from '../kms/context.js';
import type { Secret } from '../secret.js';

export interface Credential extends SigningCredential {
  principal: Principal;
}

/**
 * Access keys the daemon accepts. Today: the bootstrap admin from configuration, acting as the
 * account root. Issue #3 adds users, roles and an admin command line behind the same lookup.
 */
export class CredentialRegistry {
  private readonly byAccessKey = new Map<string, { secret: Secret; principal: Principal }>();

  addRoot(accountId: string, accessKeyId: string, secret: Secret): void {
    this.byAccessKey.set(accessKeyId, {
      secret,
      principal: { type: 'Root', arn: `arn:aws:iam::${accountId}:root`, accountId, accessKeyId },
    });
  }

  lookup(accessKeyId: string): Credential | undefined {
    const entry = this.byAccessKey.get(accessKeyId);
    return entry && { accessKeyId, secretAccessKey: entry.secret.reveal(), principal: entry.principal };
  }
}
