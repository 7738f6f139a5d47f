/**
 * One filter, as nova's BaseHostFilter: `hostPasses` says whether a host
 * can take the request. Unlike nova's (a bare boolean and a debug log), it
 * says why not, in a sentence, because the scheduler's "No valid host was
 * found" and `novalet place` tell the operator per filter which hosts it
 * removed and why.
 */
import type { HostView } from '../host-state/host-view.js';
import type { RequestSpec } from '../request-spec.js';

export interface HostFilter {
  /** nova's class name: the name `[filter_scheduler] enabled_filters` takes. */
  readonly name: string;
  /** null when the host passes; else why it does not. */
  hostPasses(host: HostView, spec: RequestSpec): string | null;
}
