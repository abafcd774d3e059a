/**
 * Errors of the command line, each tied to the exit code `qmigrate --help` lists.
 *
 *   QmigrateError (src/errors.ts)
 *    +-- CliUsageError         exit 2: a usage mistake found before anything started
 *    +-- PeerUnreachableError  exit 3: a peer (QEMU, or a VM the command started) cannot be reached
 *    +-- CliFailure            exit 1: the operation failed; the message says how
 *    +-- Interrupted           exit 128+N (or 141 for a closed output): stopped from outside
 */
import { QmigrateError } from '../errors.js';

/** A usage mistake found by a subcommand: exit 2, naming the fix. */
export class CliUsageError extends QmigrateError {
  constructor(message: string) {
    super('CLI_USAGE', message);
  }
}

/** A peer cannot be reached or did not answer on QMP: exit 3. */
export class PeerUnreachableError extends QmigrateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CLI_PEER_UNREACHABLE', message, options);
  }
}

/** The operation failed for a reason the message states: exit 1. */
export class CliFailure extends QmigrateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CLI_FAILED', message, options);
  }
}

/**
 * The command was stopped from outside: a signal (exit 128 + its number, as a shell reports
 * a process that signal killed) or its standard output closing (141, as for SIGPIPE).
 */
export class Interrupted extends QmigrateError {
  readonly exitCode: number;
  readonly reason: NodeJS.Signals | 'EPIPE';

  constructor(reason: NodeJS.Signals | 'EPIPE', exitCode: number) {
    super('CLI_INTERRUPTED', reason === 'EPIPE' ? 'the output was closed' : `interrupted by ${reason}`);
    this.reason = reason;
    this.exitCode = exitCode;
  }
}
