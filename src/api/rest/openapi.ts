import { z } from 'zod';
import { REST_STATUS } from './problem.js';
import { compiledRoutes, type CompiledRoute } from './routes.js';
import { Problem } from './schemas.js';

/**
 * The OpenAPI 3.1 document of the REST door, generated from the zod schemas that validate the
 * requests (the core operations' own, renamed) and describe the responses (schemas.ts). OpenAPI
 * 3.1 schemas are JSON Schema 2020-12, which is what zod emits.
 */

type Json = Record<string, unknown>;

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): Json {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Json;
  return rest;
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const problemContent = { 'application/problem+json': { schema: ref('Problem') } };

const KEY_PARAMETER = {
  name: 'key',
  in: 'path',
  required: true,
  description: 'A key id, an alias name without the alias/ prefix (a / in it as %2F), or a URL-encoded key or alias ARN.',
  schema: { type: 'string', minLength: 1 },
};

function operationOf(route: CompiledRoute): Json {
  const parameters: Json[] = route.keyMember ? [KEY_PARAMETER] : [];
  const op: Json = {
    operationId: route.operation,
    summary: route.summary,
    description: `The core operation ${route.operation} (AWS KMS API Reference), members in camel case.`,
    parameters,
    responses: {
      200: {
        description: 'Success',
        content: {
          'application/json': { schema: ref(`${route.operation}Response`) },
          ...(route.octet ? { 'application/octet-stream': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } } } : {}),
        },
      },
      default: { description: 'An error: RFC 9457 problem details carrying the AWS error name', content: problemContent },
    },
  };
  if (route.fromQuery) {
    const properties = (jsonSchema(route.requestSchema, 'input').properties ?? {}) as Record<string, Json>;
    for (const [name, schema] of Object.entries(properties)) parameters.push({ name, in: 'query', required: false, schema });
    return op;
  }
  const content: Json = { 'application/json': { schema: ref(`${route.operation}Request`) } };
  if (route.octet) {
    content['application/octet-stream'] = {
      schema: { type: 'string', contentMediaType: 'application/octet-stream' },
      description: `The raw ${route.octet.request}; the answer is the raw ${route.octet.response} (header Kms-Key-Id names the key). ` +
        'The encryption context comes as query parameters context.<name>=<value>.',
    };
    parameters.push({
      name: 'context',
      in: 'query',
      required: false,
      style: 'deepObject',
      description: 'With application/octet-stream only: the encryption context, one context.<name>=<value> parameter per pair.',
      schema: { type: 'object', additionalProperties: { type: 'string' } },
    });
  }
  op.requestBody = { required: !route.fromQuery && route.operation !== 'GetPublicKey', content };
  return op;
}

export function openApiDocument(): Json {
  const paths: Record<string, Record<string, Json>> = {};
  const schemas: Record<string, Json> = { Problem: jsonSchema(Problem, 'output') };
  for (const route of compiledRoutes) {
    (paths[route.path] ??= {})[route.method.toLowerCase()] = operationOf(route);
    if (!route.fromQuery) schemas[`${route.operation}Request`] = jsonSchema(route.requestSchema, 'input');
    schemas[`${route.operation}Response`] ??= jsonSchema(route.response, 'output');
  }
  paths['/v1/openapi.json'] = {
    get: {
      operationId: 'GetOpenApiDocument',
      summary: 'This document',
      responses: { 200: { description: 'The OpenAPI 3.1 document', content: { 'application/json': { schema: { type: 'object' } } } } },
    },
  };
  return {
    openapi: '3.1.0',
    info: {
      title: 'p11kms REST API',
      version: '1',
      description:
        'AWS KMS operations as resource-style routes, served on sidecar Unix sockets (the socket file permissions authenticate ' +
        'the caller) and on the TCP listener with SigV4. Error statuses by AWS error name: ' +
        Object.entries(REST_STATUS).map(([code, status]) => `${code} ${status}`).join(', ') + '.',
    },
    servers: [{ url: 'http://localhost', description: 'A sidecar socket: curl --unix-socket <path> http://localhost/v1/...' }],
    paths,
    components: { schemas },
  };
}
