// Every vendor profile in native-config, run as shipped (its capabilities, session count, module
// environment) against the HSM emulator configured as that vendor (test/emulator/vendors), in
// front of a temp SoftHSM2 token: the daemon starts, logs in with the vendor's PIN format and runs
// a compact end-to-end core. One daemon at a time: the emulator is one library per process.
import {
  CreateKeyCommand, DecryptCommand, EncryptCommand, GenerateDataKeyCommand, ReEncryptCommand,
} from '@aws-sdk/client-kms';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createEmulator, type EmulatorVendor } from '../helpers/emulator.js';
import { failure, startHarness } from '../helpers/daemon.js';

/** The vendor part of each PIN format (the emulator refuses a PIN without it and strips it). */
const PIN_PREFIX: Partial<Record<EmulatorVendor, string>> = { cloudhsm: 'p11kms_cu:', yubihsm2: '0001' };
/** Each profile, the emulator preset that plays its vendor, and the generated-IV behaviour the emulator must have logged (proof the vendor path ran; none: no GCM at all). */
const PROFILES: [profile: string, vendor: EmulatorVendor, ivLog: string | undefined][] = [
  ['cloudhsm', 'cloudhsm', 'gcm-iv zero-buffer'],
  ['cloudhsm-vendor-gcm', 'cloudhsm', 'gcm-iv prepended'],
  ['luna', 'luna', 'gcm-iv appended'],
  ['nshield', 'nshield', 'gcm-iv zero-buffer'],
  ['yubihsm2', 'yubihsm2', undefined],
  ['kmsp11', 'kmsp11', 'gcm-iv zero-buffer'],
];

describe.each(PROFILES)('native-config/%s.json through the emulator as %s', (profile, vendor, ivLog) => {
  it('starts, and Encrypt/Decrypt/GenerateDataKey/ReEncrypt work; a wrong context is InvalidCiphertextException', async () => {
    let em!: ReturnType<typeof createEmulator>;
    const h = await startHarness({
      prepare: (token) => {
        em = createEmulator(token.dir, vendor);
        return {
          P11KMS_CONFIG: resolve(import.meta.dirname, `../../native-config/${profile}.json`),
          P11KMS_PKCS11_MODULE: em.module,
          P11KMS_PIN: (PIN_PREFIX[vendor] ?? '') + token.userPin,
        };
      },
    });
    try {
      const KeyId = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
      const EncryptionContext = { vendor };
      const Plaintext = Buffer.from(`through ${vendor}`);
      const enc = await h.kms.send(new EncryptCommand({ KeyId, Plaintext, EncryptionContext }));
      const dec = await h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, EncryptionContext }));
      expect(Buffer.from(dec.Plaintext!)).toEqual(Plaintext);

      const wrong = await failure(h.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, EncryptionContext: { vendor: 'other' } })));
      expect(wrong.name).toBe('InvalidCiphertextException');

      const dk = await h.kms.send(new GenerateDataKeyCommand({ KeyId, KeySpec: 'AES_256' }));
      const dkBack = await h.kms.send(new DecryptCommand({ CiphertextBlob: dk.CiphertextBlob }));
      expect(Buffer.from(dkBack.Plaintext!)).toEqual(Buffer.from(dk.Plaintext!));

      const other = (await h.kms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
      const re = await h.kms.send(new ReEncryptCommand({ CiphertextBlob: enc.CiphertextBlob, SourceEncryptionContext: EncryptionContext, DestinationKeyId: other }));
      const reBack = await h.kms.send(new DecryptCommand({ CiphertextBlob: re.CiphertextBlob }));
      expect(Buffer.from(reBack.Plaintext!)).toEqual(Plaintext);

      if (ivLog) expect(em.log().some((l) => l.startsWith(ivLog))).toBe(true);
      else expect(em.log().some((l) => l.startsWith('gcm-iv'))).toBe(false); // no GCM on this token at all
    } finally {
      await h.stop();
    }
  });
});
