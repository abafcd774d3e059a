/**
 * The `qmigrate` command line. Subcommands arrive with later work (vm, demo, migrate, ...);
 * each is imported lazily so `--help` stays fast. Exit codes are listed in the help text.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { QmigrateError } from '../errors.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
  description: string;
};

/** A usage mistake found by a subcommand: exit 2, naming the fix. */
export class CliUsageError extends QmigrateError {
  constructor(message: string) {
    super('CLI_USAGE', message);
  }
}

export const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3, interrupted: 130 } as const;

export function buildProgram(): Command {
  return new Command('qmigrate')
    .description(
      "Live migration of VMs through QEMU's own QMP API: a typed client, a QEMU-compatible migration engine, and tools to drive both.",
    )
    .version(pkg.version, '-V, --version', 'print the version and exit')
    .helpOption('-h, --help', 'show this help')
    .addHelpText(
      'after',
      `
Exit codes:
  0    success
  1    the operation failed (migration failed or was cancelled by the peer)
  2    usage or argument error, found before anything started
  3    the peer cannot be reached, or refused the QMP handshake
  130  interrupted (SIGINT) after a clean cancel`,
    )
    .showHelpAfterError('(run qmigrate --help for usage)')
    .exitOverride()
    .addCommand(
      new Command('vm')
        .description("run a VM host process from qemu-system-x86_64's options (-machine none, -m, -qmp, ...)")
        .helpOption(false)
        .allowUnknownOption()
        .argument(
          '[qemu-options...]',
          'e.g. -machine none -m 1G -incoming defer -qmp unix:/tmp/q.sock,server=on,wait=off',
        ),
    )
    .addCommand(
      new Command('demo')
        .description('migrate a writing guest live between two qmigrate VMs and prove the result')
        .option('--size <MiB>', '[number] guest RAM in MiB (default: 1024)', '1024')
        .option('--transport <kind>', '[unix|tcp|exec|file] migration transport (default: unix)', 'unix')
        .option('--rate <pages/s>', '[number] pages the guest writes per second (default: 20000)', '20000')
        .option('--downtime-limit <ms>', '[number] downtime-limit parameter (default: 300)', '300')
        .option(
          '--max-bandwidth <bytes/s>',
          '[number] max-bandwidth parameter, 0 = unlimited (default: 0)',
          '0',
        )
        .option('--json', 'print the summary as one JSON line')
        .action(async (opts: Record<string, string | boolean>) => {
          const transport = String(opts.transport);
          if (!['unix', 'tcp', 'exec', 'file'].includes(transport)) {
            throw new CliUsageError(`--transport must be unix, tcp, exec or file, not '${transport}'`);
          }
          const num = (k: string) => {
            const v = Number(opts[k]);
            if (!Number.isFinite(v) || v < 0) throw new CliUsageError(`--${k} needs a number`);
            return v;
          };
          const { runDemo } = await import('./commands/demo.js');
          process.exitCode = await runDemo(
            {
              sizeMiB: num('size'),
              transport: transport as 'unix',
              rate: num('rate'),
              downtimeLimit: num('downtimeLimit'),
              maxBandwidth: num('maxBandwidth'),
              json: opts.json === true,
            },
            console.log,
          );
        }),
    )
    .addCommand(
      new Command('uri')
        .description('show the migration channel QEMU 10.0 builds from each legacy URI')
        .argument('<uri...>', 'migration URIs, e.g. tcp:host:port, unix:/path, exec:cmd, file:/path,offset=N')
        .action(async (uris: string[]) => {
          const { runUri } = await import('./commands/uri.js');
          process.exitCode = runUri(uris, console.log, console.error);
        }),
    )
    .addCommand(
      new Command('check')
        .description("check QMP command arguments offline, answering with QEMU 10.0's own errors")
        .argument('<command>', 'a QMP command, e.g. migrate')
        .argument('[args]', 'its arguments as JSON (default: none)')
        .action(async (command: string, args: string | undefined) => {
          const { runCheck } = await import('./commands/check.js');
          process.exitCode = runCheck(command, args, console.log, console.error);
        }),
    );
}

/** Runs the CLI; resolves to the exit code (and sets process.exitCode). */
export async function main(argv: string[]): Promise<number> {
  // `vm` takes QEMU's own options (-machine, -qmp, ...), which are not ours to parse.
  if (argv[0] === 'vm') {
    const { vmMain } = await import('../vm/main.js');
    const code = await vmMain(argv.slice(1));
    process.exitCode = code;
    // Stdio monitors and signal handlers would keep the process alive: exit, but only once
    // what was written to stdout and stderr has left.
    await new Promise((r) => process.stdout.write('', r));
    await new Promise((r) => process.stderr.write('', r));
    process.exit(code);
  }
  const program = buildProgram();
  let code: number = EXIT.ok;
  try {
    await program.parseAsync(argv, { from: 'user' });
    if (argv.length === 0) program.outputHelp();
    code = typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (e) {
    if (e instanceof CommanderError) {
      code = e.exitCode === 0 ? EXIT.ok : EXIT.usage;
    } else if (e instanceof CliUsageError) {
      process.stderr.write(`qmigrate: ${e.message}\n(run qmigrate --help for usage)\n`);
      code = EXIT.usage;
    } else if (e instanceof QmigrateError) {
      process.stderr.write(`qmigrate: ${e.message}\n`);
      code = EXIT.failed;
    } else {
      process.stderr.write(
        `qmigrate: internal error: ${(e as Error)?.stack ?? e}\nPlease report this bug with: qmigrate ${pkg.version}, Node ${process.version}\n`,
      );
      code = EXIT.failed;
    }
  }
  process.exitCode = code;
  return code;
}
