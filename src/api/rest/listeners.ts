import { createServer, type Server } from 'node:http';
import type { Credential, CredentialRegistry } from '../../authz/credentials.js';
import type { Clock } from '../../clock.js';
import { KmsError } from '../../errors.js';
import type { RawHandler } from '../aws-json/router.js';
import { SigV4Verifier } from '../aws-json/sigv4.js';
import { close, drainable, listenOnSocket } from '../listen.js';
import type { Sidecar } from './config.js';
import { restHandler, sendProblem, type RestAuth, type RestOptions } from './handler.js';

/**
 * Where the REST door listens: on each sidecar socket, speaking for the socket's principal, and
 * on the TCP listener(s), where a request must carry SigV4 as the AWS API does.
 */

/** The REST routes for a TCP listener: SigV4-signed (service kms) with the same credentials as the AWS API. */
export function restWithSigV4(
  opts: RestOptions & { credentials: CredentialRegistry; clock: Clock; region: string },
  secureTransport = false,
): RawHandler {
  const verifier = new SigV4Verifier({ service: 'kms', region: opts.region, clock: opts.clock, lookup: (id) => opts.credentials.lookup(id) });
  const auth: RestAuth = {
    authenticate: (req, body) =>
      (verifier.verify({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, body }) as Credential).principal,
    secureTransport,
  };
  return restHandler(opts, auth);
}

export interface SidecarListeners {
  paths: string[];
  close(): Promise<void>;
}

/** Starts one listener per sidecar socket; whatever is not a REST route gets a 404 problem. */
export async function startSidecars(
  opts: RestOptions & { clock: Clock },
  sidecars: readonly Sidecar[],
  stopping: () => boolean,
): Promise<SidecarListeners> {
  const servers: Server[] = [];
  const closeAll = () => Promise.all(servers.map(close)).then(() => undefined);
  try {
    for (const sidecar of sidecars) {
      const rest = restHandler(opts, { authenticate: () => sidecar.principal, socket: sidecar.path });
      const server = drainable(
        createServer((req, res) => {
          res.setHeader('Date', opts.clock.now().toUTCString());
          rest(req, res, () => {
            req.resume();
            sendProblem(res, '-', new KmsError('UnknownOperationException', 'A sidecar socket serves the REST API under /v1/ only.', 404));
          });
        }),
        stopping,
      );
      await listenOnSocket(server, sidecar.path, sidecar);
      servers.push(server);
      opts.log.info({ socket: sidecar.path, principal: sidecar.principal.arn, mode: sidecar.mode.toString(8) }, 'REST sidecar socket listening');
    }
  } catch (e) {
    await closeAll();
    throw e;
  }
  return { paths: sidecars.map((s) => s.path), close: closeAll };
}
