/**
 * `qmigrate check COMMAND [ARGS_JSON]`: checks QMP arguments offline exactly as QEMU 10.0's
 * input visitor and migration rules would, and prints the typed arguments or QEMU's error.
 */
import { checkCommand } from '../../qapi/check.js';
import { QapiError } from '../../qapi/errors.js';
import { JsonSyntaxError, parseJson, stringifyJson } from '../../qapi/json.js';
import { defaultParameters, parseMigrationInput } from '../../qapi/migration-rules.js';
import type { MigrationChannel } from '../../qapi/types.js';

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
    if (command === 'migrate' || command === 'migrate-incoming') {
      const input = typed as { uri?: string; channels?: MigrationChannel[] };
      parseMigrationInput(input, command, defaultParameters().mode);
    }
    out(stringifyJson({ execute: command, arguments: typed }));
    return 0;
  } catch (e) {
    if (!(e instanceof QapiError)) throw e;
    out(stringifyJson({ error: e.toQmp() }));
    return 1;
  }
}
