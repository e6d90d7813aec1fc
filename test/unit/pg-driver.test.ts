import { describe, expect, it } from 'vitest';
import { translate } from '../../src/store/pg/driver.js';

describe('SQL translation to PostgreSQL', () => {
  it('numbers positional parameters, skipping string literals', () => {
    expect(translate("SELECT * FROM t WHERE a = ? AND s = '?' AND b > ? LIMIT ?").text).toBe(
      "SELECT * FROM t WHERE a = $1 AND s = '?' AND b > $3".replace('$3', '$2') + ' LIMIT $3',
    );
  });
  it('maps named parameters to one number each, in first-use order', () => {
    const t = translate('SELECT * FROM g WHERE k = @key AND (@grant IS NULL OR id = @grant) LIMIT @limit');
    expect(t.text).toBe('SELECT * FROM g WHERE k = $1 AND ($2 IS NULL OR id = $2) LIMIT $3');
    expect(t.names).toEqual(['key', 'grant', 'limit']);
  });
  it('turns IS ? into IS NOT DISTINCT FROM (NULL matches NULL, as in SQLite)', () => {
    expect(translate('SELECT 1 FROM k WHERE s IS ?').text).toBe('SELECT 1 FROM k WHERE s IS NOT DISTINCT FROM $1');
  });
});
