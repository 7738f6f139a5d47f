/**
 * The host's capability reports (docs/messages.md): a full report at
 * start, whenever anything but the cheap counters changed, and at least
 * every ten heartbeats; a heartbeat every `report_interval` otherwise.
 * `seq` increases per process, so a scheduler can drop what arrives late.
 *
 * Reports are coalesced: at most one is being sent at a time, and however
 * many changes arrive meanwhile, one report follows with the state as it is
 * then (the latest state wins), so a burst of changes costs two reports, not
 * one per change. Reports are state, not events: one that could not be sent
 * is not kept; the next says it all (a full one, since nothing counts as sent).
 */
import type { Logger } from '../config/logger.js';
import type { CapabilityReport, FullReport, HeartbeatReport } from '../messaging/contracts/capability-report.js';

/** At least one full report in this many heartbeats. */
export const HEARTBEATS_PER_FULL = 10;

export type FullReportContent = Omit<FullReport, 'seq' | 'report'>;

/** What the next send must be: a full report whatever changed, one only if something changed, or the periodic one. */
type Due = 'full' | 'changed' | 'tick';
const RANK: Record<Due, number> = { changed: 1, tick: 2, full: 3 };

export class CapabilityReporter {
  #seq = 0;
  #lastFull: string | null = null;
  #heartbeatsSinceFull = 0;
  #timer: NodeJS.Timeout | null = null;
  #due: Due | null = null;
  #sending: Promise<void> | null = null;
  #sent = 0;

  constructor(
    private readonly gather: () => Promise<FullReportContent>,
    private readonly publish: (report: CapabilityReport) => Promise<void>,
    private readonly log: Logger,
  ) {}

  /** Reports sent so far. */
  get sent(): number {
    return this.#sent;
  }

  /** Sends a full report soon, whatever was sent before (start-up, a reconnection); resolves once it went (or failed). */
  full(): Promise<void> {
    return this.#ask('full');
  }

  /** Something may have changed: a full report goes out if it did (coalesced with any other change meanwhile). */
  changed(): Promise<void> {
    return this.#ask('changed');
  }

  /** The periodic report: a heartbeat, or a full one when due or when something changed. */
  tick(): Promise<void> {
    return this.#ask('tick');
  }

  start(intervalSeconds: number): void {
    this.stop();
    this.#timer = setInterval(() => void this.tick(), intervalSeconds * 1000);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** Waits for the reports under way. */
  async settled(): Promise<void> {
    while (this.#sending) await this.#sending;
  }

  #ask(due: Due): Promise<void> {
    if (!this.#due || RANK[due] > RANK[this.#due]) this.#due = due;
    this.#sending ??= this.#drain().finally(() => {
      this.#sending = null;
    });
    return this.#sending;
  }

  async #drain(): Promise<void> {
    while (this.#due) {
      const due = this.#due;
      this.#due = null;
      await this.#send(due);
    }
  }

  async #send(due: Due): Promise<void> {
    let content: FullReportContent;
    try {
      content = await this.gather();
    } catch (err) {
      this.log.error({ err }, 'could not gather the capability report');
      return;
    }
    const fingerprint = JSON.stringify({ ...content, vcpus_used: 0, memory_mb_used: 0, free_ram_mb: 0, running_vms: 0, local_gb_used: 0, free_disk_gb: 0, stats: {} });
    const changed = fingerprint !== this.#lastFull;
    if (due === 'changed' && !changed) return;
    const fullDue = due === 'full' || changed || this.#heartbeatsSinceFull + 1 >= HEARTBEATS_PER_FULL;
    let report: CapabilityReport;
    if (fullDue) {
      report = { report: 'full', seq: ++this.#seq, ...content } satisfies FullReport;
    } else {
      report = {
        report: 'heartbeat',
        seq: ++this.#seq,
        host: content.host,
        service: content.service,
        vcpus_used: content.vcpus_used,
        memory_mb_used: content.memory_mb_used,
        running_vms: content.running_vms,
      } satisfies HeartbeatReport;
    }
    try {
      await this.publish(report);
    } catch (err) {
      // Not sent: the next tick tries again (a full one, since nothing counts as sent).
      this.log.warn({ err, report: report.report, seq: report.seq }, 'could not send the capability report');
      return;
    }
    this.#sent += 1;
    if (fullDue) {
      this.#lastFull = fingerprint;
      this.#heartbeatsSinceFull = 0;
    } else {
      this.#heartbeatsSinceFull += 1;
    }
  }
}
