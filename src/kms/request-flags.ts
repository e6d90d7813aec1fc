import { Errors } from '../errors.js';

/** DryRun: called after authorization and validation, before any effect (AWS's semantics). */
export function dryRunStop(dry: boolean | undefined): void {
  if (dry) throw Errors.dryRun('The request would have succeeded, but the DryRun option is set.');
}

/** Recipient needs a Nitro Enclaves attestation document; refused clearly rather than ignored. */
export function noRecipient(recipient: unknown): void {
  if (recipient !== undefined) {
    throw Errors.unsupported('Recipient (Nitro Enclaves attestation) is not supported by this key store.');
  }
}
