/**
 * A fault as it travels: in `create.error` events, in `reschedule`
 * requests (with the host it happened on), in call replies. `code` is one
 * of the error catalogue's (config/error-codes.ts) or a KVM reason code;
 * `message` is the whole sentence, `remedy` what to do.
 */
export interface Fault {
  code: string;
  message: string;
  remedy: string;
}

/** A fault of a placed build, as `request.faults` carries it back to the schedulers. */
export interface HostFault extends Fault {
  host: string;
}
