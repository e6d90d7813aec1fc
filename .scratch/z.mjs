import { z } from 'zod';
import { Encrypt, GenerateDataKey } from '/work/wt/issue-14/dist/kms/crypto.js';
console.log(JSON.stringify(z.toJSONSchema(Encrypt.schema, { io: 'input', target: 'openapi-3.0', unrepresentable: 'any' }), null, 1).slice(0, 2000));
try { console.log(JSON.stringify(z.toJSONSchema(GenerateDataKey.schema, { io: 'input' }))); } catch (e) { console.log('ERR', e.message); }
const s = z.object({ a: z.string().refine(v => ['X','Y'].includes(v)).meta({ enum: ['X','Y'], description: 'd' }), b: z.string().transform(s => Buffer.from(s)).meta({ contentEncoding: 'base64' }) });
console.log(JSON.stringify(z.toJSONSchema(s, { io: 'input' })));
