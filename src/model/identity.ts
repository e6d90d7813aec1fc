/**
 * Plain types of identity that several layers share: a front door establishes them, the core,
 * authorization and audit read them. src/model imports nothing of the layers.
 */

/** Who is calling, as established by a front door's authentication. */
export interface Principal {
  type: 'Root' | 'IAMUser' | 'AssumedRole';
  arn: string;
  accountId: string;
  accessKeyId: string;
}

/** An access key pair a SigV4 signature is checked against. */
export interface SigningCredential {
  accessKeyId: string;
  secretAccessKey: string;
}
