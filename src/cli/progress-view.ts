/**
 * Shows a running migration as `qmigrate migrate` and `qmigrate demo` print it: on a terminal
 * one line redrawn in place; in a log a plain line a second and the migration's events; with
 * --json one JSON object per line and nothing else; quiet, nothing until the end. The text
 * itself comes from orchestrator/progress.ts.
 */
import { EtaEstimator, formatPlainLine, formatProgressLine, formatReport } from '../orchestrator/progress.js';
import type { MigrationEventSample, MigrationReport, ProgressSample } from '../orchestrator/types.js';

/** How progress is shown: see the module comment. */
export type ProgressMode = 'tty' | 'plain' | 'json' | 'quiet';

/** Where a view writes: `out` takes whole text (newlines included), `err` one line. */
export interface ViewIo {
  out(text: string): void;
  err(line: string): void;
  /** The terminal's width, read at each redraw (it may change). */
  columns?(): number | undefined;
}

/**
 * One JSON line: a standard JSON.stringify, key order kept (QMP's own writer orders keys as
 * QEMU's QDict does, which reads badly in a log); 64-bit counters as numbers.
 */
export function jsonLine(value: unknown): string {
  return `${JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? Number(v) : v))}\n`;
}

/** Erases the terminal's current line and returns to its start (ECMA-48 EL 2 and CR). */
const CLEAR_LINE = '\r\x1b[2K';

/** The view of one migration; feed it samples and events, then the report or an error. */
export class ProgressView {
  readonly #io: ViewIo;
  readonly #mode: ProgressMode;
  readonly #eta = new EtaEstimator();
  /** The second of the last plain line; -1 before the first. */
  #lastSecond = -1;
  /** The highest percent shown so far. */
  #percent?: number;
  /** Whether a live line is on the screen (it is cleared before anything else is written). */
  #live = false;

  constructor(io: ViewIo, mode: ProgressMode) {
    this.#io = io;
    this.#mode = mode;
  }

  /**
   * Shows a progress sample; the ETA shown is smoothed (EtaEstimator). The percent shown never
   * goes back and reads 100 only once completed: QEMU's remaining grows again at each new
   * pass (the pages the guest dirtied meanwhile), which the pass field shows instead.
   * JSON lines carry the sample as the orchestrator made it.
   */
  sample(s: ProgressSample): void {
    const shown = { ...s, etaS: this.#eta.update(s), percent: this.#shownPercent(s) };
    if (this.#mode === 'json') this.#io.out(jsonLine(s));
    else if (this.#mode === 'tty') {
      // A pty without a size reports 0 columns: take 80 then. One column less than the
      // width, so the cursor never wraps to a new line.
      const width = Math.max(20, (this.#io.columns?.() || 80) - 1);
      this.#io.out(`${CLEAR_LINE}${formatProgressLine(shown, { width })}`);
      this.#live = true;
    } else if (this.#mode === 'plain') {
      const second = Math.floor(s.elapsedMs / 1000);
      if (second === this.#lastSecond) return;
      this.#lastSecond = second;
      this.#io.out(`${formatPlainLine(shown)}\n`);
    }
  }

  /** Shows an event: a JSON line, or a plain line in a log (a terminal's live line has the status). */
  event(e: MigrationEventSample): void {
    if (this.#mode === 'json') this.#io.out(jsonLine(e));
    else if (this.#mode === 'plain') {
      const status = typeof e.data.status === 'string' ? ` ${e.data.status}` : '';
      const pass = typeof e.data.pass === 'number' ? ` ${e.data.pass}` : '';
      this.#io.out(`[${(e.elapsedMs / 1000).toFixed(1)} s] ${e.side}: ${e.event}${status}${pass}\n`);
    }
  }

  /** A line of text outside the progress (the plan, a note), kept off stdout in JSON mode. */
  note(line: string): void {
    this.#endLive();
    if (this.#mode === 'json') this.#io.err(line);
    else if (this.#mode !== 'quiet') this.#io.out(`${line}\n`);
  }

  /**
   * Shows the final report: its lines of text (quiet: only when it did not complete, and
   * on stderr), or one JSON line.
   */
  report(r: MigrationReport): void {
    this.#endLive();
    if (this.#mode === 'json') this.#io.out(jsonLine(r));
    else if (this.#mode !== 'quiet') this.#io.out(`${formatReport(r).join('\n')}\n`);
    else if (r.status !== 'completed') for (const line of formatReport(r)) this.#io.err(line);
  }

  /**
   * Shows an error that ended the command: each line on stderr, and with --json also a
   * `{"type":"error",...}` line on stdout, so a reader of stdout alone learns the end.
   */
  error(lines: string[], code: string, exitCode: number): void {
    this.#endLive();
    for (const line of lines) this.#io.err(`qmigrate: ${line}`);
    if (this.#mode === 'json') {
      this.#io.out(jsonLine({ type: 'error', code, message: lines.join('\n'), exitCode }));
    }
  }

  #shownPercent(s: ProgressSample): number | undefined {
    if (s.status === 'completed') return 100;
    if (s.percent === undefined) return this.#percent;
    this.#percent = Math.min(99, Math.max(this.#percent ?? 0, s.percent));
    return this.#percent;
  }

  /** Ends the live line, if one is up, so that what the caller writes next has a line of its own. */
  end(): void {
    this.#endLive();
  }

  /** Ends the live line so that what follows starts on a line of its own. */
  #endLive(): void {
    if (!this.#live) return;
    this.#io.out('\n');
    this.#live = false;
  }
}
