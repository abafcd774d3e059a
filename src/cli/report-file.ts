/**
 * `--report FILE.html` of `qmigrate migrate` and `qmigrate demo`: the path checked before
 * anything moves, the run's samples and events collected as they come, and the page
 * (orchestrator/report-html.ts) written once at the end, atomically: a temp file in the same
 * directory renamed over FILE, the temp file removed on every path.
 */
import { randomBytes } from 'node:crypto';
import {
  accessSync,
  constants,
  lstatSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { MAX_EVENTS, type ReportPageInput, renderReportHtml } from '../orchestrator/report-html.js';
import type { MigrationEventSample, MigrationReport, ProgressSample } from '../orchestrator/types.js';
import { CliFailure, CliUsageError } from './errors.js';

/** ms between two query-migrate of the source when a report is asked for (the default is 500). */
export const REPORT_POLL_MS = 250;

/** Samples a recorder holds at most (a day at 250 ms is 345,600). */
const MAX_KEPT = 20_000;

/**
 * The absolute path of `--report PATH`, once it is known the page can be written there: its
 * directory exists and is writable, and PATH is not a directory, socket, fifo or device. A
 * symbolic link gives its target's path (the page replaces the target, the link stays).
 * @throws {CliUsageError} naming the fix, before the migration starts.
 */
export function checkReportPath(path: string): string {
  if (path === '') throw new CliUsageError('--report needs a file name, e.g. --report migration.html');
  const full = followLink(path, resolve(path));
  const dir = dirname(full);
  const kind = (p: string) => {
    try {
      const st = statSync(p);
      return st.isDirectory() ? 'directory' : st.isFile() ? 'file' : 'other';
    } catch {
      return undefined;
    }
  };
  const own = kind(full);
  if (own === 'directory')
    throw new CliUsageError(
      `--report ${path} is a directory: give a file name, e.g. --report ${join(path, 'migration.html')}`,
    );
  // The page is renamed over the path at the end: a socket (a QMP monitor), a fifo or a
  // device (/dev/null) would be replaced by it.
  if (own === 'other')
    throw new CliUsageError(
      `--report ${path} is not a regular file (a socket, fifo or device): give a file name`,
    );
  const dirKind = kind(dir);
  if (dirKind === undefined)
    throw new CliUsageError(`--report ${path}: the directory ${dir} does not exist (create it first)`);
  if (dirKind !== 'directory') throw new CliUsageError(`--report ${path}: ${dir} is not a directory`);
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    throw new CliUsageError(`--report ${path}: the directory ${dir} is not writable`);
  }
  return full;
}

/**
 * The file a symbolic link at `full` leads to, so that the rename replaces the target and the
 * link stays; `full` itself when it is not a link.
 * @throws {CliUsageError} for a link that leads nowhere.
 */
function followLink(path: string, full: string): string {
  try {
    if (!lstatSync(full).isSymbolicLink()) return full;
  } catch {
    return full;
  }
  try {
    return realpathSync(full);
  } catch {
    const target = resolve(dirname(full), readlinkSync(full));
    throw new CliUsageError(`--report ${path} is a symbolic link to ${target}, which does not exist`);
  }
}

/**
 * Writes `data` to `path` atomically: a temp file beside it (same directory, so the rename
 * does not cross file systems), renamed over `path`; the temp file is removed if anything
 * fails. A reader never sees half a page.
 * @throws {CliFailure} when the file cannot be written, saying where and why.
 */
export function writeFileAtomic(path: string, data: string): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
  try {
    writeFileSync(tmp, data, { flag: 'wx' });
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new CliFailure(`cannot write the report to ${path}: ${(e as Error).message}`, { cause: e });
  }
}

/** A command line as a shell would take it back: arguments with spaces or quotes quoted. */
export function commandLine(args: readonly string[]): string {
  return args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/**
 * One run's report page in the making: feed it what the orchestrator yields, then `write`
 * it once the run has ended, however it ended.
 */
export class ReportRecorder {
  readonly path: string;
  readonly #page: Omit<ReportPageInput, 'samples' | 'events'>;
  #samples: ProgressSample[] = [];
  /** The events: the first and the last MAX_EVENTS / 2 whole (the page lists those), between
   * them every MIGRATION and the MIGRATION_PASS events thinned past MAX_KEPT. */
  readonly #head: MigrationEventSample[] = [];
  #middle: MigrationEventSample[] = [];
  readonly #tail: MigrationEventSample[] = [];
  #middlePasses = 0;
  #eventsDropped = 0;
  #written = false;

  /**
   * @param path where the page goes (checked by checkReportPath).
   * @param page the command line and the facts shown under the title.
   */
  constructor(path: string, page: Pick<ReportPageInput, 'command' | 'facts'>) {
    this.path = path;
    this.#page = { ...page, startedAt: new Date() };
  }

  /**
   * Takes a progress sample or an event, as the orchestrator yields them. Past MAX_KEPT
   * samples every other one is dropped (the first and the newest kept), so a migration of
   * days holds bounded memory; the page draws fewer points than that anyway.
   */
  add(item: ProgressSample | MigrationEventSample): void {
    if (item.type === 'event') {
      this.#addEvent(item);
      return;
    }
    this.#samples.push(item);
    if (this.#samples.length > MAX_KEPT) {
      const s = this.#samples;
      this.#samples = s.filter((_, i) => i % 2 === 0 || i === s.length - 1);
    }
  }

  /** How many samples and events it holds: bounded, however long the run. */
  get held(): { samples: number; events: number } {
    return {
      samples: this.#samples.length,
      events: this.#head.length + this.#middle.length + this.#tail.length,
    };
  }

  /**
   * Keeps an event. A migration that never converges sends a MIGRATION_PASS every pass, which
   * can be several a second for days: past MAX_KEPT of those between the first and the last
   * events the page lists, every other one is dropped (the pass chart and its markers are
   * drawn from fewer anyway), and counted.
   */
  #addEvent(event: MigrationEventSample): void {
    const half = MAX_EVENTS / 2;
    if (this.#head.length < half) {
      this.#head.push(event);
      return;
    }
    this.#tail.push(event);
    if (this.#tail.length <= half) return;
    const old = this.#tail.shift()!;
    this.#middle.push(old);
    if (old.event !== 'MIGRATION_PASS' || ++this.#middlePasses <= MAX_KEPT) return;
    let seen = 0;
    this.#middle = this.#middle.filter((e) => e.event !== 'MIGRATION_PASS' || seen++ % 2 === 0);
    const kept = Math.ceil(seen / 2);
    this.#eventsDropped += seen - kept;
    this.#middlePasses = kept;
  }

  /**
   * Writes the page once: with the final report, or with the error that ended the run
   * without one. Later calls do nothing.
   * @returns the path written, or undefined when it was written already.
   * @throws {CliFailure} when the file cannot be written.
   */
  write(end: { report?: MigrationReport; error?: string }): string | undefined {
    if (this.#written) return undefined;
    this.#written = true;
    const html = renderReportHtml({
      ...this.#page,
      samples: this.#samples,
      events: [...this.#head, ...this.#middle, ...this.#tail],
      eventsDropped: this.#eventsDropped,
      ...(end.report ? { report: end.report } : {}),
      ...(end.error !== undefined ? { error: end.error } : {}),
    });
    writeFileAtomic(this.path, html);
    return this.path;
  }
}
