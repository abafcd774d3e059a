/**
 * Fuzz targets: the migration URI parser (src/qapi/uri.ts, QEMU's migrate_uri_parse). Valid URIs
 * of every scheme are built, then bytes inserted, deleted or replaced: the parser answers with a
 * MigrationAddress or a QapiError, and an address it gives survives address -> URI -> address.
 * The same addresses as `channels` JSON text, mutated, through the JSON parser, the input
 * visitor (qapi/check.ts) and the channel rules (migration/channel-rules.ts).
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { QmigrateError } from '../../../src/errors.js';
import { parseMigrationInput } from '../../../src/migration/channel-rules.js';
import { checkCommand } from '../../../src/qapi/check.js';
import { QapiError } from '../../../src/qapi/errors.js';
import { stringifyJson } from '../../../src/qapi/json.js';
import { qobjectFromJson } from '../../../src/qapi/json-stream.js';
import type { MigrationChannel } from '../../../src/qapi/types.js';
import { addressToUri, parseMigrationUri, uriToChannel } from '../../../src/qapi/uri.js';
import type { FuzzTarget } from './target.js';

const valid = fc.oneof(
  fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 65535 })).map(([h, p]) => `tcp:${h}:${p}`),
  fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 65535 })).map(([h, p]) => `tcp:[${h}]:${p},ipv6`),
  fc.string({ minLength: 1, maxLength: 40 }).map((p) => `unix:${p}`),
  fc.string({ maxLength: 40 }).map((c) => `exec:${c}`),
  fc
    .tuple(fc.string({ minLength: 1 }), fc.bigInt({ min: 0n, max: 1n << 64n }))
    .map(([f, o]) => `file:${f},offset=${o}`),
  fc.tuple(fc.nat(), fc.nat()).map(([c, p]) => `vsock:${c}:${p}`),
  fc.string({ minLength: 1, maxLength: 20 }).map((n) => `fd:${n}`),
  fc.tuple(fc.domain(), fc.nat(65535)).map(([h, p]) => `rdma:${h}:${p}`),
);

/** One edit of a string: insert, delete or replace a piece at a position. */
const mutated = fc
  .tuple(valid, fc.array(fc.tuple(fc.nat(), fc.nat(4), fc.string({ maxLength: 4 })), { maxLength: 4 }))
  .map(([uri, edits]) =>
    edits.reduce((s, [at, del, ins]) => {
      const i = s.length === 0 ? 0 : at % (s.length + 1);
      return s.slice(0, i) + ins + s.slice(i + del);
    }, uri),
  );

/** Channel lists from valid URIs: main and cpr entries, sometimes doubled or missing. */
const channels = fc
  .array(fc.tuple(valid, fc.constantFrom<MigrationChannel['channel-type']>('main', 'main', 'cpr')), {
    minLength: 0,
    maxLength: 3,
  })
  .map((list) =>
    list.flatMap(([uri, type]) => {
      try {
        return [{ ...uriToChannel(uri), 'channel-type': type }];
      } catch {
        return [];
      }
    }),
  );

/** A migrate / migrate-incoming arguments object and its JSON text, edited. */
const channelsText = fc
  .tuple(
    channels,
    fc.constantFrom('migrate', 'migrate-incoming') as fc.Arbitrary<'migrate' | 'migrate-incoming'>,
    fc.array(fc.tuple(fc.nat(), fc.nat(3), fc.string({ maxLength: 3 })), { maxLength: 3 }),
  )
  .map(([list, command, edits]) => {
    const text = stringifyJson({ channels: list });
    const mutated = edits.reduce((s, [at, del, ins]) => {
      const i = at % (s.length + 1);
      return s.slice(0, i) + ins + s.slice(i + del);
    }, text);
    return { list, command, text, mutated };
  });

export const targets: FuzzTarget[] = [
  {
    name: 'qapi/channels',
    ciRuns: 2000,
    property: () =>
      fc.property(channelsText, ({ list, command, text, mutated }) => {
        // Unedited, the visitor gives back the channels the text was written from.
        const args = checkCommand(command, qobjectFromJson(text) as Record<string, unknown>) as {
          channels?: MigrationChannel[];
        };
        assert.deepEqual(args.channels, list);
        for (const t of [text, mutated]) {
          try {
            const typed = checkCommand(command, qobjectFromJson(t) as Record<string, unknown>);
            parseMigrationInput(typed as { channels?: MigrationChannel[] }, command);
          } catch (e) {
            assert.ok(e instanceof QmigrateError, `${JSON.stringify(t)}: ${(e as Error)?.stack ?? e}`);
          }
        }
      }),
  },
  {
    name: 'qapi/uri',
    ciRuns: 5000,
    property: () =>
      fc.property(mutated, (uri) => {
        let addr: ReturnType<typeof parseMigrationUri>;
        try {
          addr = parseMigrationUri(uri);
        } catch (e) {
          assert.ok(e instanceof QapiError, `${JSON.stringify(uri)}: not a QapiError: ${e}`);
          return;
        }
        const again = addressToUri(addr);
        if (again !== undefined) assert.deepEqual(parseMigrationUri(again), addr);
      }),
  },
];
