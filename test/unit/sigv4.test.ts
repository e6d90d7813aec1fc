import { describe, it, expect } from 'vitest';
import { SignatureV4 } from '@smithy/signature-v4';
import { HttpRequest } from '@smithy/protocol-http';
import { Sha256 } from '@aws-crypto/sha256-js';
import { SigV4Verifier, type IncomingSignedRequest, type SigningCredential } from '../../src/api/aws-json/sigv4.js';
import { ManualClock } from '../../src/clock.js';
import { KmsError } from '../../src/errors.js';

const CRED: SigningCredential = {
  accessKeyId: 'AKIAP11KMSTESTKEY001',
  secretAccessKey: 'tOpSeCrEt/p11kms+Example0123456789abcdEF',
};
const OTHER_SECRET = 'aNoThErSeCrEt/p11kms+Example0123456789xyz';

const SIGNING_DATE = new Date('2026-11-23T12:00:00Z');
const AMZ_DATE = '20261123T120000Z';
const BODY = JSON.stringify({ KeyId: 'alias/test', Plaintext: 'aGVsbG8=' });

const MISMATCH =
  'The request signature we calculated does not match the signature you provided. ' +
  'Check your AWS Secret Access Key and signing method. Consult the service documentation for details.';

type Query = Record<string, string | string[]>;

interface SignOpts {
  credential?: SigningCredential;
  region?: string;
  service?: string;
  signingDate?: Date;
  path?: string;
  query?: Query;
  headers?: Record<string, string>;
  body?: string;
}

/** What smithy's HTTP handlers put on the wire for a query: escapeUri(key)=escapeUri(value), in insertion order. */
function escapeUri(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
}
function wireQuery(query: Query): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(query)) {
    for (const one of Array.isArray(v) ? v : [v]) parts.push(`${escapeUri(k)}=${escapeUri(one)}`);
  }
  return parts.join('&');
}

async function signed(opts: SignOpts = {}): Promise<IncomingSignedRequest> {
  const credential = opts.credential ?? CRED;
  const signer = new SignatureV4({
    service: opts.service ?? 'kms',
    region: opts.region ?? 'us-east-1',
    credentials: { accessKeyId: credential.accessKeyId, secretAccessKey: credential.secretAccessKey },
    sha256: Sha256,
  });
  const body = opts.body ?? BODY;
  const request = new HttpRequest({
    method: 'POST',
    protocol: 'http:',
    hostname: '127.0.0.1',
    port: 4599,
    path: opts.path ?? '/',
    query: opts.query ?? {},
    headers: {
      'content-type': 'application/x-amz-json-1.1',
      'x-amz-target': 'TrentService.Encrypt',
      host: '127.0.0.1:4599',
      ...opts.headers,
    },
    body,
  });
  const out = (await signer.sign(request, { signingDate: opts.signingDate ?? SIGNING_DATE })) as HttpRequest;
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(out.headers)) headers[k.toLowerCase()] = v;
  const q = opts.query ? wireQuery(opts.query) : '';
  return {
    method: out.method,
    url: out.path + (q ? `?${q}` : ''),
    headers,
    body: Buffer.from(body, 'utf8'),
  };
}

function verifier(opts: { now?: number; lookup?: (id: string) => SigningCredential | undefined; maxSkewMs?: number } = {}) {
  const clock = new ManualClock(opts.now ?? SIGNING_DATE.getTime());
  const v = new SigV4Verifier({
    service: 'kms',
    region: 'us-east-1',
    clock,
    ...(opts.maxSkewMs !== undefined ? { maxSkewMs: opts.maxSkewMs } : {}),
    lookup: opts.lookup ?? ((id) => (id === CRED.accessKeyId ? CRED : undefined)),
  });
  return { v, clock };
}

function caught(fn: () => unknown): KmsError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(KmsError);
    return e as KmsError;
  }
  throw new Error('expected verify() to throw');
}

function withAuth(req: IncomingSignedRequest, authorization: string | undefined): IncomingSignedRequest {
  const headers = { ...req.headers };
  if (authorization === undefined) delete headers['authorization'];
  else headers['authorization'] = authorization;
  return { ...req, headers };
}

function auth(req: IncomingSignedRequest): string {
  return req.headers['authorization'] as string;
}

describe('SigV4Verifier with requests signed by @smithy/signature-v4', () => {
  it('verifies a valid request and returns the credential', async () => {
    const req = await signed();
    expect(auth(req)).toMatch(
      /^AWS4-HMAC-SHA256 Credential=AKIAP11KMSTESTKEY001\/20261123\/us-east-1\/kms\/aws4_request, SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$/,
    );
    expect(req.headers['x-amz-date']).toBe(AMZ_DATE);
    const { v } = verifier();
    expect(v.verify(req)).toBe(CRED);
    // Second call goes through the signing-key cache.
    expect(v.verify(req)).toBe(CRED);
  });

  it('verifies an empty body', async () => {
    const req = await signed({ body: '' });
    expect(verifier().v.verify(req)).toBe(CRED);
  });

  it('ignores unsigned headers added or changed in transit', async () => {
    const req = await signed();
    const headers = { ...req.headers, 'user-agent': 'changed/1.0', 'x-forwarded-for': '10.0.0.1' };
    expect(verifier().v.verify({ ...req, headers })).toBe(CRED);
  });

  it('rejects a tampered body', async () => {
    const req = await signed();
    // Remove the declared hash so the body check reaches the signature comparison.
    const base = { ...req, body: Buffer.from(BODY.replace('alias/test', 'alias/evil')) };
    const e1 = caught(() => verifier().v.verify(base));
    expect(e1.code).toBe('InvalidSignatureException');
    // With x-amz-content-sha256 absent, it is the signature itself that fails.
    const headers = { ...req.headers };
    delete headers['x-amz-content-sha256'];
    const signedHeaders = /SignedHeaders=([^,]+)/.exec(auth(req))![1]!;
    expect(signedHeaders.split(';')).toContain('x-amz-content-sha256');
    const e2 = caught(() => verifier().v.verify({ ...base, headers }));
    expect(e2.code).toBe('InvalidSignatureException');
    expect(e2.message).toBe(MISMATCH);
  });

  it('rejects a tampered signed header value', async () => {
    const req = await signed();
    const headers = { ...req.headers, 'x-amz-target': 'TrentService.Decrypt' };
    const e = caught(() => verifier().v.verify({ ...req, headers }));
    expect(e.code).toBe('InvalidSignatureException');
    expect(e.message).toBe(MISMATCH);
  });

  it('rejects a tampered method and path', async () => {
    const req = await signed();
    expect(caught(() => verifier().v.verify({ ...req, method: 'PUT' })).code).toBe('InvalidSignatureException');
    expect(caught(() => verifier().v.verify({ ...req, url: '/other' })).code).toBe('InvalidSignatureException');
    expect(caught(() => verifier().v.verify({ ...req, url: '/?a=1' })).code).toBe('InvalidSignatureException');
  });

  it('rejects a signature made with the wrong secret', async () => {
    const req = await signed({ credential: { accessKeyId: CRED.accessKeyId, secretAccessKey: OTHER_SECRET } });
    const e = caught(() => verifier().v.verify(req));
    expect(e.code).toBe('InvalidSignatureException');
    expect(e.message).toBe(MISMATCH);
  });

  it('uses the current secret when it changes (no stale cached signing key)', async () => {
    let current: SigningCredential = CRED;
    const { v } = verifier({ lookup: (id) => (id === CRED.accessKeyId ? current : undefined) });
    const oldReq = await signed();
    expect(v.verify(oldReq)).toBe(CRED);
    const rotated = { accessKeyId: CRED.accessKeyId, secretAccessKey: OTHER_SECRET };
    current = rotated;
    expect(caught(() => v.verify(oldReq)).code).toBe('InvalidSignatureException');
    expect(v.verify(await signed({ credential: rotated }))).toBe(rotated);
  });

  it('rejects an unknown access key id', async () => {
    const req = await signed({ credential: { accessKeyId: 'AKIAUNKNOWN000000000', secretAccessKey: CRED.secretAccessKey } });
    const e = caught(() => verifier().v.verify(req));
    expect(e.code).toBe('UnrecognizedClientException');
    expect(e.message).toBe('The security token included in the request is invalid.');
  });

  it('rejects a request without an Authorization header', async () => {
    const req = withAuth(await signed(), undefined);
    const e = caught(() => verifier().v.verify(req));
    expect(e.code).toBe('MissingAuthenticationTokenException');
    expect(e.message).toBe('Missing Authentication Token');
  });

  it('rejects presigned (query-string) authentication as incomplete', async () => {
    const req = withAuth(await signed(), undefined);
    const e = caught(() =>
      verifier().v.verify({ ...req, url: '/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00' }),
    );
    expect(e.code).toBe('IncompleteSignatureException');
  });

  describe('garbled Authorization headers', () => {
    const SIG = 'a'.repeat(64);
    const CREDENTIAL = `Credential=${CRED.accessKeyId}/20261123/us-east-1/kms/aws4_request`;
    const SH = 'SignedHeaders=host;x-amz-date';
    const cases: Array<[string, string, RegExp]> = [
      ['other scheme', 'Bearer abc.def', /Unsupported Authorization algorithm 'Bearer'/],
      ['SigV2-style', `AWS ${CRED.accessKeyId}:abc`, /Unsupported Authorization algorithm 'AWS'/],
      ['SigV4a', `AWS4-ECDSA-P256-SHA256 ${CREDENTIAL}, ${SH}, Signature=${SIG}`, /Unsupported/],
      ['algorithm only', 'AWS4-HMAC-SHA256', /requires 'Credential' parameter/],
      ['missing Signature', `AWS4-HMAC-SHA256 ${CREDENTIAL}, ${SH}`, /Authorization header requires 'Signature' parameter\./],
      ['missing Credential', `AWS4-HMAC-SHA256 ${SH}, Signature=${SIG}`, /Authorization header requires 'Credential' parameter\./],
      ['missing SignedHeaders', `AWS4-HMAC-SHA256 ${CREDENTIAL}, Signature=${SIG}`, /Authorization header requires 'SignedHeaders' parameter\./],
      ['empty Signature', `AWS4-HMAC-SHA256 ${CREDENTIAL}, ${SH}, Signature=`, /requires 'Signature' parameter/],
      ['part without =', `AWS4-HMAC-SHA256 ${CREDENTIAL}, ${SH}, Signature`, /not of the form 'key=value'/],
      ['duplicate parameter', `AWS4-HMAC-SHA256 ${CREDENTIAL}, ${CREDENTIAL}, ${SH}, Signature=${SIG}`, /duplicate 'Credential'/],
      ['credential with 4 parts', `AWS4-HMAC-SHA256 Credential=${CRED.accessKeyId}/20261123/us-east-1/kms, ${SH}, Signature=${SIG}`, /Credential parameter is malformed/],
      ['credential with empty part', `AWS4-HMAC-SHA256 Credential=${CRED.accessKeyId}//us-east-1/kms/aws4_request, ${SH}, Signature=${SIG}`, /Credential parameter is malformed/],
      ['short signature', `AWS4-HMAC-SHA256 ${CREDENTIAL}, ${SH}, Signature=${'a'.repeat(63)}`, /64 hexadecimal/],
      ['non-hex signature', `AWS4-HMAC-SHA256 ${CREDENTIAL}, ${SH}, Signature=${'g'.repeat(64)}`, /64 hexadecimal/],
      ['upper-case signed header', `AWS4-HMAC-SHA256 ${CREDENTIAL}, SignedHeaders=Host;x-amz-date, Signature=${SIG}`, /lower-case/],
      ['empty signed header name', `AWS4-HMAC-SHA256 ${CREDENTIAL}, SignedHeaders=host;;x-amz-date, Signature=${SIG}`, /lower-case/],
      ['host not signed', `AWS4-HMAC-SHA256 ${CREDENTIAL}, SignedHeaders=x-amz-date, Signature=${SIG}`, /Signed header 'host' is missing/],
      ['x-amz-date not signed', `AWS4-HMAC-SHA256 ${CREDENTIAL}, SignedHeaders=content-type;host, Signature=${SIG}`, /Signed header 'x-amz-date' is missing/],
    ];
    it.each(cases)('%s → IncompleteSignatureException', async (_name, header, message) => {
      const req = withAuth(await signed(), header);
      const e = caught(() => verifier().v.verify(req));
      expect(e.code).toBe('IncompleteSignatureException');
      expect(e.message).toMatch(message);
    });

    it('reports every missing parameter at once', async () => {
      const req = withAuth(await signed(), 'AWS4-HMAC-SHA256 ');
      const err = caught(() => verifier().v.verify(req));
      expect(err.message).toBe(
        "Authorization header requires 'Credential' parameter. " +
          "Authorization header requires 'Signature' parameter. " +
          "Authorization header requires 'SignedHeaders' parameter.",
      );
    });
  });

  it('tolerates separator and whitespace variations in the Authorization header', async () => {
    const req = await signed();
    const original = auth(req);
    const m = /^AWS4-HMAC-SHA256 (Credential=\S+), (SignedHeaders=\S+), (Signature=\S+)$/.exec(original)!;
    expect(m).not.toBeNull();
    const [, c, sh, s] = m;
    const variants = [
      `AWS4-HMAC-SHA256 ${c},${sh},${s}`,
      `AWS4-HMAC-SHA256  ${c} ,  ${sh} ,\t${s}  `,
      `AWS4-HMAC-SHA256 ${s}, ${c}, ${sh}`,
      `AWS4-HMAC-SHA256 ${c} ${sh} ${s}`,
      `  AWS4-HMAC-SHA256 ${c}, ${sh}, ${s}`,
      `AWS4-HMAC-SHA256 ${c}, ${sh}, ${s!.toUpperCase().replace('SIGNATURE=', 'Signature=')}`,
    ];
    for (const variant of variants) {
      expect(verifier().v.verify(withAuth(req, variant))).toBe(CRED);
    }
  });

  it('rejects a credential scoped to another region', async () => {
    const req = await signed({ region: 'us-west-2' });
    const e = caught(() => verifier().v.verify(req));
    expect(e.code).toBe('InvalidSignatureException');
    expect(e.message).toBe("Credential should be scoped to a valid region, not 'us-west-2'.");
  });

  it('rejects a credential scoped to another service', async () => {
    const req = await signed({ service: 'sqs' });
    const e = caught(() => verifier().v.verify(req));
    expect(e.code).toBe('InvalidSignatureException');
    expect(e.message).toBe("Credential should be scoped to correct service: 'kms'.");
  });

  it('rejects a wrong scope terminator', async () => {
    const req = await signed();
    const e = caught(() => verifier().v.verify(withAuth(req, auth(req).replace('/aws4_request', '/aws4_reqest'))));
    expect(e.code).toBe('InvalidSignatureException');
    expect(e.message).toMatch(/valid terminator: 'aws4_request'/);
  });

  it('rejects a scope date that differs from X-Amz-Date', async () => {
    const req = await signed();
    const e = caught(() => verifier().v.verify(withAuth(req, auth(req).replace('/20261123/', '/20261122/'))));
    expect(e.code).toBe('InvalidSignatureException');
    expect(e.message).toBe(
      "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '20261122' != '20261123', from '20261123T120000Z'.",
    );
  });

  describe('timestamps', () => {
    const MIN = 60_000;

    it('rejects a signature 6 minutes old', async () => {
      const req = await signed({ signingDate: new Date(SIGNING_DATE.getTime() - 6 * MIN) });
      const e = caught(() => verifier().v.verify(req));
      expect(e.code).toBe('InvalidSignatureException');
      expect(e.message).toBe(
        'Signature expired: 20261123T115400Z is now earlier than 20261123T115500Z (20261123T120000Z - 5 min.)',
      );
    });

    it('rejects a signature 6 minutes in the future', async () => {
      const req = await signed({ signingDate: new Date(SIGNING_DATE.getTime() + 6 * MIN) });
      const e = caught(() => verifier().v.verify(req));
      expect(e.code).toBe('InvalidSignatureException');
      expect(e.message).toBe(
        'Signature not yet current: 20261123T120600Z is still later than 20261123T120500Z (20261123T120000Z + 5 min.)',
      );
    });

    it('accepts 4 minutes of skew either way, and exactly 5', async () => {
      const req = await signed();
      const { v, clock } = verifier();
      for (const offset of [4 * MIN, -4 * MIN, 5 * MIN, -5 * MIN]) {
        clock.set(SIGNING_DATE.getTime() + offset);
        expect(v.verify(req)).toBe(CRED);
      }
      clock.set(SIGNING_DATE.getTime() + 5 * MIN + 1000);
      expect(caught(() => v.verify(req)).message).toMatch(/^Signature expired/);
    });

    it('honours a custom maxSkewMs', async () => {
      const req = await signed();
      const { v } = verifier({ now: SIGNING_DATE.getTime() + 2 * MIN, maxSkewMs: MIN });
      expect(caught(() => v.verify(req)).message).toBe(
        'Signature expired: 20261123T120000Z is now earlier than 20261123T120100Z (20261123T120200Z - 1 min.)',
      );
    });

    it('rejects a missing or malformed X-Amz-Date', async () => {
      const req = await signed();
      const noDate = { ...req.headers };
      delete noDate['x-amz-date'];
      const e1 = caught(() => verifier().v.verify({ ...req, headers: noDate }));
      expect(e1.code).toBe('IncompleteSignatureException');
      expect(e1.message).toBe("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.");
      for (const bad of ['2026-11-23T12:00:00Z', '20261123T120000', '20261323T120000Z', '20260231T120000Z', 'yesterday']) {
        const e = caught(() => verifier().v.verify({ ...req, headers: { ...req.headers, 'x-amz-date': bad } }));
        expect(e.code).toBe('IncompleteSignatureException');
      }
      const e3 = caught(() => verifier().v.verify({ ...req, headers: { ...noDate, date: 'not a date' } }));
      expect(e3.code).toBe('IncompleteSignatureException');
    });

    it('falls back to the Date header and requires it to be signed', async () => {
      const req = await signed();
      const headers: IncomingSignedRequest['headers'] = { ...req.headers, date: 'Mon, 23 Nov 2026 12:00:00 GMT' };
      delete headers['x-amz-date'];
      const e = caught(() => verifier().v.verify({ ...req, headers }));
      expect(e.code).toBe('IncompleteSignatureException');
      expect(e.message).toMatch(/Signed header 'date' is missing/);
      // Skew is measured against the Date header.
      const stale = { ...headers, date: 'Mon, 23 Nov 2026 11:50:00 GMT' };
      const staleReq = withAuth({ ...req, headers: stale }, auth(req).replace('x-amz-date', 'date'));
      const e2 = caught(() => verifier().v.verify(staleReq));
      expect(e2.code).toBe('InvalidSignatureException');
      expect(e2.message).toMatch(/^Signature expired: 20261123T115000Z/);
    });
  });

  it('rejects an x-amz-content-sha256 that does not match the body', async () => {
    const wrong = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'; // hash of ''
    const req = await signed({ headers: { 'x-amz-content-sha256': wrong } });
    expect(req.headers['x-amz-content-sha256']).toBe(wrong);
    const e = caught(() => verifier().v.verify(req));
    expect(e.code).toBe('InvalidSignatureException');
    expect(e.message).toMatch(/x-amz-content-sha256/);
  });

  it('verifies a request with a query string and a path needing encoding', async () => {
    const path = "/a%20b/c%2Fd/./e/../f/it's(1)*~_-.";
    const query: Query = {
      zeta: 'last',
      b: '2',
      a: ['z y', 'x+1', 'x 1'],
      'k~*!': "v'!()",
      'ü': 'ß/€',
      empty: '',
    };
    const req = await signed({ path, query });
    expect(req.url.startsWith(path + '?zeta=last&b=2&a=z%20y&a=x%2B1')).toBe(true);
    expect(verifier().v.verify(req)).toBe(CRED);
    // Re-ordering the wire query does not matter; changing a value does.
    const reordered = path + '?' + req.url.split('?')[1]!.split('&').reverse().join('&');
    expect(verifier().v.verify({ ...req, url: reordered })).toBe(CRED);
    expect(caught(() => verifier().v.verify({ ...req, url: req.url.replace('zeta=last', 'zeta=lost') })).code).toBe(
      'InvalidSignatureException',
    );
  });

  it('verifies a path that smithy was given unencoded', async () => {
    const req = await signed({ path: '/a b/ü' });
    expect(verifier().v.verify(req)).toBe(CRED);
  });

  it('verifies header values with extra internal and surrounding spaces', async () => {
    const req = await signed({ headers: { 'x-amz-meta-note': '  a   b \t c   d  ', 'x-amz-meta-multi': 'one,two' } });
    // As received, Node has already trimmed the surrounding whitespace.
    const headers = { ...req.headers, 'x-amz-meta-note': 'a   b \t c   d' };
    expect(verifier().v.verify({ ...req, headers })).toBe(CRED);
    // Untrimmed and collapsed forms canonicalise the same way.
    expect(verifier().v.verify(req)).toBe(CRED);
    expect(verifier().v.verify({ ...req, headers: { ...req.headers, 'x-amz-meta-note': 'a b c d' } })).toBe(CRED);
    // Repeated header delivered as an array is joined with ','.
    expect(verifier().v.verify({ ...req, headers: { ...req.headers, 'x-amz-meta-multi': ['one', ' two '] } })).toBe(CRED);
    // But a changed value is not.
    expect(
      caught(() => verifier().v.verify({ ...req, headers: { ...req.headers, 'x-amz-meta-note': 'a b c' } })).code,
    ).toBe('InvalidSignatureException');
  });

  it('accepts an absolute-form request target', async () => {
    const req = await signed({ query: { x: '1' } });
    expect(verifier().v.verify({ ...req, url: 'http://127.0.0.1:4599' + req.url })).toBe(CRED);
  });

  it('uses error codes and never leaks the secret in messages', async () => {
    const good = await signed();
    const errors: KmsError[] = [];
    const collect = (req: IncomingSignedRequest, now = SIGNING_DATE.getTime()) =>
      errors.push(caught(() => verifier({ now }).v.verify(req)));

    collect({ ...good, body: Buffer.from('{}') });
    collect(await signed({ credential: { accessKeyId: CRED.accessKeyId, secretAccessKey: OTHER_SECRET } }));
    collect(await signed({ credential: { accessKeyId: 'AKIAUNKNOWN000000000', secretAccessKey: CRED.secretAccessKey } }));
    collect(withAuth(good, undefined));
    collect(withAuth(good, `AWS4-HMAC-SHA256 Credential=${CRED.secretAccessKey}`));
    collect(withAuth(good, auth(good).replace(/Signature=\w+/, `Signature=${CRED.secretAccessKey}`)));
    collect(await signed({ region: 'eu-west-1' }));
    collect(await signed({ service: 'sts' }));
    collect(good, SIGNING_DATE.getTime() + 10 * 60_000);
    collect(good, SIGNING_DATE.getTime() - 10 * 60_000);

    expect(errors.map((e) => e.code)).toEqual([
      'InvalidSignatureException',
      'InvalidSignatureException',
      'UnrecognizedClientException',
      'MissingAuthenticationTokenException',
      'IncompleteSignatureException',
      'IncompleteSignatureException',
      'InvalidSignatureException',
      'InvalidSignatureException',
      'InvalidSignatureException',
      'InvalidSignatureException',
    ]);
    for (const e of errors) {
      expect(e.status).toBe(400);
      expect(e.name).toBe(e.code);
      expect(e.message).not.toContain(CRED.secretAccessKey);
      expect(e.message).not.toContain(OTHER_SECRET);
      expect(e.message).not.toContain('tOpSeCrEt');
    }
  });
});

/**
 * Vectors from the AWS Signature Version 4 test suite (aws-sig-v4-test-suite), independent of smithy:
 * credentials AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, us-east-1, service 'service',
 * 20150830T123600Z, Host: example.amazonaws.com, empty body.
 */
describe('SigV4Verifier against the AWS SigV4 test suite', () => {
  const SUITE_CRED = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };
  const suite = new SigV4Verifier({
    service: 'service',
    region: 'us-east-1',
    clock: new ManualClock(Date.UTC(2015, 7, 30, 12, 36, 0)),
    lookup: (id) => (id === 'AKIDEXAMPLE' ? SUITE_CRED : undefined),
  });
  const vector = (method: string, url: string, signature: string): IncomingSignedRequest => ({
    method,
    url,
    headers: {
      host: 'example.amazonaws.com',
      'x-amz-date': '20150830T123600Z',
      authorization:
        'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, ' +
        `SignedHeaders=host;x-amz-date, Signature=${signature}`,
    },
    body: Buffer.alloc(0),
  });

  it('get-vanilla', () => {
    const req = vector('GET', '/', '5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31');
    expect(suite.verify(req)).toBe(SUITE_CRED);
    expect(() => suite.verify({ ...req, method: 'POST' })).toThrow(/does not match/);
  });

  it('post-vanilla', () => {
    expect(suite.verify(vector('POST', '/', '5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b'))).toBe(
      SUITE_CRED,
    );
  });

  it('get-vanilla-query-order-key-case', () => {
    expect(
      suite.verify(
        vector('GET', '/?Param2=value2&Param1=value1', 'b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500'),
      ),
    ).toBe(SUITE_CRED);
  });
});
