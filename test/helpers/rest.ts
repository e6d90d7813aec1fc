import { Ajv2020 } from 'ajv/dist/2020.js';
import { request } from 'node:http';
import { expect } from 'vitest';

/**
 * A REST client for tests that checks every answer against the daemon's own OpenAPI document
 * (GET /v1/openapi.json): the route and status must be documented, and a JSON body must
 * validate against the schema the document gives for it.
 */

export interface RestAnswer {
  status: number;
  type: string;
  headers: Record<string, string | string[] | undefined>;
  raw: Buffer;
  json: Record<string, any>;
}

type Target = { socketPath: string } | { port: number };

function send(target: Target, method: string, path: string, body?: Buffer, headers: Record<string, string> = {}): Promise<Omit<RestAnswer, 'json'>> {
  return new Promise((resolve, reject) => {
    const req = request(
      { ...target, host: '127.0.0.1', method, path, headers: { ...headers, ...(body ? { 'content-length': String(body.length) } : {}) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), headers: res.headers, raw: Buffer.concat(chunks) }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

export class RestClient {
  private doc: any;
  private readonly ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: true });
  /** How many answers were checked against the document (a test asserts it is not zero). */
  checked = 0;

  constructor(readonly target: Target) {}

  async document(): Promise<any> {
    if (!this.doc) {
      const r = await send(this.target, 'GET', '/v1/openapi.json');
      expect(r.status).toBe(200);
      this.doc = JSON.parse(r.raw.toString('utf8'));
      this.ajv.addSchema({ ...this.doc, $id: 'openapi.json' });
    }
    return this.doc;
  }

  async call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<RestAnswer> {
    const doc = await this.document();
    const raw = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
    const h = { ...(raw && !Buffer.isBuffer(body) ? { 'content-type': 'application/json' } : {}), ...headers };
    const r = await send(this.target, method, path, raw, h);
    const json = r.type.includes('json') ? JSON.parse(r.raw.toString('utf8')) : {};
    this.check(doc, method, path, r.status, r.type, json);
    return { ...r, json };
  }

  post = (path: string, body?: unknown, headers?: Record<string, string>) => this.call('POST', path, body, headers);
  get = (path: string) => this.call('GET', path);

  private check(doc: any, method: string, path: string, status: number, type: string, json: unknown): void {
    const template = templateOf(doc, path.split('?')[0]!);
    const media = type.split(';')[0]!.trim();
    const operation = template && doc.paths[template][method.toLowerCase()];
    // An unknown route or method has no operation; its problem answer is still checked.
    const responses = operation?.responses ?? { default: { content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } } } };
    const response = responses[String(status)] ?? responses.default;
    expect(response, `${method} ${path} ${status} is documented`).toBeDefined();
    const content = response.content?.[media];
    expect(content, `${method} ${path} ${status} ${media} is documented`).toBeDefined();
    if (media.endsWith('json')) {
      const schema = content.schema.$ref ? this.ajv.getSchema(`openapi.json${content.schema.$ref}`) : this.ajv.compile(content.schema);
      const valid = schema!(json);
      expect(valid, `${method} ${path} ${status}: ${JSON.stringify(schema!.errors)} in ${JSON.stringify(json)}`).toBe(true);
    }
    this.checked++;
  }
}

function templateOf(doc: any, path: string): string | undefined {
  const segments = path.split('/');
  return Object.keys(doc.paths).find((t) => {
    const ts = t.split('/');
    return ts.length === segments.length && ts.every((s, i) => s === segments[i] || (s.startsWith('{') && segments[i] !== ''));
  });
}
