import type { Credential, CredentialRegistry } from '../../authz/credentials.js';
import type { Clock } from '../../clock.js';
import { Errors, KmsError } from '../../errors.js';
import type { PrincipalCheck } from '../../net/client-principals.js';
import { startListener, type Listener } from '../../net/listener.js';
import type { RawHandler } from '../aws-json/router.js';
import { SigV4Verifier } from '../aws-json/sigv4.js';
import type { Sidecar } from './config.js';
import { restHandler, sendProblem, type RestAuth, type RestOptions } from './handler.js';

/**
 * Where the REST door listens: on each sidecar socket, speaking for the socket's principal, and
 * on the TCP listener, where a request must carry SigV4 as the AWS API does.
 */

/**
 * The REST routes for the TCP listener: SigV4-signed (service kms) with the same credentials as
 * the AWS API, and under mutual TLS the client certificate must map to the signing principal.
 */
export function restWithSigV4(
  opts: RestOptions & { credentials: CredentialRegistry; clock: Clock; region: string; clientPrincipal?: PrincipalCheck | undefined },
): RawHandler {
  const verifier = new SigV4Verifier({ service: 'kms', region: opts.region, clock: opts.clock, lookup: (id) => opts.credentials.lookup(id) });
  const auth: RestAuth = {
    authenticate: (req, body) => {
      const { principal } = verifier.verify({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, body }) as Credential;
      if (opts.clientPrincipal && !opts.clientPrincipal(req.socket, principal.arn)) {
        throw Errors.accessDenied(`The client certificate of this connection is not mapped to ${principal.arn}.`);
      }
      return principal;
    },
  };
  return restHandler(opts, auth);
}

export interface SidecarListeners {
  paths: string[];
  close(): Promise<void>;
}

/** Starts one listener per sidecar socket; whatever is not a REST route gets a 404 problem. */
export async function startSidecars(opts: RestOptions & { clock: Clock }, sidecars: readonly Sidecar[]): Promise<SidecarListeners> {
  const listeners: Listener[] = [];
  const closeAll = () => Promise.all(listeners.map((l) => l.stop())).then(() => undefined);
  try {
    for (const sidecar of sidecars) {
      const rest = restHandler(opts, { authenticate: () => sidecar.principal, socket: sidecar.path });
      listeners.push(
        await startListener({
          name: 'REST sidecar',
          address: { socketPath: sidecar.path, mode: sidecar.mode, uid: sidecar.uid, gid: sidecar.gid },
          log: opts.log,
          handler: (req, res) => {
            res.setHeader('Date', opts.clock.now().toUTCString());
            rest(req, res, () => {
              req.resume();
              sendProblem(res, '-', new KmsError('UnknownOperationException', 'A sidecar socket serves the REST API under /v1/ only.', 404));
            });
          },
        }),
      );
      opts.log.info({ socket: sidecar.path, principal: sidecar.principal.arn, mode: sidecar.mode.toString(8) }, 'REST sidecar socket listening');
    }
  } catch (e) {
    await closeAll();
    throw e;
  }
  return { paths: sidecars.map((s) => s.path), close: closeAll };
}
