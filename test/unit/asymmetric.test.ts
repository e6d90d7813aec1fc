import { constants, generateKeyPairSync, privateDecrypt, publicEncrypt, randomBytes, sign, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ecdsaDerToRaw, ecdsaRawToDer, oaepDecode } from '../../src/hsm/asymmetric.js';

describe('OAEP decoding (the fallback for modules whose CKM_RSA_PKCS_OAEP is SHA-1 only)', () => {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  /** What the token's CKM_RSA_X_509 returns: the raw RSA private-key operation, k bytes. */
  const raw = (c: Buffer) => privateDecrypt({ key: privateKey, padding: constants.RSA_NO_PADDING }, c);

  it('recovers what node:crypto encrypted, for both hashes and every length up to the limit', () => {
    for (const [hash, max] of [['sha1', 214], ['sha256', 190]] as const) {
      for (const n of [0, 1, 17, max - 1, max]) {
        const m = randomBytes(n);
        const c = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash }, m);
        expect(oaepDecode(hash, raw(c), 256)?.equals(m), `${hash} ${n}`).toBe(true);
      }
    }
  });

  it('refuses a wrong hash, a damaged encoding, a label, and the wrong length', () => {
    const m = Buffer.from('secret');
    const c = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, m);
    const em = raw(c);
    expect(oaepDecode('sha1', em, 256)).toBeUndefined();
    for (const at of [0, 5, 40, 100, 255]) {
      const bad = Buffer.from(em);
      bad[at]! ^= 1;
      expect(oaepDecode('sha256', bad, 256), `byte ${at}`).toBeUndefined();
    }
    const labelled = publicEncrypt(
      { key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: Buffer.from('L') }, m,
    );
    expect(oaepDecode('sha256', raw(labelled), 256)).toBeUndefined();
    expect(oaepDecode('sha256', em.subarray(1), 256)).toBeUndefined();
    expect(oaepDecode('sha256', Buffer.alloc(256), 256)).toBeUndefined();
  });
});

describe('ECDSA signature encoding (PKCS#11 r‖s ↔ DER)', () => {
  it('round-trips and matches what node:crypto verifies, for every curve size, including short r and s', () => {
    for (const [curve, size] of [['prime256v1', 32], ['secp384r1', 48], ['secp521r1', 66]] as const) {
      const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: curve });
      for (let i = 0; i < 40; i++) {
        const msg = randomBytes(16);
        const p1363 = sign(null, msg, { key: privateKey, dsaEncoding: 'ieee-p1363' });
        const der = ecdsaRawToDer(p1363);
        expect(verify(null, msg, { key: publicKey, dsaEncoding: 'der' }, der)).toBe(true);
        expect(ecdsaDerToRaw(der, size)?.equals(p1363)).toBe(true);
      }
    }
    // r with a high bit gets a 0x00 pad (33 bytes); s loses its two leading zero bytes (30): 2+33+2+30 = 0x43.
    const rs = Buffer.concat([Buffer.from([0x80, ...Buffer.alloc(31, 1)]), Buffer.from([0, 0, 5, ...Buffer.alloc(29, 2)])]);
    const der = ecdsaRawToDer(rs);
    expect(der.subarray(0, 6).toString('hex')).toBe('3043022100' + '80');
    expect(der.subarray(37, 40).toString('hex')).toBe('021e05');
    expect(ecdsaDerToRaw(der, 32)?.equals(rs)).toBe(true);
  });

  it('rejects malformed DER instead of guessing', () => {
    const good = ecdsaRawToDer(Buffer.alloc(64, 7));
    const cases: Buffer[] = [
      Buffer.alloc(0),
      good.subarray(0, good.length - 1),
      Buffer.concat([good, Buffer.from([0])]),
      Buffer.from('3006020100020100', 'hex').subarray(0, 7),
      Buffer.from('30060201ff020101', 'hex'), // negative r
      Buffer.from('3007020200010201' + '01', 'hex'), // non-minimal r
      Buffer.from('3006020101020101', 'hex').fill(0x31, 0, 1), // SET, not SEQUENCE
      ecdsaRawToDer(Buffer.concat([Buffer.alloc(33, 1), Buffer.alloc(33, 1)])), // r wider than the curve
    ];
    for (const c of cases) expect(ecdsaDerToRaw(c, 32), c.toString('hex')).toBeUndefined();
  });
});
