/** Rows behind authorization: credentials, identity policies and grants. */

/** An access key. The secret is stored only sealed (AES-GCM under a key kept in the token). */
export interface CredentialRecord {
  accessKeyId: string;
  principalArn: string;
  /** IV ‖ ciphertext ‖ tag, sealed by src/kms/secret-box.ts. */
  sealedSecret: Buffer;
  enabled: boolean;
  createdAt: number;
  description: string;
}

/** An inline identity (IAM-style) policy attached to a user or role. */
export interface IdentityPolicyRecord {
  principalArn: string;
  policyName: string;
  document: string;
}

export interface GrantConstraintsRecord {
  EncryptionContextSubset?: Record<string, string> | undefined;
  EncryptionContextEquals?: Record<string, string> | undefined;
}

export interface GrantRecord {
  grantId: string;
  keyId: string;
  name?: string | undefined;
  granteePrincipal: string;
  retiringPrincipal?: string | undefined;
  operations: string[];
  constraints?: GrantConstraintsRecord | undefined;
  /** Account id of the key's owner, in which the grant was issued. */
  issuingAccount: string;
  createdAt: number;
  token: string;
}

export interface GrantFilter {
  grantId?: string | undefined;
  granteePrincipal?: string | undefined;
}
