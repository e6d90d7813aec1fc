/** The only partition whose ARNs name this deployment's keys (every ARN it issues is in it). */
export const PARTITION = 'aws';

export const keyArn = (region: string, accountId: string, keyId: string): string =>
  `arn:aws:kms:${region}:${accountId}:key/${keyId}`;

export const aliasArn = (region: string, accountId: string, aliasName: string): string =>
  `arn:aws:kms:${region}:${accountId}:${aliasName}`;

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** A Multi-Region key id: `mrk-` and 32 hex digits (AWS's form). */
export const MRK_ID = /^mrk-[0-9a-f]{32}$/;
/** Any key id this daemon issues: a UUID or a Multi-Region key id. */
export const isKeyId = (s: string): boolean => UUID.test(s) || MRK_ID.test(s);
export const isMultiRegionKeyId = (s: string): boolean => MRK_ID.test(s);

export interface ParsedKmsArn {
  partition: string;
  region: string;
  accountId: string;
  resource: string;
}

/**
 * arn:<partition>:kms:<region>:<account>:<key/uuid | alias/name>, or undefined when not of that
 * form. The partition is returned, not checked: callers refuse every partition but PARTITION.
 */
export function parseKmsArn(arn: string): ParsedKmsArn | undefined {
  const m = /^arn:(aws[a-z-]*):kms:([a-z0-9-]+):(\d{12}):((?:key|alias)\/.+)$/.exec(arn);
  return m ? { partition: m[1] as string, region: m[2] as string, accountId: m[3] as string, resource: m[4] as string } : undefined;
}
