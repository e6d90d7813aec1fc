import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

/**
 * botocore's service model of AWS KMS (data/kms/2014-11-01/service-2.json.gz), the machine-readable
 * API Reference: every operation, its input members and their constraints. python3 and botocore
 * are installed by ./scripts/setup; without them these tests fail rather than pass vacuously.
 */
export interface Shape {
  type: 'structure' | 'string' | 'integer' | 'long' | 'boolean' | 'blob' | 'list' | 'map' | 'timestamp';
  members?: Record<string, { shape: string }>;
  required?: string[];
  member?: { shape: string };
  key?: { shape: string };
  value?: { shape: string };
  enum?: string[];
  min?: number;
  max?: number;
  pattern?: string;
}

export interface ServiceModel {
  operations: Record<string, { name: string; input?: { shape: string }; errors?: { shape: string }[] }>;
  shapes: Record<string, Shape>;
}

export function loadKmsModel(): ServiceModel {
  const dir = execFileSync('python3', ['-c', 'import botocore,os;print(os.path.dirname(botocore.__file__))']).toString().trim();
  return JSON.parse(gunzipSync(readFileSync(`${dir}/data/kms/2014-11-01/service-2.json.gz`)).toString()) as ServiceModel;
}
