import type { Audit } from '../audit/types.js';
import type { KmsDeps, Regions } from './context.js';

/**
 * The regions one deployment serves (issue 13). Each region is a complete KmsDeps of its own:
 * its own metadata store (so keys, aliases, grants, ARNs and listings are per region, as in
 * AWS), its own authorization engine over that store, and its token, which is the main token
 * unless the region was given its own. Credentials and identity policies are global (IAM is),
 * so every region's engine shares the default region's credential registry.
 */
export class RegionDirectory implements Regions {
  private readonly byName = new Map<string, KmsDeps>();

  constructor(readonly defaultRegion: string) {}

  add(deps: KmsDeps): void {
    this.byName.set(deps.region, deps);
    deps.regions = this;
  }

  get(region: string): KmsDeps | undefined {
    return this.byName.get(region);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  all(): KmsDeps[] {
    return [...this.byName.values()];
  }

  /**
   * The other regions whose default-token keys live in the same token as `deps`'s. Such
   * regions share token objects: a Multi-Region replica there names the primary's objects, so
   * an object is destroyed only when no region sharing the token still names it.
   */
  sharingToken(deps: KmsDeps): KmsDeps[] {
    return this.all().filter((d) => d !== deps && d.token === deps.token);
  }
}

/** CKA_IDs (hex) named by any row of the regions that share `deps`'s token, `deps` included. */
export function objectIdsSharingToken(deps: KmsDeps): Set<string> {
  const ids = deps.store.allObjectIds();
  for (const other of deps.regions?.sharingToken(deps) ?? []) for (const id of other.store.allObjectIds()) ids.add(id);
  return ids;
}

/** The audit trail as seen from one region: its events carry that region (CloudTrail's awsRegion). */
export function auditInRegion(audit: Audit, region: string): Audit {
  return {
    record: (e) => audit.record({ ...e, awsRegion: e.awsRegion ?? region }),
    ready: () => audit.ready(),
    get failClosed() {
      return audit.failClosed;
    },
  };
}
