/**
 * The `qmigrate` command line, run by bin.ts. `vm` goes straight to vm/main.ts with QEMU's own
 * options; commander parses and validates the others' (choices, parsers, defaults), each
 * imported only when it runs so `--help` stays fast. SIGINT, SIGTERM, SIGHUP and a closed
 * output stop the running command, and one catch maps errors to the exit codes --help lists.
 */
import { constants as buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { constants as os } from 'node:os';
import { isAbsolute } from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { InternalError, QmigrateError } from '../errors.js';
import { strtosz } from '../qapi/cutils.js';
import { ConnectError } from '../qmp/errors.js';
import type { MigrateFlags } from './commands/migrate.js';
import { CliFailure, CliUsageError, Interrupted, PeerUnreachableError } from './errors.js';
import { jsonLine } from './progress-view.js';

export { CliUsageError } from './errors.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
  description: string;
};

export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  unreachable: 3,
  hangup: 128 + os.signals.SIGHUP,
  interrupted: 128 + os.signals.SIGINT,
  outputClosed: 128 + os.signals.SIGPIPE,
  terminated: 128 + os.signals.SIGTERM,
} as const;

/** The largest guest one `qmigrate vm` can hold: its RAM is one Buffer. */
const MAX_SIZE_MIB = Math.floor(buffer.MAX_LENGTH / 2 ** 20);

/**
 * An option parser for a whole number in [min, max]; `why` ends the error commander prints
 * after "option '--flag <x>' argument 'v' is invalid.".
 */
function wholeNumber(min: number, max: number, why: string): (text: string) => number {
  return (text) => {
    const v = /^\d+$/.test(text) ? Number(text) : Number.NaN;
    if (!(v >= min && v <= max)) throw new InvalidArgumentError(why);
    return v;
  };
}

/** Usage errors of a subcommand name the subcommand's help. */
function subcommand(name: string): Command {
  return new Command(name).exitOverride().showHelpAfterError(`(run qmigrate ${name} --help for usage)`);
}

const EXIT_CODES_HELP = `
Exit codes:
  0    success
  1    the operation failed (demo: the migration failed, or its result did not check out;
       demo and migrate: the --report file could not be written)
  2    usage or argument error, found before anything started
  3    a peer cannot be reached (demo: one of its VMs did not start or its QMP monitor
       did not answer; migrate: a monitor did not answer, or the preflight found the two
       sides cannot migrate; qmp: the monitor did not answer)
  4    migrate: the --timeout passed and the migration did not complete
  5    migrate: postcopy did not finish (the link broke: resume with migrate --resume)
  129  hung up (SIGHUP)
  130  interrupted (SIGINT, Ctrl-C)
  141  the output was closed (e.g. piped into head)
  143  terminated (SIGTERM; migrate: 130, as it lists)
A demo stopped early ends its VMs and removes its temp files before it exits. A migrate
stopped by a signal cancels the migration (the source's guest keeps running), prints the
report, then exits with the signal's code.
\`qmigrate vm\` exits as QEMU does: 0 at quit or on a signal, 1 on an error.`;

/**
 * The whole command tree. Only `demo` and `migrate` run long, so only they get `signal`, which
 * stops them (the demo's output then goes silent; migrate cancels and still reports).
 */
export function buildProgram(signal?: AbortSignal, postcopySignal?: AbortSignal): Command {
  return new Command('qmigrate')
    .description(
      "Live migration of VMs through QEMU's own QMP API: a typed client, a QEMU-compatible migration engine, and tools to drive both.",
    )
    .version(pkg.version, '-V, --version', 'print the version and exit')
    .helpOption('-h, --help', 'show this help')
    .addHelpText('after', EXIT_CODES_HELP)
    .showHelpAfterError('(run qmigrate --help for usage)')
    .exitOverride()
    .addCommand(vmCommand())
    .addCommand(demoCommand(signal))
    .addCommand(migrateCommand(signal, postcopySignal))
    .addCommand(uriCommand())
    .addCommand(checkCommand())
    .addCommand(qmpCommand(signal))
    .addCommand(analyzeCommand(signal));
}

/**
 * `qmigrate vm`, for --help only: main() hands its arguments, which are QEMU's options, to
 * vmMain before commander sees them.
 */
function vmCommand(): Command {
  return subcommand('vm')
    .description("run a VM host process from qemu-system-x86_64's options (-machine none, -m, -qmp, ...)")
    .helpOption(false)
    .allowUnknownOption()
    .argument(
      '[qemu-options...]',
      'e.g. -machine none -m 1G -incoming defer -qmp unix:/tmp/q.sock,server=on,wait=off (see qmigrate vm -h)',
    );
}

function demoCommand(signal?: AbortSignal): Command {
  const demo = subcommand('demo').description(
    'migrate a writing guest live between two qmigrate VMs and prove the result',
  );
  for (const option of demoOptions()) demo.addOption(option);
  return demo
    .option('--json', 'print only the summary, as one JSON line on stdout (progress goes to stderr)')
    .addHelpText('after', DEMO_HELP)
    .action((opts: DemoFlags) => demoAction(opts, signal));
}

/** The demo's flags with their parsers and defaults, in the order --help lists them. */
function demoOptions(): Option[] {
  return [
    new Option('--size <MiB>', `[number] guest RAM in MiB, 2 to ${MAX_SIZE_MIB}`)
      .argParser(
        wholeNumber(
          2,
          MAX_SIZE_MIB,
          `The guest needs a whole number of MiB from 2 (its workload writes from 1 MiB up) to ${MAX_SIZE_MIB} (the most one qmigrate VM holds).`,
        ),
      )
      .default(1024),
    new Option('--transport <kind>', 'migration transport')
      .choices(['unix', 'tcp', 'exec', 'file'])
      .default('unix'),
    new Option('--rate <pages/s>', '[number] pages the guest writes per second, 0 = as fast as it can')
      .argParser(
        wholeNumber(
          0,
          Number.MAX_SAFE_INTEGER,
          'Expected a whole number of pages per second (0: as fast as it can).',
        ),
      )
      .default(20000),
    new Option('--downtime-limit <ms>', '[number] downtime-limit parameter, 0 to 2000000')
      .argParser(
        // QEMU's own range for downtime-limit (MAX_MIGRATE_DOWNTIME, migration/options.c).
        wholeNumber(0, 2_000_000, 'Expected a whole number of milliseconds from 0 to 2000000.'),
      )
      .default(300),
    new Option('--max-bandwidth <bytes/s>', '[number] max-bandwidth parameter, 0 = unlimited')
      .argParser(
        wholeNumber(
          0,
          Number.MAX_SAFE_INTEGER,
          'Expected a whole number of bytes per second (0: unlimited).',
        ),
      )
      .default(0),
    new Option('--report <file.html>', '[path] write an HTML picture of the migration (unix, tcp)'),
  ];
}

const DEMO_HELP = `
--report FILE.html writes the migration's page as \`qmigrate migrate --report\` does (see
qmigrate migrate --help), however the demo ends; the unix and tcp transports only, whose
migration the orchestrator follows.

Examples:
  qmigrate demo
  qmigrate demo --size 256 --transport tcp --rate 50000
  qmigrate demo --size 1024 --max-bandwidth 209715200 --report demo.html`;

interface DemoFlags {
  size: number;
  transport: 'unix' | 'tcp' | 'exec' | 'file';
  rate: number;
  downtimeLimit: number;
  maxBandwidth: number;
  json?: boolean;
  report?: string;
}

/** Runs the demo (imported only now); once `signal` aborts, its output stops. */
async function demoAction(opts: DemoFlags, signal?: AbortSignal): Promise<void> {
  const { runDemo } = await import('./commands/demo.js');
  const writer = (stream: NodeJS.WriteStream) => (line: string) => {
    if (!signal?.aborted) stream.write(`${line}\n`);
  };
  process.exitCode = await runDemo(
    {
      sizeMiB: opts.size,
      transport: opts.transport,
      rate: opts.rate,
      downtimeLimit: opts.downtimeLimit,
      maxBandwidth: opts.maxBandwidth,
      json: opts.json === true,
      ...(opts.report !== undefined ? { report: opts.report } : {}),
    },
    {
      out: writer(process.stdout),
      err: writer(process.stderr),
      // Where the report went is said after an interrupt too (stderr, unless it is gone).
      notice: (line: string) => void (process.stderr.destroyed || process.stderr.write(`${line}\n`)),
      // The live line only for a person at a terminal, not in a CI log (which keeps every frame).
      tty:
        process.stdout.isTTY && !process.env.CI
          ? {
              write: (text: string) => void (signal?.aborted || process.stdout.write(text)),
              columns: () => process.stdout.columns,
            }
          : undefined,
    },
    signal,
  );
}

const MIGRATE_HELP = `
QMP is a unix socket path, HOST:PORT, unix:PATH or tcp:HOST:PORT. The destination must wait
in -incoming defer. Before anything moves, a preflight compares the two sides (versions, run
states, RAM blocks, capabilities); --dry-run stops after it and prints the commands each side
would get. The stream goes where exactly one of --tcp, --unix, --uri or --channel says.

Output: on a terminal one live line (percent, bytes, throughput, dirty rate, pass, expected
downtime, ETA), in a log a plain line a second and the migration's events, with --json one
JSON object per line (samples, events, the report; an error as {"type":"error",...}) and
nothing else on stdout; --quiet prints nothing unless the migration does not complete. The
final report says how long it took, the downtime, the bytes and where the guest runs.

Report: --report FILE.html writes one self-contained page (no script, nothing fetched) when
the migration ends, however it ends (completed, failed, cancelled, timed out, interrupted,
postcopy paused): charts over time of throughput against dirty bytes, remaining bytes, the
dirty-page rate and the pass, the downtime window and any postcopy phase marked, the final
report and the events. It is written atomically (a temp file beside it, renamed) and its
path said on stderr; a directory that does not exist is a usage error before anything moves.

Postcopy: --postcopy sets postcopy-ram on both sides (and postcopy-blocktime on the
destination) and switches to postcopy (migrate-start-postcopy) once precopy has not converged
after --postcopy-after-passes N passes (default 1, as virsh --postcopy-after-precopy; 0: at
once); with --on-timeout postcopy and no --postcopy-after-passes, at the --timeout only. A
SIGUSR1 (kill -USR1 PID) switches at once. From the switch on the guest runs on the
destination, which pulls the pages it lacks from the source: a postcopy migration cannot be
cancelled. If the link breaks then, both sides pause (postcopy-paused) and qmigrate exits 5;
\`qmigrate migrate --resume --from QMP --to QMP --tcp HOST:PORT\` has the destination listen
anew (migrate-recover) and the source resume there (migrate with resume: true).

Exit codes:
  0    the migration completed (also when --on-timeout pause paused the guest to get there)
  1    the migration failed or was cancelled by a peer; the source's guest keeps running
       (also: the --report file could not be written)
  2    usage or argument error
  3    a monitor cannot be reached, or the preflight found the sides cannot migrate
  4    the --timeout passed and the migration was cancelled (--on-timeout cancel)
  5    postcopy did not finish while qmigrate followed it: the link broke (both sides wait
       in postcopy-paused, the guest on the destination; resume with --resume), or a
       --resume was still recovering after 30 s (it goes on without qmigrate)
  130  interrupted (SIGINT, Ctrl-C, or SIGTERM): the migration was cancelled and the
       report printed; in postcopy nothing is cancelled (it cannot be): the migration
       goes on without qmigrate following it

TLS: --tls-creds DIR makes the stream TLS: qmigrate adds a tls-creds-x509 object on each side
(the source a client, the destination a server with verify-peer=on) with dir=DIR as that
host's QEMU reads it, sets tls-creds (and --tls-hostname) and removes both when the migration
ends, however it ends (a postcopy migration left paused keeps them: the --resume that ends it
removes them). DIR holds QEMU's files: ca-cert.pem, server-cert.pem and server-key.pem
for the destination, client-cert.pem and client-key.pem for the source (one dir with all five
serves both). Hosts that keep them in different places: --from-tls-creds and --to-tls-creds.
--from-qmp-tls DIR / --to-qmp-tls DIR reach a monitor with tls-creds over TCP, with this
machine's DIR (ca-cert.pem, and client-cert.pem with client-key.pem when it has verify-peer=on).

Examples:
  qmigrate migrate --from /run/src.qmp --to /run/dst.qmp --unix /run/mig.sock
  qmigrate migrate --from /run/src.qmp --to /run/dst.qmp --unix /run/mig.sock --report migration.html
  qmigrate migrate --from 10.0.0.1:4444 --to 10.0.0.2:4444 --tcp 10.0.0.2:0 --multifd 4 --timeout 300 --on-timeout pause
  qmigrate migrate --from 10.0.0.1:4444 --to 10.0.0.2:4444 --tcp 10.0.0.2:0 --postcopy --max-bandwidth 1G
  qmigrate migrate --from 10.0.0.1:4444 --to 10.0.0.2:4444 --tcp 10.0.0.2:0 --resume
  qmigrate migrate --from 10.0.0.1:4444 --to 10.0.0.2:4444 --tcp 10.0.0.2:0 --tls-creds /etc/pki/qemu \\
    --from-qmp-tls ~/.pki/qmp --to-qmp-tls ~/.pki/qmp`;

/** QEMU's range for multifd-channels (a uint8, at least 1: migration/options.c). */
const MULTIFD_MAX = 255;

/** `--flag X` that may be given again: the values in order. */
function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** QEMU's size syntax (K, M, G, ... in powers of 1024), as a byte count. */
function sizeArgument(text: string): number {
  const r = strtosz(text);
  if (!r.ok || r.value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new InvalidArgumentError(
      'Expected a size in bytes per second, with an optional K, M, G or T suffix (e.g. 100M).',
    );
  }
  return Number(r.value);
}

function migrateCommand(signal?: AbortSignal, postcopySignal?: AbortSignal): Command {
  const migrate = subcommand('migrate')
    .description('migrate a running guest live between two QMP monitors (QEMU or qmigrate vm)')
    .requiredOption('--from <qmp>', "the source's QMP monitor")
    .requiredOption('--to <qmp>', "the destination's QMP monitor (waiting in -incoming defer)");
  for (const option of migrateOptions()) migrate.addOption(option);
  return migrate.addHelpText('after', MIGRATE_HELP).action(async (opts: MigrateFlags) => {
    const { runMigrate, orchestrator } = await import('./commands/migrate.js');
    const io = {
      out: (text: string) => void process.stdout.write(text),
      err: (line: string) => void process.stderr.write(`${line}\n`),
      columns: () => process.stdout.columns,
      isTTY: process.stdout.isTTY === true,
    };
    process.exitCode = await runMigrate(opts, io, async () => orchestrator, signal, postcopySignal);
  });
}

/** The flags of migrate after --from and --to, in the order --help lists them. */
function migrateOptions(): Option[] {
  const stream = ['channel', 'uri', 'tcp', 'unix'];
  const others = (own: string) => stream.filter((s) => s !== own);
  return [
    new Option(
      '--tcp <host:port>',
      'stream over TCP to where the destination listens (port 0: any)',
    ).conflicts(others('tcp')),
    new Option('--unix <path>', 'stream over a unix socket the destination listens on').conflicts(
      others('unix'),
    ),
    new Option(
      '--uri <uri>',
      "stream to a legacy migration URI (QEMU's tcp:, unix:, exec:, file:, ...)",
    ).conflicts(others('uri')),
    new Option('--channel <json>', '[json] a MigrationChannel as QMP migrate takes it (repeatable)')
      .argParser(collect)
      .conflicts(others('channel')),
    new Option('--multifd <n>', `[number] multifd with n channels, 1 to ${MULTIFD_MAX}`).argParser(
      wholeNumber(1, MULTIFD_MAX, `Expected a whole number of channels from 1 to ${MULTIFD_MAX}.`),
    ),
    new Option('--downtime-limit <ms>', '[number] downtime-limit parameter, 0 to 2000000').argParser(
      wholeNumber(0, 2_000_000, 'Expected a whole number of milliseconds from 0 to 2000000.'),
    ),
    new Option(
      '--max-bandwidth <size>',
      '[size] max-bandwidth parameter in bytes/s, e.g. 100M (0: unlimited)',
    ).argParser(sizeArgument),
    new Option('--capability <name[=on|off]>', 'a migration capability on both sides (repeatable)').argParser(
      collect,
    ),
    new Option('--parameter <name=value>', 'a migration parameter (repeatable)').argParser(collect),
    new Option('--timeout <seconds>', '[number] apply --on-timeout if not completed by then').argParser(
      wholeNumber(1, 2 ** 31, 'Expected a whole number of seconds, 1 or more.'),
    ),
    new Option(
      '--on-timeout <policy>',
      "cancel, pause the source's guest so it converges, or switch to postcopy",
    )
      .choices(['cancel', 'pause', 'postcopy'])
      .default('cancel'),
    new Option('--postcopy', 'allow postcopy, and switch to it when precopy does not converge'),
    new Option(
      '--postcopy-after-passes <n>',
      '[number] with --postcopy: switch once n precopy passes ended (default 1; 0: at once)',
    ).argParser(wholeNumber(0, 2 ** 31, 'Expected a whole number of passes, 0 or more.')),
    new Option(
      '--resume',
      'resume a postcopy migration paused on a broken link, the destination listening anew',
    ).conflicts([
      'postcopy',
      'postcopyAfterPasses',
      'multifd',
      'downtimeLimit',
      'maxBandwidth',
      'capability',
      'parameter',
      'timeout',
      'onTimeout',
      'tlsCreds',
      'fromTlsCreds',
      'toTlsCreds',
      'tlsHostname',
    ]),
    new Option('--json', 'print JSON lines on stdout: samples, events, the report').conflicts('quiet'),
    new Option('--quiet', 'print nothing unless the migration does not complete'),
    new Option('--dry-run', 'run the preflight, print the commands for each side, change nothing'),
    new Option('--report <file.html>', '[path] write an HTML picture of the migration').conflicts('dryRun'),
    ...tlsOptions(),
  ];
}

/** A directory QEMU reads on its own host: absolute, since its working directory is not ours. */
function remoteDir(text: string): string {
  if (!isAbsolute(text))
    throw new InvalidArgumentError(
      "Give an absolute path: each host's QEMU reads it from its own working directory.",
    );
  return text;
}

/** The TLS flags of migrate: the stream's (objects on the peers) and the monitors' (read here). */
function tlsOptions(): Option[] {
  return [
    new Option(
      '--tls-creds <dir>',
      '[path] migrate over TLS, with tls-creds-x509 objects of this dir on both hosts',
    ).argParser(remoteDir),
    new Option('--from-tls-creds <dir>', "[path] the source host's dir, if not --tls-creds's").argParser(
      remoteDir,
    ),
    new Option('--to-tls-creds <dir>', "[path] the destination host's dir, if not --tls-creds's").argParser(
      remoteDir,
    ),
    new Option(
      '--tls-hostname <name>',
      "the name the destination's certificate must carry (default: the stream's host)",
    ),
    new Option('--from-qmp-tls <dir>', "[path] reach --from over TLS with this machine's client files"),
    new Option('--to-qmp-tls <dir>', "[path] reach --to over TLS with this machine's client files"),
  ];
}

function uriCommand(): Command {
  return subcommand('uri')
    .description('show the migration channel QEMU 10.0 builds from each legacy URI')
    .argument('<uri...>', 'migration URIs, e.g. tcp:host:port, unix:/path, exec:cmd, file:/path,offset=N')
    .action(async (uris: string[]) => {
      const { runUri } = await import('./commands/uri.js');
      process.exitCode = runUri(uris, console.log, console.error);
    });
}

function checkCommand(): Command {
  return subcommand('check')
    .description("check QMP command arguments offline, answering with QEMU 10.0's own errors")
    .argument('<command>', 'a QMP command, e.g. migrate')
    .argument('[args]', 'its arguments as JSON (default: none)')
    .action(async (command: string, args: string | undefined) => {
      const { runCheck } = await import('./commands/check.js');
      process.exitCode = runCheck(command, args, console.log, console.error);
    });
}

/**
 * Stops the running command from outside: SIGINT, SIGTERM and SIGHUP, and stdout or stderr
 * closing under it (EPIPE, as in `qmigrate demo | head -1`), abort the signal with an
 * {@link Interrupted} that carries the exit code. Should the command not end within
 * `graceMs`, the process exits with that code.
 */
function stopOnInterrupt(graceMs: number, termIsInterrupt = false): { signal: AbortSignal; dispose(): void } {
  const stop = new AbortController();
  const abort = (reason: Interrupted) => {
    if (stop.signal.aborted) return;
    stop.abort(reason);
    // The command cleans up synchronously as the signal fires; should anything it then
    // awaits never settle, the process still ends with the right code.
    setTimeout(() => process.exit(reason.exitCode), graceMs).unref();
  };
  // migrate's exit codes name one outcome for Ctrl-C and SIGTERM alike, 130: interrupted
  // (the migration cancelled and reported); other commands exit 128 + the signal.
  const codeOf = (sig: NodeJS.Signals) =>
    termIsInterrupt && sig === 'SIGTERM' ? 130 : 128 + os.signals[sig];
  const onSignal = (sig: NodeJS.Signals) => abort(new Interrupted(sig, codeOf(sig)));
  const onOutputError = (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') abort(new Interrupted('EPIPE', EXIT.outputClosed));
  };
  const sigs = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const s of sigs) process.on(s, onSignal);
  process.stdout.on('error', onOutputError);
  process.stderr.on('error', onOutputError);
  return {
    signal: stop.signal,
    dispose: () => {
      for (const s of sigs) process.removeListener(s, onSignal);
      // The listeners on stdout/stderr stay: a late EPIPE must not become an uncaught error.
    },
  };
}

/**
 * How long `migrate` may take after a signal before the process ends regardless: more than
 * the orchestrator's bounded wait for `cancelled` after migrate_cancel, so its report comes.
 */
const MIGRATE_GRACE_MS = 30_000;

/** Writes one line to stderr unless stderr is gone. */
function complain(line: string): void {
  if (!process.stderr.destroyed) process.stderr.write(`${line}\n`);
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
  // migrate waits (bounded) for its cancel to be confirmed before it reports.
  const migrate = argv[0] === 'migrate';
  const interrupt = stopOnInterrupt(migrate ? MIGRATE_GRACE_MS : 5000, migrate);
  // migrate's explicit switch to postcopy (SIGUSR1 would otherwise start Node's inspector).
  const postcopy = new AbortController();
  const onUsr1 = () => postcopy.abort();
  if (migrate) process.on('SIGUSR1', onUsr1);
  const program = buildProgram(interrupt.signal, postcopy.signal);
  let code: number = EXIT.ok;
  try {
    await program.parseAsync(argv, { from: 'user' });
    code = typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (e) {
    const reason = interrupt.signal.aborted ? interrupt.signal.reason : e;
    if (reason instanceof Interrupted) {
      code = reason.exitCode;
    } else if (reason instanceof CommanderError) {
      // commander has printed its message already (help and version exit 0).
      code = reason.exitCode === 0 ? EXIT.ok : EXIT.usage;
      // migrate --json promises an error line on stdout for every failure, its own or these.
      if (code === EXIT.usage && argv[0] === 'migrate' && argv.includes('--json')) {
        process.stdout.write(
          jsonLine({ type: 'error', code: 'CLI_USAGE', message: reason.message, exitCode: code }),
        );
      }
    } else if (reason instanceof CliUsageError) {
      const sub = program.commands.some((c) => c.name() === argv[0]) ? `${argv[0]} ` : '';
      complain(`qmigrate: ${reason.message}\n(run qmigrate ${sub}--help for usage)`);
      code = EXIT.usage;
    } else if (reason instanceof PeerUnreachableError || reason instanceof ConnectError) {
      complain(`qmigrate: ${reason.message}`);
      code = EXIT.unreachable;
    } else if (
      reason instanceof CliFailure ||
      (reason instanceof QmigrateError && !(reason instanceof InternalError))
    ) {
      complain(`qmigrate: ${reason.message}`);
      code = EXIT.failed;
    } else {
      complain(
        `qmigrate: internal error: ${(reason as Error)?.stack ?? reason}\nPlease report this bug with: qmigrate ${pkg.version}, Node ${process.version}`,
      );
      code = EXIT.failed;
    }
  }
  // An output closed while a quick command (uri, check) wrote is reported the same way. Its
  // EPIPE is emitted on a later tick than the write that met it: let those events come.
  await new Promise((r) => setImmediate(r));
  if (interrupt.signal.aborted && interrupt.signal.reason instanceof Interrupted) {
    code = interrupt.signal.reason.exitCode;
  }
  interrupt.dispose();
  process.removeListener('SIGUSR1', onUsr1);
  process.exitCode = code;
  return code;
}

const QMP_HELP = `
ADDR is a unix socket path, unix:PATH, HOST:PORT or tcp:HOST:PORT (as migrate's --from).
A line is \`command key=value ...\`: a dotted key builds nested objects (addr.transport=socket),
keys 0, 1, 2, ... build a list (channels.0.channel-type=main); a value is JSON where it parses
as JSON (numbers, true, false, null, "strings", {...}, [...]), else a string. A line starting
with { is a whole JSON request ({"execute": ..., "arguments": ..., "id": ...}); its reply
carries its id.
With -H a line is an HMP command, sent through human-monitor-command.

At a terminal: Tab completes command names, argument names (dotted) and enum values from the
monitor's query-commands and query-qmp-schema (-H: from its help); Up recalls lines of this
and earlier sessions (--history, default $XDG_STATE_HOME/qmigrate/qmp_history, else
~/.local/state/qmigrate/qmp_history; hmp_history with -H; 1000 lines). A reply shows its
return value, or "error: Class: desc"; events print as they come, above the line being typed.
Ctrl-C clears the line, or stops waiting for a reply (the monitor may still run the command);
Ctrl-C at an empty line, or Ctrl-D, quits.

Standard input not a terminal: one request per line (blank lines and # comments skipped), one
JSON line per reply on stdout, the whole reply ({"return": ...} or {"error": ...}, with the
request's id if it had one); events as JSON lines on stderr (--events stdout: mixed with the
replies). A line that does not parse is reported on stderr with its number, nothing is sent
for it, and the shell goes on with the next line.

Exit codes:
  0    every command succeeded (at a terminal: the shell was quit)
  1    a command answered with an error (-H: HMP's errors are text in a successful reply),
       or the monitor closed the connection
  2    usage error, or a line that did not parse (the other lines still ran)
  3    the monitor cannot be reached, or did not greet within --timeout
  130  interrupted (SIGINT when standard input is not a terminal)
  141  the output was closed (e.g. piped into head)

Examples:
  qmigrate qmp /run/vm.qmp
  qmigrate qmp -H 10.0.0.1:4444
  echo 'query-status' | qmigrate qmp /run/vm.qmp
  qmigrate qmp /run/vm.qmp <<'EOF'
  migrate-set-capabilities capabilities.0.capability=events capabilities.0.state=true
  migrate channels.0.channel-type=main channels.0.addr.transport=socket channels.0.addr.type=unix channels.0.addr.path=/run/mig.sock
  {"execute": "query-migrate", "id": 7}
  EOF`;

function qmpCommand(signal?: AbortSignal): Command {
  return subcommand('qmp')
    .description(
      "an interactive shell for a QMP monitor (QEMU's or qmigrate vm's): key=value, history, completion",
    )
    .argument('<addr>', 'the monitor: a socket path or HOST:PORT')
    .option('-H, --hmp', 'HMP commands, through human-monitor-command')
    .option('-p, --pretty', 'indented JSON')
    .option('-v, --verbose', 'print each request (JSON) on stderr before it is sent')
    .option('--history <file>', '[path] the history file (default: $XDG_STATE_HOME/qmigrate/qmp_history)')
    .addOption(
      new Option('--timeout <seconds>', "[number] wait this long for the monitor's greeting")
        .argParser(wholeNumber(1, 3600, 'Expected a whole number of seconds from 1 to 3600.'))
        .default(10),
    )
    .addOption(
      new Option(
        '--events <where>',
        'where events go (default: the terminal, or stderr if input is not one)',
      ).choices(['stdout', 'stderr']),
    )
    .option(
      '--tls <dir>',
      "[path] reach a TCP monitor with tls-creds, with this machine's ca-cert.pem (+ client cert)",
    )
    .addHelpText('after', QMP_HELP)
    .action(async (addr: string, opts: import('./commands/qmp.js').QmpShellFlags) => {
      const { runQmpShell } = await import('./commands/qmp.js');
      process.exitCode = await runQmpShell(
        addr,
        opts,
        {
          input: process.stdin,
          stdout: process.stdout,
          stderr: process.stderr,
          interactive: process.stdin.isTTY === true,
        },
        signal,
      );
    });
}

const ANALYZE_HELP = `
FILE is a stream saved by the file: or exec: transport (\`migrate file:F\`, \`migrate "exec:cat > F"\`),
by QEMU 7.2, QEMU 10.0 (also with mapped-ram) or qmigrate; - reads standard input. The JSON has
the header, the configuration (machine type, capabilities), every section chunk in stream
order (offset, kind, section id, idstr, instance and version id), the commands, the RAM blocks
with their page counts, each device section decoded field by field from the VM description at
the stream's end (timer and globalstate also without one), and the VM description itself.
64-bit fields are exact decimal strings; buffers are hex.
--dump-ram DIR writes each RAM block to DIR/NAME as the destination would have it (zeros where
the stream sent zero pages or none; / and other unsafe characters of NAME as %XX).
A truncated or corrupt stream: one line with the byte offset and the section, exit 1.

Examples:
  qmigrate analyze vm.mig --pretty
  qmigrate analyze vm.mig --dump-ram ram/ && cmp ram/pc.ram guest-ram.img
  qmigrate analyze vm.mig | jq '.ram.blocks[] | {name, normal, zero}'
  qmigrate analyze - < vm.mig`;

function analyzeCommand(signal?: AbortSignal): Command {
  return subcommand('analyze')
    .description('show the structure of a saved migration stream as JSON (analyze-migration.py, better)')
    .argument('<file>', 'the stream file, or - for standard input')
    .option('--dump-ram <dir>', '[path] write each RAM block to a file in dir')
    .option('-p, --pretty', 'indent the JSON')
    .addHelpText('after', ANALYZE_HELP)
    .action(async (file: string, opts: { dumpRam?: string; pretty?: boolean }) => {
      const { runAnalyze } = await import('./commands/analyze.js');
      const io = {
        out: (text: string) => new Promise<void>((r) => process.stdout.write(text, () => r())),
        err: (line: string) => void process.stderr.write(`${line}\n`),
        stdin: process.stdin,
      };
      process.exitCode = await runAnalyze(file, opts, io, signal);
    });
}
