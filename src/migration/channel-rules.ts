/**
 * The channel arguments of `migrate` and `migrate-incoming`, checked in QEMU 10.0's order and
 * words (migration_channel_parse_input and migrate_channels_parse, which QEMU keeps beside
 * migration/channel.c's channel code): `uri` xor `channels`, one entry per channel type, a
 * main entry. A legacy URI becomes an address through the QAPI layer's codec (qapi/uri.ts).
 */
import { genericError } from '../qapi/errors.js';
import type { MigMode, MigrationChannel } from '../qapi/types.js';
import { uriToChannel } from '../qapi/uri.js';

export interface MigrationInput {
  uri?: string;
  channels?: MigrationChannel[];
}

export interface ParsedInput {
  main: MigrationChannel;
  /** Only for `migrate`: the cpr channel, when one was given. */
  cpr?: MigrationChannel;
}

/**
 * `uri` xor `channels`, channel counts and types, then the URI grammar.
 * QEMU 10.0 crashes on a list with no `main` entry (migrate) or takes a lone `cpr` entry as
 * `main` (migrate-incoming); both get the error QEMU meant to give instead.
 * @throws {QapiError} with QEMU 10.0's text for the first rule broken.
 */
export function parseMigrationInput(
  input: MigrationInput,
  command: 'migrate' | 'migrate-incoming',
  mode: MigMode = 'normal',
): ParsedInput {
  const channels = input.channels?.length ? input.channels : undefined;
  if ((input.uri === undefined) === (channels === undefined)) {
    throw genericError("need either 'uri' or 'channels' argument");
  }
  let parsed: ParsedInput;
  if (channels) {
    if (command === 'migrate-incoming' && channels.length > 1) {
      throw genericError("Channel list must have only one entry, for type 'main'");
    }
    const seen: Partial<Record<MigrationChannel['channel-type'], MigrationChannel>> = {};
    for (const c of channels) {
      if (seen[c['channel-type']])
        throw genericError(`Channel list has more than one ${c['channel-type']} entry`);
      seen[c['channel-type']] = c;
    }
    if (command === 'migrate' && mode === 'cpr-transfer' && !seen.cpr) {
      throw genericError("missing 'cpr' migration channel");
    }
    if (!seen.main) throw genericError('Channel list has no main entry');
    parsed = command === 'migrate' && seen.cpr ? { main: seen.main, cpr: seen.cpr } : { main: seen.main };
  } else {
    parsed = { main: uriToChannel(input.uri as string) };
  }
  for (const c of [parsed.main, parsed.cpr]) {
    // QEMU 10.0 hands an empty argv to g_spawn and dies; refuse it instead.
    if (c?.addr.transport === 'exec' && c.addr.args.length === 0) {
      throw genericError("exec migration needs a program to run: 'args' is empty");
    }
  }
  return parsed;
}
