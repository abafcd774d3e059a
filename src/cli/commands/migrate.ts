/**
 * `qmigrate migrate --from QMP --to QMP ...`: a live migration between two monitors that are
 * already running (QEMU or `qmigrate vm`), as `virsh migrate --verbose` drives one: the
 * flags become a MigratePlan, the orchestrator runs it, and this shows its progress (a live
 * line on a terminal, a plain line a second in a log, JSON lines with --json) and its report,
 * and maps the outcome to the exit codes of `qmigrate migrate --help`.
 */

import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { InternalError, QmigrateError } from '../../errors.js';
import { parseQmpEndpoint } from '../../orchestrator/endpoint.js';
import { PreflightError } from '../../orchestrator/errors.js';
import { planMigration, runMigration } from '../../orchestrator/migrate.js';
import type {
  MigratePlan,
  MigrationEventSample,
  MigrationReport,
  MigrationTls,
  PlannedCommand,
  ProgressSample,
  QmpEndpoint,
  TimeoutPolicy,
} from '../../orchestrator/types.js';
import { checkCommand, checkType } from '../../qapi/check.js';
import { strtosz } from '../../qapi/cutils.js';
import { QapiError } from '../../qapi/errors.js';
import { JsonSyntaxError, parseJson } from '../../qapi/json.js';
import { schema } from '../../qapi/schema.js';
import type { MigrationChannel } from '../../qapi/types.js';
import { uriToChannel } from '../../qapi/uri.js';
import { ConnectError } from '../../qmp/errors.js';
import { readX509CredsDir } from '../../qmp/tls.js';
import { CliFailure, CliUsageError, Interrupted, PeerUnreachableError } from '../errors.js';
import { jsonLine, type ProgressMode, ProgressView, type ViewIo } from '../progress-view.js';
import { checkReportPath, commandLine, REPORT_POLL_MS, ReportRecorder } from '../report-file.js';
import { checkOnVm } from './check.js';

/** The flags of `qmigrate migrate`, as commander hands them over. */
export interface MigrateFlags {
  from: string;
  to: string;
  channel?: string[];
  uri?: string;
  tcp?: string;
  unix?: string;
  multifd?: number;
  downtimeLimit?: number;
  maxBandwidth?: number;
  capability?: string[];
  parameter?: string[];
  timeout?: number;
  onTimeout: TimeoutPolicy;
  /** Postcopy allowed, switched to after --postcopy-after-passes passes (default 1). */
  postcopy?: boolean;
  postcopyAfterPasses?: number;
  /** Recover a postcopy migration paused on a broken link. */
  resume?: boolean;
  json?: boolean;
  quiet?: boolean;
  dryRun?: boolean;
  /** Write a picture of the run to this HTML file at the end (report-file.ts). */
  report?: string;
  /** The stream over TLS: the credentials dir on both hosts, or per host. */
  tlsCreds?: string;
  fromTlsCreds?: string;
  toTlsCreds?: string;
  tlsHostname?: string;
  /** The monitors over TLS: a local dir in QEMU's layout with the client's files. */
  fromQmpTls?: string;
  toQmpTls?: string;
}

/** A running migration, as the orchestrator's runMigration returns it. */
export interface MigrationJob extends AsyncIterable<ProgressSample | MigrationEventSample> {
  readonly result: Promise<MigrationReport>;
}

/**
 * What this command needs from src/orchestrator/: the endpoint parser, the commands a plan
 * sends (connecting to both sides to learn their versions, changing nothing) and the run.
 */
export interface MigrateLibrary {
  parseQmpEndpoint(text: string): QmpEndpoint;
  planFor(plan: MigratePlan, options: { signal?: AbortSignal }): Promise<PlannedCommand[]>;
  runMigration(
    plan: MigratePlan,
    options: { signal?: AbortSignal; postcopySignal?: AbortSignal; pollMs?: number },
  ): MigrationJob;
}

/** Where the command writes: a view's io, and whether stdout is a terminal. */
export interface MigrateIo extends ViewIo {
  isTTY: boolean;
}

/** The exit codes `qmigrate migrate --help` lists. */
export const MIGRATE_EXIT = {
  completed: 0,
  failed: 1,
  usage: 2,
  preflight: 3,
  timeout: 4,
  postcopyPaused: 5,
} as const;

/**
 * `NAME[=on|off]` for --capability, the name checked against QEMU 10.0's MigrationCapability.
 * @throws {CliUsageError} for an unknown name or a state other than on/off.
 */
export function parseCapability(text: string): [string, boolean] {
  const m = /^([^=]+)(?:=(.*))?$/.exec(text);
  const name = m?.[1] ?? text;
  const known = schema.enumValues('MigrationCapability');
  if (!known.includes(name)) {
    throw new CliUsageError(
      `--capability: '${name}' is not a migration capability; QEMU 10.0 has: ${known.join(', ')}`,
    );
  }
  const state = m?.[2] === undefined ? 'on' : m[2];
  if (!['on', 'off', 'true', 'false'].includes(state)) {
    throw new CliUsageError(`--capability ${name}=${state}: expected ${name}=on or ${name}=off`);
  }
  return [name, state === 'on' || state === 'true'];
}

/**
 * `NAME=VALUE` for --parameter, the name checked against QEMU 10.0's migrate-set-parameters
 * (the value is checked with all of them, when the plan is made).
 * @throws {CliUsageError} for an unknown name or a missing `=`.
 */
export function parseParameter(text: string): [string, string] {
  const eq = text.indexOf('=');
  const known = schema.allMembers('MigrateSetParameters').map((m) => m.name);
  const name = eq < 0 ? text : text.slice(0, eq);
  if (!known.includes(name)) {
    throw new CliUsageError(
      `--parameter: '${name}' is not a migration parameter; QEMU 10.0 has: ${known.join(', ')}`,
    );
  }
  if (eq < 0) throw new CliUsageError(`--parameter ${name}: expected ${name}=VALUE`);
  return [name, text.slice(eq + 1)];
}

/**
 * A --parameter's text as the QMP value its schema type takes: sizes with QEMU's suffixes,
 * integers, on/off for booleans, JSON for lists; QEMU's own check then judges the value.
 */
function typedValue(name: string, text: string): unknown {
  const type = schema.allMembers('MigrateSetParameters').find((m) => m.name === name)?.type;
  if (type === 'size') {
    const r = strtosz(text);
    return r.ok ? r.value : text;
  }
  if (typeof type === 'string' && /^u?int\d*$/.test(type) && /^-?\d+$/.test(text)) return BigInt(text);
  if (type === 'bool') return { on: true, off: false, true: true, false: false }[text] ?? text;
  if (Array.isArray(type)) {
    try {
      return parseJson(text);
    } catch {
      return text;
    }
  }
  return text;
}

/** The parameters of a plan: the shortcuts' first, then --parameter, checked as QEMU checks them. */
function planParameters(flags: MigrateFlags): Record<string, unknown> {
  const raw: Record<string, unknown> = {};
  if (flags.multifd !== undefined) raw['multifd-channels'] = flags.multifd;
  if (flags.downtimeLimit !== undefined) raw['downtime-limit'] = flags.downtimeLimit;
  if (flags.maxBandwidth !== undefined) raw['max-bandwidth'] = flags.maxBandwidth;
  for (const [name, text] of (flags.parameter ?? []).map(parseParameter)) raw[name] = typedValue(name, text);
  try {
    const typed = checkCommand('migrate-set-parameters', raw);
    checkOnVm('migrate-set-parameters', typed);
    return typed;
  } catch (e) {
    if (e instanceof QapiError) throw new CliUsageError(`--parameter: ${e.desc}`);
    throw e;
  }
}

/** One --channel: JSON of a MigrationChannel, checked as QEMU's migrate checks it. */
function parseChannel(text: string): MigrationChannel {
  let value: unknown;
  try {
    value = parseJson(text);
  } catch (e) {
    if (e instanceof JsonSyntaxError) throw new CliUsageError(`--channel: not JSON: ${e.message}`);
    throw e;
  }
  try {
    return checkType('MigrationChannel', value) as MigrationChannel;
  } catch (e) {
    if (e instanceof QapiError) throw new CliUsageError(`--channel: ${e.desc}`);
    throw e;
  }
}

/** Where the stream goes: exactly one of --channel (repeatable), --uri, --tcp, --unix. */
function planStream(flags: MigrateFlags): Pick<MigratePlan, 'channels' | 'uri'> {
  const given = [
    flags.channel?.length ? '--channel' : undefined,
    flags.uri !== undefined ? '--uri' : undefined,
    flags.tcp !== undefined ? '--tcp' : undefined,
    flags.unix !== undefined ? '--unix' : undefined,
  ].filter((g) => g !== undefined);
  if (given.length !== 1) {
    throw new CliUsageError(
      given.length === 0
        ? 'say where the stream goes: --tcp HOST:PORT, --unix PATH, --uri URI or --channel JSON'
        : `${given.join(' and ')} both say where the stream goes: give only one`,
    );
  }
  const viaUri = (uri: string, flag: string) => {
    try {
      return uriToChannel(uri);
    } catch (e) {
      if (e instanceof QapiError) throw new CliUsageError(`${flag}: ${e.desc}`);
      throw e;
    }
  };
  if (flags.uri !== undefined) {
    viaUri(flags.uri, '--uri');
    return { uri: flags.uri };
  }
  if (flags.tcp !== undefined) return { channels: [viaUri(`tcp:${flags.tcp}`, '--tcp')] };
  if (flags.unix !== undefined) return { channels: [viaUri(`unix:${flags.unix}`, '--unix')] };
  return { channels: (flags.channel ?? []).map(parseChannel) };
}

/**
 * The stream's TLS from --tls-creds (both hosts), --from-tls-creds / --to-tls-creds (one host
 * each, over --tls-creds) and --tls-hostname; the objects get a fresh id per run, so that a
 * run never meets one an earlier run left behind.
 * @throws {CliUsageError} for half a pair, --tls-hostname alone, tls-creds
 *   also given with --parameter, or a unix stream without --tls-hostname.
 */
function planTls(
  flags: MigrateFlags,
  stream: Pick<MigratePlan, 'channels' | 'uri'>,
): MigrationTls | undefined {
  const sourceDir = flags.fromTlsCreds ?? flags.tlsCreds;
  const destinationDir = flags.toTlsCreds ?? flags.tlsCreds;
  if (sourceDir === undefined && destinationDir === undefined) {
    if (flags.tlsHostname !== undefined)
      throw new CliUsageError('--tls-hostname applies to TLS only: add --tls-creds DIR');
    return undefined;
  }
  if (sourceDir === undefined || destinationDir === undefined) {
    const [given, missing] = sourceDir === undefined ? ['--to', '--from'] : ['--from', '--to'];
    throw new CliUsageError(
      `${given}-tls-creds names one host's directory: add ${missing}-tls-creds DIR, or --tls-creds DIR for both`,
    );
  }
  const own = (flags.parameter ?? [])
    .map((p) => p.split('=')[0])
    .find((n) => n === 'tls-creds' || n === 'tls-hostname');
  if (own)
    throw new CliUsageError(
      `--parameter ${own} and --tls-creds both set TLS: give only --tls-creds (and --tls-hostname)`,
    );
  const main =
    stream.channels?.find((c) => c['channel-type'] === 'main') ??
    (stream.uri ? uriToChannel(stream.uri) : undefined);
  const unix = main?.addr.transport === 'socket' && main.addr.type === 'unix';
  if (unix && flags.tlsHostname === undefined)
    throw new CliUsageError(
      "--tls-creds over a unix socket needs --tls-hostname NAME, the name in the destination's certificate (QEMU has no host to check it against: 'No hostname available for TLS')",
    );
  return {
    sourceDir,
    destinationDir,
    ...(flags.tlsHostname !== undefined ? { hostname: flags.tlsHostname } : {}),
    id: `qmigrate-tls-${randomBytes(4).toString('hex')}`,
  };
}

/**
 * The MigratePlan of the flags, but for the two monitors, which the orchestrator parses:
 * everything checked before it is loaded.
 * @throws {CliUsageError} for anything QEMU or the orchestrator would refuse before starting.
 */
export function planOptions(flags: MigrateFlags): Omit<MigratePlan, 'from' | 'to'> {
  if (flags.resume) {
    // The paused migration keeps its own capabilities, parameters and TLS (commander refuses
    // those flags with --resume); only where the destination listens anew is asked.
    return {
      ...planStream(flags),
      capabilities: {},
      parameters: {},
      onTimeout: flags.onTimeout,
      resume: true,
    };
  }
  const capabilities: Record<string, boolean> = {};
  if (flags.multifd !== undefined) capabilities.multifd = true;
  for (const [name, on] of (flags.capability ?? []).map(parseCapability)) capabilities[name] = on;
  const postcopy = planPostcopy(flags, capabilities);
  try {
    const list = Object.entries(capabilities).map(([capability, state]) => ({ capability, state }));
    checkOnVm('migrate-set-capabilities', checkCommand('migrate-set-capabilities', { capabilities: list }));
  } catch (e) {
    if (!(e instanceof QapiError)) throw e;
    // Name the flags the user gave, not --capability, when the shortcuts made the pair.
    if (flags.postcopy && flags.multifd !== undefined && /multifd/.test(e.desc))
      throw new CliUsageError(`--postcopy with --multifd: ${e.desc} (QEMU 10.0 refuses the pair)`);
    throw new CliUsageError(`--capability: ${e.desc}`);
  }
  if (capabilities.events === false) {
    // Not silently turned back on: the orchestrator follows the migration by its events.
    throw new CliUsageError('--capability events=off: qmigrate migrate needs MIGRATION events on both sides');
  }
  if (flags.multifd !== undefined && capabilities.multifd === false) {
    throw new CliUsageError('--multifd needs the multifd capability: drop --capability multifd=off');
  }
  const stream = planStream(flags);
  const parameters = planParameters(flags);
  const multifdParameters = (flags.parameter ?? [])
    .map((p) => p.split('=')[0] ?? p)
    .filter((name) => name.startsWith('multifd-'));
  if (multifdParameters.length > 0 && capabilities.multifd !== true) {
    // QEMU takes them and ignores them without the capability: the user would get one stream.
    throw new CliUsageError(
      `--parameter ${multifdParameters[0]} applies only to multifd: add --capability multifd (or use --multifd N)`,
    );
  }
  const tls = planTls(flags, stream);
  return {
    ...stream,
    capabilities,
    parameters,
    ...(tls ? { tls } : {}),
    ...(flags.timeout !== undefined ? { timeoutS: flags.timeout } : {}),
    onTimeout: flags.onTimeout,
    ...(postcopy ? { postcopy } : {}),
  };
}

/**
 * --postcopy: `postcopy-ram` on both sides and `postcopy-blocktime` on the destination (for
 * the report), switched to once --postcopy-after-passes passes ended without converging
 * (default 1, virsh's --postcopy-after-precopy); with --on-timeout postcopy and no
 * --postcopy-after-passes, at the timeout only. Sets the capabilities in `capabilities`.
 * @throws {CliUsageError} for --postcopy-after-passes without --postcopy, --postcopy with
 *   postcopy-ram=off, --on-timeout postcopy without postcopy or without --timeout, and
 *   --on-timeout pause without --timeout.
 */
function planPostcopy(flags: MigrateFlags, capabilities: Record<string, boolean>): MigratePlan['postcopy'] {
  if (flags.postcopy && capabilities['postcopy-ram'] === false)
    throw new CliUsageError(
      '--postcopy needs the postcopy-ram capability: drop --capability postcopy-ram=off',
    );
  if (flags.postcopyAfterPasses !== undefined && !flags.postcopy)
    throw new CliUsageError('--postcopy-after-passes says when --postcopy switches: add --postcopy');
  // Not taken and ignored: without a timeout the policy never applies.
  if (flags.onTimeout === 'pause' && flags.timeout === undefined)
    throw new CliUsageError('--on-timeout pause applies at the --timeout: add --timeout SECONDS');
  if (flags.onTimeout === 'postcopy') {
    if (!flags.postcopy && capabilities['postcopy-ram'] !== true)
      throw new CliUsageError(
        '--on-timeout postcopy switches to postcopy, which needs postcopy-ram on both sides: add --postcopy',
      );
    if (flags.timeout === undefined)
      throw new CliUsageError('--on-timeout postcopy applies at the --timeout: add --timeout SECONDS');
  }
  if (!flags.postcopy) return undefined;
  capabilities['postcopy-ram'] = true;
  capabilities['postcopy-blocktime'] ??= true;
  const afterPasses = flags.postcopyAfterPasses ?? (flags.onTimeout === 'postcopy' ? undefined : 1);
  return afterPasses === undefined ? {} : { afterPasses };
}

/**
 * The MigratePlan of the flags.
 * @throws {CliUsageError} for a monitor address the orchestrator cannot parse, and see planOptions.
 */
export function buildPlan(
  options: Omit<MigratePlan, 'from' | 'to'>,
  flags: Pick<MigrateFlags, 'from' | 'to' | 'fromQmpTls' | 'toQmpTls'>,
  parseEndpoint: MigrateLibrary['parseQmpEndpoint'],
): MigratePlan {
  const endpoint = (text: string, flag: string, tlsDir: string | undefined): QmpEndpoint => {
    let ep: QmpEndpoint;
    try {
      ep = parseEndpoint(text);
    } catch (e) {
      throw new CliUsageError(`${flag}: ${(e as Error).message}`);
    }
    if (tlsDir === undefined) return ep;
    if (ep.kind !== 'tcp')
      throw new CliUsageError(`${flag}-qmp-tls applies to a monitor over TCP (HOST:PORT), not ${text}`);
    try {
      return { ...ep, tls: readX509CredsDir(tlsDir) };
    } catch (e) {
      throw new CliUsageError(`${flag}-qmp-tls: ${(e as Error).message}`);
    }
  };
  const from = endpoint(flags.from, '--from', flags.fromQmpTls);
  const to = endpoint(flags.to, '--to', flags.toQmpTls);
  const same =
    from.kind === 'unix' && to.kind === 'unix'
      ? resolve(from.path) === resolve(to.path)
      : from.kind === 'tcp' && to.kind === 'tcp' && from.host === to.host && from.port === to.port;
  if (same) {
    // Else the second connection waits, ungreeted, behind the first until the connect timeout.
    throw new CliUsageError(
      `--from and --to are the same monitor (${flags.from}): a guest migrates to another VM`,
    );
  }
  return { from, to, ...options };
}

/** The orchestrator of src/orchestrator/, as runMigrate uses it (tests hand it a scripted one). */
export const orchestrator: MigrateLibrary = {
  parseQmpEndpoint,
  planFor: async (plan, { signal }) => (await planMigration(plan, { signal })).commands,
  runMigration,
};

/**
 * The exit code of a report: 0 completed (also when --on-timeout pause made it converge),
 * 4 when the timeout ended it otherwise, 5 when a postcopy did not finish (paused on a broken
 * link, or a resume still recovering when qmigrate stopped waiting: the guest runs on the
 * destination either way, so 1's "the source's guest keeps running" would be false), 1 for
 * any other failure or cancel. An interrupt's code (130) is set by the CLI's signal handling,
 * which wins over this.
 */
export function exitCodeOf(report: MigrationReport): number {
  if (report.status === 'completed') return MIGRATE_EXIT.completed;
  if (report.status === 'postcopy-paused' || report.status === 'postcopy-active')
    return MIGRATE_EXIT.postcopyPaused;
  if (report.endedBy === 'timeout-cancel' || report.endedBy === 'timeout-pause') return MIGRATE_EXIT.timeout;
  return MIGRATE_EXIT.failed;
}

/** --json, --quiet, or what stdout is. */
function modeOf(flags: MigrateFlags, io: MigrateIo): ProgressMode {
  if (flags.json) return 'json';
  if (flags.quiet) return 'quiet';
  // A live line only for a person: not in CI logs, which are terminals that keep every frame.
  return io.isTTY && !process.env.CI ? 'tty' : 'plain';
}

/** The commands each side would get, one per line (--dry-run). */
function printPlan(commands: PlannedCommand[], mode: ProgressMode, io: MigrateIo): void {
  if (mode === 'json') {
    for (const c of commands) io.out(jsonLine({ type: 'command', ...c }));
    return;
  }
  for (const c of commands) {
    const args =
      c.arguments === undefined
        ? ''
        : ` ${JSON.stringify(c.arguments, (_k, v) => (typeof v === 'bigint' ? Number(v) : v))}`;
    const when = c.phase === 'cleanup' ? '  (once the migration has ended)' : '';
    io.out(`${c.side.padEnd(11)} ${c.execute}${args}${when}\n`);
  }
}

/**
 * A failure before the migration started: preflight (exit 3, one line per mismatch, the
 * source untouched), an unreachable monitor (3). Anything else goes to the CLI's own catch.
 */
function failedBeforeStart(e: unknown, view: ProgressView, signal?: AbortSignal, resume = false): number {
  if (signal?.aborted && (e instanceof PreflightError || e instanceof ConnectError)) {
    // Not 'cannot reach ...: This operation was aborted' with exit 3: the user stopped it.
    const reason: unknown = signal.reason;
    const exitCode = reason instanceof Interrupted ? reason.exitCode : MIGRATE_EXIT.failed;
    const why = reason instanceof Interrupted ? ` (${reason.reason})` : '';
    // A resume has no source guest to speak of: it runs on the destination already.
    const what = resume
      ? 'the resume started: nothing was sent, the postcopy migration stays paused (the guest on the destination)'
      : "the migration started: nothing was migrated, the source's guest runs on";
    view.error([`interrupted${why} before ${what}`], 'CLI_INTERRUPTED', exitCode);
    return exitCode;
  }
  if (e instanceof PreflightError) {
    view.error([...e.problems], e.code, MIGRATE_EXIT.preflight);
    return MIGRATE_EXIT.preflight;
  }
  if (e instanceof ConnectError || e instanceof PeerUnreachableError) {
    view.error([e.message], e.code, MIGRATE_EXIT.preflight);
    return MIGRATE_EXIT.preflight;
  }
  throw e;
}

/**
 * An error once the migration was under way (a monitor went away): exit 1, saying that how it
 * ended is unknown, rather than a preflight's 3. Errors of qmigrate's own bugs go on.
 */
function lostDuring(e: unknown, view: ProgressView): number {
  if (!(e instanceof QmigrateError) || e instanceof InternalError) throw e;
  view.error(
    [`${e.message}`, 'how the migration ended is unknown: check both sides (query-migrate, query-status)'],
    e.code,
    MIGRATE_EXIT.failed,
  );
  return MIGRATE_EXIT.failed;
}

/**
 * Runs `qmigrate migrate`: builds the plan, then prints it (--dry-run) or runs it with its
 * progress and report. `signal` (Ctrl-C, SIGTERM) makes the orchestrator cancel the migration;
 * its report is still printed.
 * @returns the exit code: 0 completed, 1 failed or cancelled, 3 preflight, 4 timeout.
 * @throws {CliUsageError} for flags that cannot make a plan (exit 2).
 */
export async function runMigrate(
  flags: MigrateFlags,
  io: MigrateIo,
  load: () => Promise<MigrateLibrary>,
  signal?: AbortSignal,
  postcopySignal?: AbortSignal,
): Promise<number> {
  let plan: MigratePlan;
  let lib: MigrateLibrary;
  let reportPath: string | undefined;
  try {
    reportPath = flags.report === undefined ? undefined : checkReportPath(flags.report);
    const options = planOptions(flags);
    lib = await load();
    plan = buildPlan(options, flags, lib.parseQmpEndpoint);
    if (reportPath !== undefined) checkReportClash(reportPath, plan);
  } catch (e) {
    // --json: a usage error is an error line on stdout too, as a preflight failure is (the
    // CLI still writes it to stderr and exits 2).
    if (flags.json && e instanceof CliUsageError) {
      io.out(jsonLine({ type: 'error', code: e.code, message: e.message, exitCode: MIGRATE_EXIT.usage }));
    }
    throw e;
  }
  const mode = modeOf(flags, io);
  const view = new ProgressView(io, mode);
  if (flags.dryRun) {
    try {
      printPlan(await lib.planFor(plan, { signal }), mode, io);
      return MIGRATE_EXIT.completed;
    } catch (e) {
      return failedBeforeStart(e, view, signal, flags.resume);
    }
  }
  const recorder =
    reportPath === undefined
      ? undefined
      : new ReportRecorder(reportPath, {
          command: commandLine(['qmigrate', ...process.argv.slice(2)]),
          facts: reportFacts(flags, plan),
        });
  const save = (end: { report?: MigrationReport; error?: string }, code: number) =>
    saveReport(recorder, end, code, view, io, mode === 'quiet' && code === MIGRATE_EXIT.completed);
  let report: MigrationReport;
  let started = false;
  try {
    // More samples with a report: a short migration still draws lines, not dots.
    const job = lib.runMigration(plan, {
      signal,
      postcopySignal,
      ...(recorder ? { pollMs: REPORT_POLL_MS } : {}),
    });
    // Read the result even if the iteration throws first, so it is never left unhandled.
    const result = job.result.then(
      (r) => ({ r }),
      (e: unknown) => ({ e }),
    );
    for await (const item of job) {
      started = true;
      recorder?.add(item);
      if (item.type === 'progress') view.sample(item);
      else view.event(item);
    }
    const end = await result;
    if ('e' in end) throw end.e;
    report = end.r;
  } catch (e) {
    const code = started ? lostDuring(e, view) : failedBeforeStart(e, view, signal, flags.resume);
    return save({ error: endText(e, started, signal) }, code);
  }
  view.report(report);
  if (report.status === 'postcopy-paused') {
    // --quiet still says what to do next, beside the report it prints on stderr.
    if (mode === 'quiet') io.err(resumeHint(flags));
    else view.note(resumeHint(flags));
  }
  return save({ report }, exitCodeOf(report));
}

/**
 * The page is renamed over its path at the end: not over the file or socket the stream goes
 * to (a file: migration's image would be lost), nor over a monitor's socket.
 * @throws {CliUsageError} when --report names one of them.
 */
function checkReportClash(reportPath: string, plan: MigratePlan): void {
  const main =
    plan.channels?.find((c) => c['channel-type'] === 'main') ??
    (plan.uri ? uriToChannel(plan.uri) : undefined);
  const addr = main?.addr;
  const stream =
    addr?.transport === 'file'
      ? addr.filename
      : addr?.transport === 'socket' && addr.type === 'unix'
        ? addr.path
        : undefined;
  const clash =
    stream !== undefined && resolve(stream) === reportPath
      ? 'is where the migration stream goes'
      : plan.from.kind === 'unix' && resolve(plan.from.path) === reportPath
        ? "is --from's monitor"
        : plan.to.kind === 'unix' && resolve(plan.to.path) === reportPath
          ? "is --to's monitor"
          : undefined;
  if (clash) throw new CliUsageError(`--report ${reportPath} ${clash}: give the page a name of its own`);
}

/** What the report page says of a run that ended without a report. */
function endText(e: unknown, started: boolean, signal?: AbortSignal): string {
  if (!started && signal?.aborted) return 'interrupted before the migration started: nothing was migrated';
  if (e instanceof PreflightError)
    return `the preflight refused the migration (nothing moved): ${e.problems.join('; ')}`;
  const message = (e as Error).message;
  return started ? `${message}; how the migration ended is unknown: check both sides` : message;
}

/** The facts a report page shows under its title: the monitors, the stream, the settings. */
function reportFacts(flags: MigrateFlags, plan: MigratePlan): { name: string; value: string }[] {
  const stream =
    flags.tcp !== undefined
      ? `tcp ${flags.tcp}`
      : flags.unix !== undefined
        ? `unix ${flags.unix}`
        : (flags.uri ?? jsonLine(plan.channels).trim());
  const facts = [
    { name: 'source', value: flags.from },
    { name: 'destination', value: flags.to },
    { name: 'stream', value: plan.tls ? `${stream}, over TLS` : stream },
  ];
  const caps = Object.entries(plan.capabilities).map(([n, on]) => `${n}=${on ? 'on' : 'off'}`);
  if (caps.length) facts.push({ name: 'capabilities', value: caps.join(' ') });
  const params = jsonLine(plan.parameters).trim();
  if (params !== '{}') facts.push({ name: 'parameters', value: params });
  if (plan.timeoutS !== undefined)
    facts.push({ name: 'timeout', value: `${plan.timeoutS} s, then ${plan.onTimeout}` });
  if (plan.resume) facts.push({ name: 'resume', value: 'a postcopy migration paused on a broken link' });
  return facts;
}

/**
 * Writes the report page when one was asked for and says where on stderr (not with --quiet
 * once the migration completed). A page that cannot be written is an error line, and turns a
 * success into exit 1: the user asked for it.
 */
function saveReport(
  recorder: ReportRecorder | undefined,
  end: { report?: MigrationReport; error?: string },
  code: number,
  view: ProgressView,
  io: MigrateIo,
  quiet: boolean,
): number {
  if (!recorder) return code;
  try {
    const path = recorder.write(end);
    if (path !== undefined && !quiet) io.err(`qmigrate: report written to ${path}`);
    return code;
  } catch (e) {
    if (!(e instanceof CliFailure)) throw e;
    view.error([e.message], e.code, MIGRATE_EXIT.failed);
    return code === MIGRATE_EXIT.completed ? MIGRATE_EXIT.failed : code;
  }
}

/** How to resume a paused postcopy migration: the same monitors, a new stream address. */
function resumeHint(flags: MigrateFlags): string {
  const tls = [
    flags.fromQmpTls !== undefined ? ` --from-qmp-tls ${flags.fromQmpTls}` : '',
    flags.toQmpTls !== undefined ? ` --to-qmp-tls ${flags.toQmpTls}` : '',
  ].join('');
  return `resume it once the link is back: qmigrate migrate --resume --from ${flags.from} --to ${flags.to}${tls} --tcp HOST:PORT (or --unix PATH: where the destination listens anew)`;
}
