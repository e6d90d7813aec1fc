import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DEFAULT_CHANNEL, migrations, storeSchema } from '../../src/store/pg/migrations.js';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

describe('PostgreSQL schemas of regions', () => {
  it("the default region's version 1 is the released text, byte for byte", () => {
    expect(sha256(migrations()[0]!)).toBe('e18c9cb75bfe408688c116419e0709861f2d187819b2c249dd1d55daf801f977');
  });

  it("a further region's schema differs only in its notification channel", () => {
    const west = storeSchema('eu-west-1');
    expect(west).toEqual({ name: 'p11kms_eu_west_1', channel: 'p11kms_eu_west_1_changes' });
    expect(storeSchema()).toEqual({ channel: DEFAULT_CHANNEL });
    expect(migrations(west.channel)[0]!.replace("pg_notify('p11kms_eu_west_1_changes'", "pg_notify('p11kms_changes'")).toBe(migrations()[0]);
    expect(migrations(west.channel).slice(1)).toEqual(migrations().slice(1));
  });

  it('refuses a region whose schema name PostgreSQL would truncate', () => {
    expect(() => storeSchema(`eu-${'x'.repeat(44)}-1`)).toThrow(/no PostgreSQL schema name fits it/);
    expect(storeSchema(`eu-${'x'.repeat(43)}-1`).channel).toHaveLength(63);
  });
});
