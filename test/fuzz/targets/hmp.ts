/**
 * Fuzz targets: the human monitor (src/hmp/parse.ts, hmp.ts, readline.ts and serve.ts; QEMU's
 * monitor/hmp.c and util/readline.c). Command lines built from the real command table, then
 * mutated, run through `human-monitor-command`'s path and typed into an interactive monitor
 * with control keys and escape sequences mixed in: output or QEMU's messages, never a throw,
 * and the monitor still answers `info status`.
 */
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import fc from 'fast-check';
import { HMP_COMMANDS, INFO_COMMANDS } from '../../../src/hmp/commands.js';
import { PARAMETER_NAMES } from '../../../src/hmp/params.js';
import { serveHmp } from '../../../src/hmp/serve.js';
import { QapiError } from '../../../src/qapi/errors.js';
import { schema } from '../../../src/qapi/schema.js';
import { QEMU_VERSION_TEXT, Vm } from '../../../src/vm/vm.js';
import type { FuzzTarget } from './target.js';

const names = HMP_COMMANDS.flatMap((c) => c.name.split('|'));
const word = fc.oneof(
  fc.constantFrom(
    ...names,
    ...INFO_COMMANDS.map((c) => c.name),
    ...schema.enumValues('MigrationCapability'),
    ...PARAMETER_NAMES,
    'on',
    'off',
    '-d',
    '-r',
    '1',
    '0x10',
    '-1',
    '18446744073709551616',
    '1.5',
    '10M',
    'tcp:127.0.0.1:0',
    'unix:/nonexistent/sock',
    'exec:true',
    'file:/nonexistent,offset=0x1000',
    'defer',
    'tls-creds-psk,id=p,dir=/nonexistent',
    'authz-simple,id=a,identity=x',
    'qom-type=authz-list,id=l,policy=deny',
    '{"qom-type":"authz-simple","id":"j","identity":"y"}',
    '"quoted \\" word"',
    "'single'",
  ),
  fc.string({ maxLength: 8 }),
);

/** A command from the table with plausible arguments. */
const line = fc
  .tuple(fc.constantFrom(...names), fc.array(word, { maxLength: 4 }), fc.constantFrom(' ', '  ', '\t'))
  .map(([cmd, args, sep]) => [cmd, ...args].join(sep));

const mutatedLine = fc
  .tuple(line, fc.array(fc.tuple(fc.nat(), fc.nat(3), fc.string({ maxLength: 3 })), { maxLength: 4 }))
  .map(([l, edits]) =>
    edits.reduce((s, [at, del, ins]) => {
      const i = at % (s.length + 1);
      return s.slice(0, i) + ins + s.slice(i + del);
    }, l),
  );

/** Keys an interactive client may type: control characters and escape sequences. */
const key = fc.oneof(
  fc.constantFrom(
    '\t',
    '\x01',
    '\x04',
    '\x05',
    '\x0c',
    '\x0e',
    '\x10',
    '\x15',
    '\x17',
    '\x7f',
    '\b',
    '\x1b[A',
    '\x1b[B',
    '\x1b[C',
    '\x1b[D',
    '\x1b[3~',
    '\x1b[1~',
    '\x1bOH',
    '\x1b',
    '\x9b',
    '\xff',
  ),
  fc.string({ maxLength: 3 }),
);
const typed = fc
  .array(
    fc.oneof(
      mutatedLine.map((l) => `${l}\r`),
      key,
    ),
    { maxLength: 12 },
  )
  .map((parts) => parts.join(''));

/** An in-process VM whose commands that reach out of the process only check their arguments. */
function lightVm(): { vm: Vm; quit: () => boolean } {
  const vm = new Vm({ ram: [{ idstr: 'pc.ram', host: Buffer.alloc(64 << 10) }] });
  for (const c of ['migrate-incoming', 'pmemsave'] as const) vm.dispatcher.register(c, () => ({}));
  // Refused rather than faked: a `migrate` that succeeds leaves no status, and an interactive
  // monitor then polls for one for ever, as QEMU's hmp_migrate_status_cb would.
  vm.dispatcher.register('migrate', () => {
    throw new QapiError('fuzz: migration not started');
  });
  let quit = false;
  vm.dispatcher.register('quit', () => {
    quit = true;
    return {};
  });
  return { vm, quit: () => quit };
}

export const targets: FuzzTarget[] = [
  {
    name: 'hmp/command-line',
    ciRuns: 1500,
    property: () =>
      fc.asyncProperty(mutatedLine, async (l) => {
        const { vm } = lightVm();
        try {
          const out = await vm.hmp.run(l);
          assert.equal(typeof out, 'string');
          assert.ok(!/undefined|\[object |NaN/.test(out), `${JSON.stringify(l)}: ${JSON.stringify(out)}`);
        } finally {
          await vm.close();
        }
      }),
  },
  {
    name: 'hmp/monitor-input',
    ciRuns: 300,
    property: () =>
      fc.asyncProperty(typed, async (input) => {
        const { vm, quit } = lightVm();
        let out = '';
        const d = new Duplex({
          read() {},
          write(chunk: Buffer, _enc, cb) {
            out += chunk.toString('latin1');
            cb();
          },
        });
        try {
          serveHmp(d, vm.hmp, { version: QEMU_VERSION_TEXT });
          // A letter ends any escape sequence left open; Ctrl-E Ctrl-U then drop the half-typed
          // line, as a user would before a new command.
          d.push(Buffer.from(`${input}x\x05\x15info status\r`, 'latin1'));
          const end = Date.now() + 5000;
          // A `quit` typed ends the session, as in QEMU, where the process ends.
          while (!out.includes('VM status: ') && !quit()) {
            assert.ok(!d.destroyed, `monitor closed; output ${JSON.stringify(out.slice(-500))}`);
            assert.ok(
              Date.now() < end,
              `no answer to info status; output ${JSON.stringify(out.slice(-500))}`,
            );
            await new Promise((r) => setTimeout(r, 2));
          }
        } finally {
          d.destroy();
          await vm.close();
        }
      }),
  },
];
