/**
 * `qmigrate vm`'s command line: the part of qemu-system-x86_64's options a RAM-only guest
 * needs (system/vl.c, qemu-options.hx), so scripts can swap one binary for the other.
 * Unknown or unsupported options are refused with QEMU's wording.
 */
import { QmigrateError } from '../errors.js';
import { isInheritedFd } from '../migration/transport/fd.js';
import { strtosz } from '../qapi/cutils.js';
import { genericError } from '../qapi/errors.js';
import { parseObjectOption } from '../qapi/object-option.js';
import type { ObjectOptions } from '../qapi/types.js';
import { type Chardev, ChardevError, parseChardev, parseCompatChardev, parseMon } from './chardev.js';

export interface MemoryBackend {
  id: string;
  type: 'memory-backend-ram' | 'memory-backend-file';
  size: bigint;
  memPath?: string;
  share: boolean;
  /** QEMU's hostmem properties as given (defaults off, on, on), reported by query-memdev. */
  prealloc: boolean;
  merge: boolean;
  dump: boolean;
}

/** qmigrate's own guest workload object (`-object qmigrate-workload,...`). */
export interface WorkloadSpec {
  id?: string;
  /** Pages written per second (0: as fast as possible). */
  rate: number;
}

export interface VmConfig {
  ramSize: bigint;
  /** Whether -m was given (else ramSize is QEMU's default, 128 MiB). */
  ramSizeGiven: boolean;
  /** `-machine none,memory-backend=ID`. */
  memoryBackend?: string;
  backends: MemoryBackend[];
  incoming?: string;
  startPaused: boolean;
  name?: string;
  /** `spec`: the option that gave the chardev, named in its errors (-chardev for -mon). */
  monitors: { dev: Chardev; mode: 'control' | 'readline'; spec: string }[];
  /** `-add-fd fd=N,set=M[,opaque=S]`: fds inherited from the parent. */
  addFds: { fd: number; set: number; opaque?: string }[];
  workload?: WorkloadSpec;
  /** `-object` TLS credentials and authz objects, created in order (as object-add) before the monitors open. */
  objects: ObjectOptions[];
  /** `-run-with exit-with-parent=on`: end as on SIGTERM once the parent process is gone. */
  exitWithParent: boolean;
  /**
   * `-h`, `-version`, `-machine help`, `-machine none,help`: what to print on stdout before
   * exiting 0. QEMU acts on these where they stand, so the options after them are not read.
   */
  info?: 'help' | 'version' | 'machines' | 'none-machine';
}

/**
 * A command line `qmigrate vm` cannot run with, worded as QEMU prints it after its program
 * name (`OPTION ARG: message`); vmMain prints it and exits 1, as QEMU does.
 */
export class UsageError extends QmigrateError {
  constructor(message: string) {
    super('VM_USAGE', message);
  }
}

const NO_ARG = new Set(['-S', '-nodefaults', '-no-user-config', '-no-shutdown', '-no-reboot']);
const HELP = new Set(['-h', '-help']);
const WITH_ARG = new Set([
  '-machine',
  '-M',
  '-m',
  '-object',
  '-incoming',
  '-qmp',
  '-qmp-pretty',
  '-monitor',
  '-chardev',
  '-mon',
  '-display',
  '-name',
  '-add-fd',
  '-accel',
  '-L',
  '-serial',
  '-vga',
  '-run-with',
]);

const SIZE_HELP =
  "Parameter 'size' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.";

const isHelp = (part: string) => part === 'help' || part === '?';

/** What QEMU rounds `-m` up to. */
const RAM_ALIGN = 8192n;

/** `k=v,k=v` with an implied first key. */
function keyval(text: string, implied?: string): Map<string, string> {
  const m = new Map<string, string>();
  text.split(',').forEach((part, i) => {
    const eq = part.indexOf('=');
    if (eq < 0) m.set(i === 0 && implied ? implied : part, i === 0 && implied ? part : 'on');
    else m.set(part.slice(0, eq), part.slice(eq + 1));
  });
  return m;
}

function onOff(v: string | undefined, name: string, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (v === 'on' || v === 'true' || v === 'yes') return true;
  if (v === 'off' || v === 'false' || v === 'no') return false;
  throw genericError(`Parameter '${name}' expects 'on' or 'off'`);
}

function size(text: string, defaultSuffix: 'B' | 'M'): bigint {
  const r = strtosz(text, defaultSuffix);
  if (!r.ok) throw genericError(SIZE_HELP);
  return r.value;
}

/**
 * The chardevs the command line creates, in order (-chardev, -qmp, -monitor), and the -mon
 * options that refer to them by id, resolved once every -chardev has been read.
 */
class Chardevs {
  readonly #byId = new Map<string, Chardev>();
  /** Where each chardev was given: QEMU names that option when opening it fails. */
  readonly #specs = new Map<Chardev, string>();
  readonly #mons: string[] = [];
  #stdioTaken = false;

  /** A chardev is created for each of these options, in order: stdio only once (chardev/char-stdio.c). */
  created(dev: Chardev): Chardev {
    if (dev.backend === 'stdio') {
      if (this.#stdioTaken) throw genericError('cannot use stdio by multiple character devices');
      this.#stdioTaken = true;
    }
    return dev;
  }

  /** `-chardev BACKEND,id=ID,...`. */
  add(arg: string, where: string): void {
    const { id, dev } = parseChardev(arg);
    if (this.#byId.has(id))
      throw genericError(`attempt to add duplicate property 'id' to object (type 'container')`);
    this.#byId.set(id, this.created(dev));
    this.#specs.set(dev, where);
  }

  mon(arg: string): void {
    this.#mons.push(arg);
  }

  /** The monitors the -mon options make. @throws {UsageError} naming the -mon. */
  monitors(): VmConfig['monitors'] {
    return this.#mons.map((m) => {
      try {
        const mon = parseMon(m, this.#byId);
        return { ...mon, spec: this.#specs.get(mon.dev) ?? `-mon ${m}` };
      } catch (e) {
        throw new UsageError(`-mon ${m}: ${(e as Error).message}`);
      }
    });
  }
}

/**
 * `-machine`: only `none`, with `memory-backend`.
 * @returns what to print instead of running, for a request for help.
 */
function machineOption(arg: string, cfg: VmConfig): VmConfig['info'] {
  const kv = keyval(arg, 'type');
  const type = kv.get('type');
  // QEMU's keyval parser takes a bare `help` or `?` as a request for help: in first
  // place it lists the machines, after a type that type's properties.
  const parts = arg.split(',');
  if (isHelp(parts[0]!)) return 'machines';
  if (parts.slice(1).some(isHelp)) return type === 'none' ? 'none-machine' : 'machines';
  if (type !== 'none' && type !== undefined) {
    throw new UsageError(`unsupported machine type: "${type}"\nUse -machine help to list supported machines`);
  }
  for (const [k, v] of kv) {
    if (k === 'memory-backend') cfg.memoryBackend = v;
    else if (k !== 'type' && k !== 'accel') throw genericError(`Property 'none-machine.${k}' not found`);
  }
  return undefined;
}

/** `-object`: a memory backend, qmigrate's workload, or an object-add type; ids are unique among objects. */
function objectOption(arg: string, cfg: VmConfig, objectIds: Set<string>): void {
  const json = arg.startsWith('{');
  const kv = json ? new Map<string, string>() : keyval(arg, 'qom-type');
  const type = kv.get('qom-type');
  if (
    json ||
    (type !== 'qmigrate-workload' && type !== 'memory-backend-ram' && type !== 'memory-backend-file')
  ) {
    // TLS credentials and authz objects take object-add's schema (an unknown type is refused there).
    const o = parseObjectOption(arg);
    if (objectIds.has(o.id)) throw genericError(`Duplicate ID '${o.id}' for object`);
    objectIds.add(o.id);
    cfg.objects.push(o);
    return;
  }
  const id = kv.get('id');
  if (id !== undefined) {
    if (objectIds.has(id)) throw genericError(`Duplicate ID '${id}' for object`);
    objectIds.add(id);
  }
  if (type === 'qmigrate-workload') {
    cfg.workload = { id, rate: Number(kv.get('rate') ?? '0') };
    if (!Number.isFinite(cfg.workload.rate) || cfg.workload.rate < 0) {
      throw genericError("Parameter 'rate' expects a non-negative number of pages per second");
    }
    return;
  }
  if (!id) throw genericError("Parameter 'id' is missing");
  const s = kv.get('size');
  if (s === undefined) throw genericError("can't create backend with size 0");
  const b: MemoryBackend = {
    id,
    type,
    size: size(s, 'B'),
    share: onOff(kv.get('share'), 'share', false),
    prealloc: onOff(kv.get('prealloc'), 'prealloc', false),
    merge: onOff(kv.get('merge'), 'merge', true),
    dump: onOff(kv.get('dump'), 'dump', true),
  };
  if (type === 'memory-backend-file') {
    b.memPath = kv.get('mem-path');
    if (!b.memPath) throw genericError('mem-path property not set');
  }
  for (const k of kv.keys()) {
    if (!['qom-type', 'id', 'size', 'share', 'mem-path', 'prealloc', 'merge', 'dump'].includes(k)) {
      throw genericError(`Property '${type}.${k}' not found`);
    }
  }
  cfg.backends.push(b);
}

/** `-run-with`: exit-with-parent is QEMU 10.1's (10.0 has only async-teardown, chroot and user). */
function runWithOption(arg: string, cfg: VmConfig): void {
  for (const [k, v] of keyval(arg)) {
    if (k === 'exit-with-parent') cfg.exitWithParent = onOff(v, k, false);
    else if (k === 'async-teardown' || k === 'chroot' || k === 'user') {
      throw genericError(`'${k}' is not supported by qmigrate`);
    } else throw genericError(`Invalid parameter '${k}'`);
  }
}

/** `-add-fd fd=N,set=M[,opaque=S]`, with QEMU's checks in their order (system/vl.c parse_add_fd). */
function addFdOption(arg: string, cfg: VmConfig): void {
  const kv = keyval(arg);
  const number = (name: string) => {
    const v = kv.get(name);
    if (v === undefined) return -1;
    if (!/^-?\d+$/.test(v)) throw genericError(`Parameter '${name}' expects a number`);
    return Number(v);
  };
  const fd = number('fd');
  const set = number('set');
  if (fd < 0) throw genericError('fd option is required and must be non-negative');
  if (fd <= 2) throw genericError('fd cannot be a standard I/O stream');
  // Not one the parent passed: writing the stream there would go into Node's own.
  if (!isInheritedFd(fd)) throw genericError('fd is not valid or already in use');
  if (set < 0) throw genericError('set option is required and must be non-negative');
  cfg.addFds.push({ fd, set, opaque: kv.get('opaque') });
}

/** An option's error as QEMU prints it: every line of a chardev error prefixed, only the first of others. */
function usageError(e: unknown, where: string): UsageError {
  // The checks throw QEMU's Error (genericError) or a ChardevError; each gets the option it is
  // about here, as QEMU reports errors under the option's location.
  if (e instanceof UsageError) return e;
  const [first, ...rest] = (e as Error).message.split('\n');
  if (e instanceof ChardevError) {
    return new UsageError([first, ...rest].map((l) => `${where}: ${l}`).join('\nqmigrate: '));
  }
  return new UsageError([`${where}: ${first}`, ...rest].join('\n'));
}

/** A VM without options: QEMU's 128 MiB of RAM, started at once, no monitor. */
function defaultConfig(): VmConfig {
  return {
    ramSize: 128n << 20n,
    ramSizeGiven: false,
    backends: [],
    startPaused: false,
    monitors: [],
    addFds: [],
    objects: [],
    exitWithParent: false,
  };
}

/**
 * Parses the options after `qmigrate vm`.
 * @throws {UsageError} `OPTION ARG: message`, as QEMU prints it after its program name.
 */
export function parseVmArgs(argv: readonly string[]): VmConfig {
  const cfg = defaultConfig();
  const chardevs = new Chardevs();
  const objectIds = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i]!;
    const opt = raw.startsWith('--') ? raw.slice(1) : raw;
    if (HELP.has(opt)) return { ...cfg, info: 'help' };
    if (opt === '-version') return { ...cfg, info: 'version' };
    if (NO_ARG.has(opt)) {
      if (opt === '-S') cfg.startPaused = true;
      continue;
    }
    if (!WITH_ARG.has(opt)) throw new UsageError(`${raw}: invalid option`);
    const arg = argv[++i];
    if (arg === undefined) throw new UsageError(`${raw}: requires an argument`);
    const where = `${raw} ${arg}`;
    try {
      switch (opt) {
        case '-machine':
        case '-M': {
          const info = machineOption(arg, cfg);
          if (info) return { ...cfg, info };
          break;
        }
        case '-m':
          // QEMU rounds the size up to 8 KiB (system/vl.c set_memory_options).
          cfg.ramSize =
            (size(keyval(arg, 'size').get('size') ?? '', 'M') + RAM_ALIGN - 1n) & ~(RAM_ALIGN - 1n);
          cfg.ramSizeGiven = true;
          break;
        case '-object':
          objectOption(arg, cfg, objectIds);
          break;
        case '-incoming':
          cfg.incoming = arg;
          break;
        case '-qmp':
        case '-qmp-pretty':
          cfg.monitors.push({ dev: chardevs.created(parseCompatChardev(arg)), mode: 'control', spec: where });
          break;
        case '-monitor':
          if (arg !== 'none')
            cfg.monitors.push({
              dev: chardevs.created(parseCompatChardev(arg)),
              mode: 'readline',
              spec: where,
            });
          break;
        case '-chardev':
          chardevs.add(arg, where);
          break;
        case '-mon':
          chardevs.mon(arg);
          break;
        case '-display':
          if (arg.split(',')[0] !== 'none') throw genericError(`Display '${arg}' is not available.`);
          break;
        case '-name':
          cfg.name = keyval(arg, 'guest').get('guest');
          break;
        case '-run-with':
          runWithOption(arg, cfg);
          break;
        case '-add-fd':
          addFdOption(arg, cfg);
          break;
        default:
          // -accel, -L, -serial, -vga: accepted for compatibility, meaningless here.
          break;
      }
    } catch (e) {
      throw usageError(e, where);
    }
  }
  cfg.monitors.push(...chardevs.monitors());
  return cfg;
}

/**
 * What `-h` prints: QEMU 10.0's own help lines for the options `qmigrate vm` takes (so a
 * script or a person finds the same words), under qmigrate's header and with its additions.
 */
export function helpText(qemuVersion: string, packageVersion: string): string {
  return `${versionText(qemuVersion, packageVersion)}usage: qmigrate vm [options]

A RAM-only guest for live migration in QEMU 10.0's stream format, driven like
qemu-system-x86_64 -machine none. These are the options it takes:

Standard options:
-h or -help     display this help and exit
-version        display version information and exit
-machine [type=]name[,prop[=value][,...]]
                selects emulated machine ('-machine help' for list)
                memory-backend='backend-id' specifies explicitly provided backend for main RAM (default=none)
-add-fd fd=fd,set=set[,opaque=opaque]
                Add 'fd' to fd 'set'
-m [size=]megs
                configure guest RAM
                size: initial amount of guest memory
-name string1[,process=string2][,debug-threads=on|off]
                set the name of the guest

Display options:
-display none
                select display backend type

Character device options:
-chardev socket,id=id[,host=host],port=port[,to=to][,ipv4=on|off][,ipv6=on|off][,nodelay=on|off]
         [,server=on|off][,wait=on|off][,telnet=on|off][,websocket=on|off][,reconnect-ms=milliseconds][,mux=on|off]
         [,logfile=PATH][,logappend=on|off][,tls-creds=ID][,tls-authz=ID] (tcp)
-chardev socket,id=id,path=path[,server=on|off][,wait=on|off][,telnet=on|off][,websocket=on|off][,reconnect-ms=milliseconds]
         [,mux=on|off][,logfile=PATH][,logappend=on|off][,abstract=on|off][,tight=on|off] (unix)
-chardev stdio,id=id[,mux=on|off][,signal=on|off][,logfile=PATH][,logappend=on|off]

Debug/Expert options:
-monitor dev    redirect the monitor to char device 'dev'
-qmp dev        like -monitor but opens in 'control' mode
-qmp-pretty dev like -qmp but uses pretty JSON formatting
-mon [chardev=]name[,mode=readline|control][,pretty[=on|off]]
-S              freeze CPU at startup (use 'c' to start execution)
-incoming tcp:[host]:port[,to=maxport][,ipv4=on|off][,ipv6=on|off]
-incoming rdma:host:port[,ipv4=on|off][,ipv6=on|off]
-incoming unix:socketpath
                prepare for incoming migration, listen on
                specified protocol and socket address
-incoming fd:fd
-incoming file:filename[,offset=offset]
-incoming exec:cmdline
                accept incoming migration on given file descriptor
                or from given external command
-incoming <channel>
                accept incoming migration on the migration channel
-incoming defer
                wait for the URI to be specified via migrate_incoming
-nodefaults     don't create default devices
-run-with [exit-with-parent=on|off]
                exit-with-parent=on causes qmigrate to exit if its parent
                  process exits (QEMU 10.1's option)

Generic object creation:
-object TYPENAME[,PROP1=VALUE1,...]
                create a new object of type TYPENAME setting properties
                in the order they are specified.  Note that the 'id'
                property must be set.  These objects are placed in the
                '/objects' path.
-object memory-backend-ram,id=id,size=size[,share=on|off]
-object memory-backend-file,id=id,size=size,mem-path=path[,share=on|off]
                guest RAM; with share=on the file holds the guest's RAM once
                the process ends (not after a failed incoming migration)
-object qmigrate-workload,id=id,rate=pages
                qmigrate's guest: writes 'rate' pages per second while it
                runs (rate=0: as fast as it can)
-object tls-creds-x509,id=id,dir=path[,endpoint=client|server][,verify-peer=on|off]
-object tls-creds-psk,id=id,dir=path[,endpoint=client|server][,username=name]
-object authz-simple,id=id,identity=dn
-object {"qom-type":"authz-list","id":"id","policy":"deny","rules":[...]}
                TLS objects as QEMU's, for tls-creds and tls-authz

Accepted for compatibility, without effect here: -accel, -L, -serial, -vga,
-no-shutdown, -no-reboot, -no-user-config.
`;
}

/** What `-version` prints: QEMU's first line, with qmigrate as the package. */
export function versionText(qemuVersion: string, packageVersion: string): string {
  return `QEMU emulator version ${qemuVersion} (qmigrate ${packageVersion})\nCopyright (c) 2026 the qmigrate authors\n`;
}

/** What `-machine help` prints: QEMU's list, which for qmigrate has one machine. */
export const MACHINES_TEXT = 'Supported machines are:\nnone                 empty machine\n';

/** What `-machine none,help` prints: the one property of QEMU's none machine qmigrate takes. */
export const NONE_MACHINE_TEXT =
  'none-machine options:\n  memory-backend=<link<memory-backend>> - Set RAM backendValid value is ID of hostmem based backend\n';
