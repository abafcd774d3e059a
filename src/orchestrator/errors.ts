/**
 * Errors of a migration driven between two QMP endpoints (src/orchestrator/). A migration
 * that starts and then fails, is cancelled or times out is no error: its MigrationReport says
 * how it ended. What is left is the one case where no byte moved.
 *
 *   QmigrateError (src/errors.ts)
 *    +-- PreflightError   MIGRATE_PREFLIGHT   a check before the migration failed (exit 3)
 *    +-- QmpClientError (src/qmp/errors.ts)
 *         +-- MonitorLostError  MIGRATE_MONITOR_LOST  a side's monitor closed or stopped
 *                                                     answering during the migration
 */
import { QmigrateError } from '../errors.js';
import { QmpClientError } from '../qmp/errors.js';

/**
 * The migration cannot start: a monitor is unreachable, a side is in the wrong state, or the
 * two sides differ where they must agree. `problems` holds one line per mismatch, the most
 * important first; the message is those lines joined by newlines.
 */
export class PreflightError extends QmigrateError {
  readonly problems: readonly string[];

  /** @param problems one line each, or a single line. */
  constructor(problems: readonly string[] | string, options?: { cause?: unknown }) {
    const lines = typeof problems === 'string' ? [problems] : problems;
    super('MIGRATE_PREFLIGHT', lines.join('\n'), options);
    this.problems = lines;
  }
}

/**
 * A side's monitor closed (its QEMU exited?) or stopped answering while the migration was
 * under way, so how it ended is not known. The message names the side; `cause` is the QMP
 * client's own error.
 */
export class MonitorLostError extends QmpClientError {
  readonly side: 'source' | 'destination';

  constructor(side: 'source' | 'destination', cause: QmpClientError) {
    const how = /closed/.test(cause.message) ? 'closed (did its QEMU exit?)' : 'stopped answering';
    super('MIGRATE_MONITOR_LOST', `the ${side}'s monitor ${how} during the migration: ${cause.message}`, {
      cause,
    });
    this.side = side;
  }
}
