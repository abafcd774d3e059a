/**
 * Errors of a migration driven between two QMP endpoints (src/orchestrator/). A migration
 * that starts and then fails, is cancelled or times out is no error: its MigrationReport says
 * how it ended. What is left is the one case where no byte moved.
 *
 *   QmigrateError (src/errors.ts)
 *    +-- PreflightError   MIGRATE_PREFLIGHT   a check before the migration failed (exit 3)
 */
import { QmigrateError } from '../errors.js';

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
