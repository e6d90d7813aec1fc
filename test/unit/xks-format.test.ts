import { describe, expect, it } from 'vitest';
import {
  ciphertextDataIntegrityValue, encodeCiphertextMetadata, parseCiphertextMetadata, xksTokenAad,
} from '../../src/kms/xks-format.js';

const b64 = (s: string) => Buffer.from(s, 'base64');
const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('ciphertextDataIntegrityValue (spec Appendix C)', () => {
  it('reproduces the worked test vector from the hex bytes', () => {
    const aad = hex('70 72 6f 6a 65 63 74 3d 6e 69 6c 65 2c 64 65 70 61 72 74 6d 65 6e 74 3d 6d 61 72 6b 65 74 69 6e 67');
    const metadata = hex('6b 65 79 5f 76 65 72 73 69 6f 6e 3d 31');
    const iv = hex('1c ca e5 47 0f 39 70 02 54 77 90 31');
    const ciphertext = hex('82 1c 64 2b 5b 71 78 33 67 de af 18');
    const tag = hex('bc 1c 4d da 77 07 d6 81 24 47 c5 95 5e 99 b2 61');
    expect([aad.length, metadata.length, iv.length, ciphertext.length, tag.length]).toEqual([33, 13, 12, 12, 16]);
    const cdiv = ciphertextDataIntegrityValue(aad, metadata, iv, ciphertext, tag);
    expect(cdiv.toString('hex')).toBe('a8703f2260bd8791ec2d15ea0b23e65a0631eedcf2a13a65cc82db3f47cf5ec7');
    expect(cdiv.toString('base64')).toBe('qHA/ImC9h5HsLRXqCyPmWgYx7tzyoTplzILbP0fPXsc=');
  });

  it('reproduces it from the Base64 fields of the spec\'s Encrypt request and response examples', () => {
    const cdiv = ciphertextDataIntegrityValue(
      b64('cHJvamVjdD1uaWxlLGRlcGFydG1lbnQ9bWFya2V0aW5n'), // "project=nile,department=marketing"
      b64('a2V5X3ZlcnNpb249MQ=='), // "key_version=1"
      b64('HMrlRw85cAJUd5Ax'),
      b64('ghxkK1txeDNn3q8Y'),
      b64('vBxN2ncH1oEkR8WVXpmyYQ=='),
    );
    expect(cdiv.toString('base64')).toBe('qHA/ImC9h5HsLRXqCyPmWgYx7tzyoTplzILbP0fPXsc=');
  });

  it('treats absent AAD and metadata as the empty string', () => {
    const iv = Buffer.alloc(12, 1);
    const ct = Buffer.from('ct');
    const tag = Buffer.alloc(16, 2);
    const none = ciphertextDataIntegrityValue(undefined, undefined, iv, ct, tag);
    expect(ciphertextDataIntegrityValue(Buffer.alloc(0), Buffer.alloc(0), iv, ct, tag)).toEqual(none);
    expect(none.length).toBe(32);
  });
});

describe('token AAD layout: u16be len(AAD) ‖ AAD ‖ u8 len(metadata) ‖ metadata', () => {
  it('encodes absent fields as zero lengths', () => {
    expect([...xksTokenAad(undefined, undefined)]).toEqual([0, 0, 0]);
    expect([...xksTokenAad(Buffer.alloc(0), Buffer.alloc(0))]).toEqual([0, 0, 0]);
  });

  it('lays out AAD and metadata with big-endian lengths', () => {
    const out = xksTokenAad(Buffer.from('ab'), Buffer.from([1, 0, 0, 0, 2]));
    expect(out.toString('hex')).toBe('0002' + '6162' + '05' + '0100000002');
    const big = xksTokenAad(Buffer.alloc(8192, 7), undefined);
    expect(big.readUInt16BE(0)).toBe(8192);
    expect(big.length).toBe(2 + 8192 + 1);
    expect(big[big.length - 1]).toBe(0);
  });

  it('keeps "metadata only" and "the metadata passed as AAD" apart (the spec\'s warning)', () => {
    const m = encodeCiphertextMetadata(1);
    expect(xksTokenAad(undefined, m).equals(xksTokenAad(m, undefined))).toBe(false);
    expect(xksTokenAad(Buffer.from('a'), Buffer.from('bc')).equals(xksTokenAad(Buffer.from('ab'), Buffer.from('c')))).toBe(false);
  });

  it('refuses what the length fields cannot express', () => {
    expect(() => xksTokenAad(Buffer.alloc(65536), undefined)).toThrow(RangeError);
    expect(() => xksTokenAad(undefined, Buffer.alloc(256))).toThrow(RangeError);
    expect(xksTokenAad(Buffer.alloc(65535), undefined).readUInt16BE(0)).toBe(65535);
  });
});

describe('ciphertextMetadata', () => {
  it('is format 0x01 and the u32 key-material version, 5 bytes (the spec allows 20)', () => {
    expect([...encodeCiphertextMetadata(1)]).toEqual([1, 0, 0, 0, 1]);
    expect([...encodeCiphertextMetadata(0x01020304)]).toEqual([1, 1, 2, 3, 4]);
    for (const v of [1, 2, 77, 0xffffffff]) expect(parseCiphertextMetadata(encodeCiphertextMetadata(v))).toBe(v);
  });

  it('is not ours when absent, of another length or format, or version 0', () => {
    expect(parseCiphertextMetadata(undefined)).toBeUndefined();
    expect(parseCiphertextMetadata(Buffer.alloc(0))).toBeUndefined();
    expect(parseCiphertextMetadata(Buffer.from([1, 0, 0, 1]))).toBeUndefined();
    expect(parseCiphertextMetadata(Buffer.from([1, 0, 0, 0, 1, 0]))).toBeUndefined();
    expect(parseCiphertextMetadata(Buffer.from([2, 0, 0, 0, 1]))).toBeUndefined();
    expect(parseCiphertextMetadata(Buffer.from([1, 0, 0, 0, 0]))).toBeUndefined();
  });
});
