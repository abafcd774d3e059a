/**
 * `qmigrate check COMMAND [ARGS_JSON]`: checks QMP arguments offline exactly as a freshly
 * started qmigrate VM would (QEMU 10.0's input visitor, its migration rules, then what
 * qmigrate does not implement), and prints the typed arguments or the VM's error. The
 * migration commands run through the VM's own Migration object, so there is one set of rules.
 */

import type { MigrationInput } from '../../migration/channel-rules.js';
import { Migration, type MigrationEngine } from '../../migration/migration.js';
import { checkCommand } from '../../qapi/check.js';
import { genericError, QapiError } from '../../qapi/errors.js';
import { JsonSyntaxError, parseJson, stringifyJson } from '../../qapi/json.js';
import type { Commands } from '../../qapi/types.js';

/** Never reached: check runs only the checks, which come before the engine. */
const NO_ENGINE: MigrationEngine = {
  startOutgoing: () => {
    throw genericError('internal: qmigrate check reached the migration engine');
  },
  startIncoming: () => {
    throw genericError('internal: qmigrate check reached the migration engine');
  },
};

/**
 * A fresh VM's migration state: running, or waiting with `-incoming defer` for
 * migrate-incoming (the one command a running VM always refuses).
 */
function freshMigration(command: string): Migration {
  const runstate = command === 'migrate-incoming' ? 'inmigrate' : 'running';
  return new Migration({ runstate: () => runstate, emit: () => {} }, NO_ENGINE);
}

/**
 * Runs the VM's checks for a migration command (already through the visitor); other commands
 * have only the visitor's. `qmigrate migrate` checks its --parameter and --capability with it.
 * @throws {QapiError} with QEMU 10.0's text for what a fresh VM would refuse.
 */
export function checkOnVm(command: string, args: Record<string, unknown>): void {
  const m = freshMigration(command);
  switch (command) {
    case 'migrate':
      m.prepare(args as MigrationInput);
      break;
    case 'migrate-incoming':
      m.checkIncoming(args as MigrationInput);
      break;
    case 'migrate-set-capabilities':
      m.setCapabilities((args as unknown as Commands['migrate-set-capabilities']['args']).capabilities);
      break;
    case 'migrate-set-parameters':
      m.options.setParameters(args as Commands['migrate-set-parameters']['args']);
      break;
    case 'migrate-continue':
      m.continue((args as unknown as Commands['migrate-continue']['args']).state);
      break;
    case 'migrate_cancel':
      m.cancel();
      break;
    case 'migrate-pause':
      m.pause();
      break;
    case 'migrate-recover':
      m.prepareRecover(args as unknown as Commands['migrate-recover']['args']);
      break;
    case 'migrate-start-postcopy':
      m.startPostcopy();
      break;
  }
}

export function runCheck(
  command: string,
  json: string | undefined,
  out: (s: string) => void,
  err: (s: string) => void,
): number {
  let args: unknown;
  try {
    args = json === undefined ? undefined : parseJson(json);
  } catch (e) {
    if (e instanceof JsonSyntaxError) {
      err(`qmigrate check: ARGS is not JSON: ${e.message}`);
      return 2;
    }
    throw e;
  }
  try {
    const typed = checkCommand(command, args);
    checkOnVm(command, typed);
    out(stringifyJson({ execute: command, arguments: typed }));
    return 0;
  } catch (e) {
    if (!(e instanceof QapiError)) throw e;
    out(stringifyJson({ error: e.toQmp() }));
    return 1;
  }
}
