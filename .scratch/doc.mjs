import { openApiDocument } from '/work/wt/issue-14/dist/api/rest/openapi.js';
const d = openApiDocument();
console.log(JSON.stringify(d.components.schemas.EncryptResponse), JSON.stringify(d.components.schemas.DecryptRequest).slice(0,600));
console.log(JSON.stringify(d.paths['/v1/keys']));
