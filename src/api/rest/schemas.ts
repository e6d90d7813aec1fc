import { z } from 'zod';

/**
 * Response schemas of the REST door, in its camel-case wire form (see names.ts). Requests need
 * none of their own: their schemas are the core operations' zod schemas with the members
 * renamed (routes.ts). These feed the OpenAPI document, and the tests check every response
 * against that document.
 */

const base64 = () => z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/).meta({ contentEncoding: 'base64' });
const keyArn = () => z.string().meta({ description: 'key ARN' });
const timestamp = () => z.iso.datetime();
const algorithms = () => z.array(z.string()).optional();

const keyMaterialId = z.string().optional();

export const EncryptResponse = z.object({ ciphertextBlob: base64(), keyId: keyArn(), encryptionAlgorithm: z.string() });
export const DecryptResponse = z.object({
  keyId: keyArn(), plaintext: base64(), encryptionAlgorithm: z.string(), keyMaterialId,
});
export const GenerateDataKeyResponse = z.object({ ciphertextBlob: base64(), plaintext: base64(), keyId: keyArn(), keyMaterialId });
export const GenerateDataKeyWithoutPlaintextResponse = z.object({ ciphertextBlob: base64(), keyId: keyArn(), keyMaterialId });
export const ReEncryptResponse = z.object({
  ciphertextBlob: base64(),
  sourceKeyId: keyArn(),
  keyId: keyArn(),
  sourceEncryptionAlgorithm: z.string(),
  destinationEncryptionAlgorithm: z.string(),
  sourceKeyMaterialId: z.string().optional(),
  destinationKeyMaterialId: z.string().optional(),
});
export const SignResponse = z.object({ keyId: keyArn(), signature: base64(), signingAlgorithm: z.string() });
export const VerifyResponse = z.object({ keyId: keyArn(), signatureValid: z.literal(true), signingAlgorithm: z.string() });
export const GenerateMacResponse = z.object({ mac: base64(), macAlgorithm: z.string(), keyId: keyArn() });
export const VerifyMacResponse = z.object({ keyId: keyArn(), macValid: z.literal(true), macAlgorithm: z.string() });
export const GetPublicKeyResponse = z.object({
  keyId: keyArn(),
  publicKey: base64().meta({ description: 'DER SubjectPublicKeyInfo, base64' }),
  customerMasterKeySpec: z.string(),
  keySpec: z.string(),
  keyUsage: z.string(),
  encryptionAlgorithms: algorithms(),
  signingAlgorithms: algorithms(),
  keyAgreementAlgorithms: algorithms(),
  macAlgorithms: algorithms(),
});
export const GenerateRandomResponse = z.object({ plaintext: base64() });

const page = { nextMarker: z.string().optional(), truncated: z.boolean() };
export const ListKeysResponse = z.object({ keys: z.array(z.object({ keyId: z.string(), keyArn: keyArn() })), ...page });
export const ListAliasesResponse = z.object({
  aliases: z.array(
    z.object({
      aliasName: z.string(),
      aliasArn: z.string(),
      targetKeyId: z.string().optional(),
      creationDate: timestamp().optional(),
      lastUpdatedDate: timestamp().optional(),
    }),
  ),
  ...page,
});

/** AWS's KeyMetadata, every member this daemon returns. */
export const KeyMetadata = z.object({
  awsAccountId: z.string(),
  keyId: z.string(),
  arn: keyArn(),
  creationDate: timestamp(),
  enabled: z.boolean(),
  description: z.string(),
  keyUsage: z.string(),
  keyState: z.string(),
  deletionDate: timestamp().optional(),
  validTo: timestamp().optional(),
  origin: z.string(),
  customKeyStoreId: z.string().optional(),
  cloudHsmClusterId: z.string().optional(),
  expirationModel: z.string().optional(),
  keyManager: z.string(),
  customerMasterKeySpec: z.string(),
  keySpec: z.string(),
  encryptionAlgorithms: algorithms(),
  signingAlgorithms: algorithms(),
  keyAgreementAlgorithms: algorithms(),
  macAlgorithms: algorithms(),
  multiRegion: z.boolean(),
  currentKeyMaterialId: z.string().optional(),
});
export const DescribeKeyResponse = z.object({ keyMetadata: KeyMetadata });
export const CreateAliasResponse = z.object({});

/** RFC 9457 problem details, with the AWS error name. */
export const Problem = z.object({
  type: z.string().meta({ description: 'URI naming the problem type: urn:p11kms:problem:<AWS error name>' }),
  title: z.string().meta({ description: 'The AWS error name, e.g. NotFoundException' }),
  status: z.number().int(),
  detail: z.string().meta({ description: "AWS's error message" }),
  code: z.string().meta({ description: 'The AWS error name again, for clients that switch on one member' }),
  requestId: z.string(),
});
